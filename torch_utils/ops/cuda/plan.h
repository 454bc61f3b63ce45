// From a call's geometry to a tile::Plan (host code, shared by the CUDA launcher and the CPU harness),
// and the compile-time specialisations the kernels are built for.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>

#include "tile.h"

namespace sg3c {

// One stage's geometry per axis ([0] = x, [1] = y).
struct StageGeom {
    int kind = tile::kNoStage;
    int up[2] = {1, 1};
    int down[2] = {1, 1};
    int pad[2] = {0, 0};    // leading padding (negative: crop)
    int taps[2] = {1, 1};
};

// Everything a launch depends on besides the data.
struct CallGeom {
    int batch = 0, channels = 0;
    int in_size[2] = {0, 0}, mid_size[2] = {0, 0}, out_size[2] = {0, 0};
    StageGeom a, b;
    int act = tile::kActNone;
    tile::ActParams act_params{false, 0.f, 1.f, -1.f};
    bool channels_fast = false;
    bool fast_types = false;  // float or half: the data types the specialisations are compiled for
    int64_t in_strides[4] = {0, 0, 0, 0};    // n, c, h, w
    int64_t out_strides[4] = {0, 0, 0, 0};
    int elem_bytes = 4;      // of the tensors (channel grouping aims at one 32-byte sector)
    int acc_bytes = 4;       // of shared memory elements
    int64_t smem_limit = 48 << 10;
    int64_t smem_optin = 48 << 10;   // what a specialisation's fixed tile may opt in to (the device's most)
};

namespace detail {

// Inputs a tile needs for mids [m0, m0 + tile_mid).
inline int tile_inputs(const StageGeom& a, int axis, int m0, int tile_mid) {
    const int first = tile::ceil_div(m0 * a.down[axis] - a.pad[axis], a.up[axis]);
    const int last = tile::floor_div((m0 + tile_mid - 1) * a.down[axis] + a.taps[axis] - 1 - a.pad[axis], a.up[axis]);
    return std::max(last - first + 1, 1);
}

inline bool fits_int32(int64_t v) { return v >= 0 && v <= int64_t(std::numeric_limits<int32_t>::max()); }

inline int64_t image_extent(const int64_t* strides, int h, int w, int cb) {
    return int64_t(h - 1) * strides[2] + int64_t(w - 1) * strides[3] + int64_t(cb - 1) * strides[1];
}

// Fill the tile sizes of axis `axis` for `tile_out` outputs per tile; `fixed`: a specialisation's
// compile-time tile, whose input extent is the bound every phase fits (tile::fixed_plan's).
inline tile::AxisPlan axis_plan(const CallGeom& g, int axis, int tile_out, bool fixed) {
    tile::AxisPlan a;
    a.in_size = g.in_size[axis];
    a.mid_size = g.mid_size[axis];
    a.out_size = g.out_size[axis];
    a.up = g.a.up[axis];
    a.down_a = g.a.down[axis];
    a.pad_a = g.a.pad[axis];
    a.taps_a = g.a.taps[axis];
    a.down = g.b.down[axis];
    a.pad_b = g.b.pad[axis];
    a.taps_b = g.b.taps[axis];
    a.tile_out = tile_out;
    a.tiles = (a.out_size + tile_out - 1) / tile_out;
    a.tile_mid = tile::tile_mid_of(a, g.b.kind);
    a.tile_in = a.tile_mid;
    if (g.a.kind != tile::kNoStage && fixed) {
        a.tile_in = tile::tile_in_bound(a.tile_mid, a.down_a, a.taps_a, a.up);
    } else if (g.a.kind != tile::kNoStage) {
        a.tile_in = 0;
        for (int j = 0; j < a.tiles; ++j) {   // the phase of a tile against the input grid varies
            const int m0 = g.b.kind ? j * tile_out * a.down - a.pad_b : j * tile_out;
            a.tile_in = std::max(a.tile_in, tile_inputs(g.a, axis, m0, a.tile_mid));
        }
    }
    return a;
}

// The best tile for `cb` channels per block (most outputs per block, then least shared memory): of the
// fixed size `fixed` (x, y), or any power of two up to 64 when {0, 0}.
inline std::optional<tile::Plan> best_tiles(const CallGeom& g, int cb, const int (&fixed)[2]) {
    using namespace tile;
    static const int kSizes[] = {64, 32, 16, 8, 4, 2, 1};
    std::optional<Plan> best;
    int64_t best_score = -1;
    for (int sx : kSizes) {
        for (int sy : kSizes) {
            if (fixed[0] && (sx != kSizes[0] || sy != kSizes[0])) {   // (a fixed tile: tried once)
                continue;
            }
            const int tx = fixed[0] ? fixed[0] : std::min(sx, g.out_size[0]);   // (one tile across a small image)
            const int ty = fixed[0] ? fixed[1] : std::min(sy, g.out_size[1]);
            Plan p{};
            p.ax[0] = axis_plan(g, 0, tx, fixed[0] != 0);
            p.ax[1] = axis_plan(g, 1, ty, fixed[0] != 0);
            if (g.act == kActRecord && p.ax[0].tiles > 1 && (tx * g.b.down[0]) % kSamplesPerWord != 0) {
                continue;
            }
            p.stage_a = g.a.kind;
            p.stage_b = g.b.kind;
            p.act = g.act;
            p.act_params = g.act_params;
            p.cb = cb;
            p.fixed_tile[0] = fixed[0];
            p.fixed_tile[1] = fixed[1];
            const Shape shape{p.stage_a, p.stage_b, p.act};
            int64_t buf[2] = {0, 0};
            for (int k = 0; k < phase_count(shape); ++k) {
                const int64_t elems = int64_t(grid_of(p, phase_at(shape, k)).plane) * cb;
                buf[buffer_at(shape, k)] = std::max(buf[buffer_at(shape, k)], elems);
            }
            const int64_t taps_at = align_taps(int(buf[0] + buf[1]));   // (16-byte aligned: load_taps)
            const int64_t elems = taps_at + align_taps(taps_a_count(p)) + taps_b_count(p);
            if (elems * g.acc_bytes > (fixed[0] ? g.smem_optin : g.smem_limit)) {
                continue;
            }
            const int64_t score = (int64_t(tx) * ty << 24) - elems;
            if (score > best_score) {
                best_score = score;
                p.buf_floats[0] = int(buf[0]);
                p.buf_floats[1] = int(buf[1]);
                p.taps_offset = int(taps_at);
                p.taps_b_offset = p.taps_offset + align_taps(taps_a_count(p));
                p.smem_elems = int(elems);
                best = p;
            }
        }
    }
    return best;
}

// The rest of a Plan once its tiles are chosen; nullopt when offsets inside an image need more than 32 bits.
inline std::optional<tile::Plan> finish_plan(const CallGeom& g, tile::Plan p) {
    using namespace tile;
    const int cb = p.cb;
    p.batch = g.batch;
    p.channels = g.channels;
    p.groups = (g.channels + cb - 1) / cb;
    p.channels_fast = g.channels_fast;
    if (!fits_int32(image_extent(g.in_strides, g.in_size[1], g.in_size[0], cb)) ||
        !fits_int32(image_extent(g.out_strides, g.out_size[1], g.out_size[0], cb)) ||
        !fits_int32(g.in_strides[2]) || !fits_int32(g.in_strides[3]) ||
        !fits_int32(g.out_strides[2]) || !fits_int32(g.out_strides[3])) {
        return std::nullopt;
    }
    p.in_sn = g.in_strides[0];
    p.in_sc = g.in_strides[1];
    p.in_sc32 = int(cb > 1 ? g.in_strides[1] : 0);
    p.in_sh = int(g.in_strides[2]);
    p.in_sw = int(g.in_strides[3]);
    p.out_sn = g.out_strides[0];
    p.out_sc = g.out_strides[1];
    p.out_sc32 = int(cb > 1 ? g.out_strides[1] : 0);
    p.out_sh = int(g.out_strides[2]);
    p.out_sw = int(g.out_strides[3]);
    p.sign_words = (g.mid_size[0] + kSamplesPerWord - 1) / kSamplesPerWord;
    p.sign_plane = int64_t(g.mid_size[1]) * p.sign_words;
    p.blocks = int64_t(p.ax[0].tiles) * p.ax[1].tiles * p.groups * g.batch;
    if (!fits_int32(p.blocks)) {
        return std::nullopt;
    }
    p.div_tiles_x = make_fast_div(uint32_t(p.ax[0].tiles));
    p.div_tiles_y = make_fast_div(uint32_t(p.ax[1].tiles));
    p.div_groups = make_fast_div(uint32_t(p.groups));
    return p;
}

// The most channels per block (up to one 32-byte sector of a channels-last pixel) whose tiles fit.
inline std::optional<tile::Plan> plan_with_tile(const CallGeom& g, const int (&fixed)[2]) {
    const int sector_elems = std::max(1, 32 / g.elem_bytes);
    for (int cb = g.channels_fast ? std::min(g.channels, sector_elems) : 1; cb >= 1; cb /= 2) {
        if (std::optional<tile::Plan> best = best_tiles(g, cb, fixed)) {
            return finish_plan(g, *best);
        }
    }
    return std::nullopt;
}

template <class S>
bool spec_fits(const CallGeom& g) {
    if (g.a.kind != S::stage_a || g.b.kind != S::stage_b) {
        return false;
    }
    for (int a = 0; a < 2; ++a) {
        if (g.a.kind && (g.a.up[a] != S::up || g.a.down[a] != S::down_a || g.a.taps[a] != S::taps_a)) {
            return false;
        }
        if (g.b.kind && (g.b.down[a] != S::down || g.b.taps[a] != S::taps_b)) {
            return false;
        }
    }
    return true;
}

// The plan of the specialisation with a fixed tile that covers this geometry with the fewest computed
// outputs (a small image gets the tile that holds it whole); nullopt when none fits.
inline std::optional<tile::Plan> spec_plan(const CallGeom& g);

}  // namespace detail

// The largest tiles (outputs per block) that fit in shared memory; nullopt when none does or when offsets
// inside an image need more than 32 bits (the caller then takes another path). A geometry that a
// specialisation covers gets that specialisation's fixed tile where it fits (else the Generic kernel's).
inline std::optional<tile::Plan> make_plan(const CallGeom& g) {
    using namespace tile;
    for (int a = 0; a < 2; ++a) {
        if (g.out_size[a] <= 0 || g.in_size[a] <= 0 || g.mid_size[a] <= 0) {
            return std::nullopt;
        }
    }
    if (g.a.kind == kSeparable && g.a.taps[0] != g.a.taps[1]) {
        return std::nullopt;
    }
    if (g.b.kind == kSeparable && g.b.taps[0] != g.b.taps[1]) {
        return std::nullopt;
    }
    // Recording blocks own word-aligned strips of the mid rows: stage B must start at mid sample 0.
    if (g.act == kActRecord && (g.b.kind == kNoStage || g.b.pad[0] != 0 || g.b.pad[1] != 0)) {
        return std::nullopt;
    }
    if (std::optional<Plan> p = detail::spec_plan(g)) {
        return p;
    }
    return detail::plan_with_tile(g, {0, 0});
}

// Specialisations (stage kinds, factors, taps along each axis) compiled with fixed loop bounds: the
// filtered_lrelu layers of StyleGAN3-T/-R (12 taps per factor 2, the radial 12x12 down filter of -R) in
// their forward geometry and its adjoint (the backward and the double backward), and StyleGAN2's
// resampling with 4x4 filters. Everything else runs the Generic instantiation (same code, run-time bounds).
namespace specs {
using tile::kNoStage;
using tile::kPlane;
using tile::kSeparable;
using tile::Spec;
using T_up2 = Spec<kSeparable, kSeparable, 2, 1, 12, 2, 12, 32>;   // also its own adjoint
using T_up2_40 = Spec<kSeparable, kSeparable, 2, 1, 12, 2, 12, 40>;   // (the first layers, 36-38 wide: one tile)
using T_up4 = Spec<kSeparable, kSeparable, 4, 1, 24, 2, 12, 32>;
using T_up4_40 = Spec<kSeparable, kSeparable, 4, 1, 24, 2, 12, 40, 37>;   // (the 148-wide layers: 4 x 4 tiles; 44 KB)
using T_up4_56 = Spec<kSeparable, kSeparable, 4, 1, 24, 2, 12, 56, 46>;   // (the 276-wide layers: 5 x 6 tiles; 73 KB)
using T_up4_adj = Spec<kSeparable, kSeparable, 2, 1, 12, 4, 24, 32, 16>;   // (77 KB of shared memory: opted in)
using R_up2 = Spec<kSeparable, kPlane, 2, 1, 12, 2, 12>;
using R_up2_adj = Spec<kPlane, kSeparable, 2, 1, 12, 2, 12>;
using R_up4 = Spec<kSeparable, kPlane, 4, 1, 24, 2, 12>;
using R_up4_adj = Spec<kPlane, kSeparable, 2, 1, 12, 4, 24>;
using SG2_filter = Spec<kPlane, kNoStage, 1, 1, 4, 1, 1>;
using SG2_up = Spec<kPlane, kNoStage, 2, 1, 4, 1, 1>;
using SG2_down = Spec<kPlane, kNoStage, 1, 2, 4, 1, 1>;
}  // namespace specs

template <class S>
bool spec_matches(const tile::Plan& p) {
    if (p.stage_a != S::stage_a || p.stage_b != S::stage_b || p.fixed_tile[0] != S::tile ||
        p.fixed_tile[1] != S::tile_y) {
        return false;
    }
    for (int a = 0; a < 2; ++a) {
        const tile::AxisPlan& x = p.ax[a];
        if (p.stage_a && (x.up != S::up || x.down_a != S::down_a || x.taps_a != S::taps_a)) {
            return false;
        }
        if (p.stage_b && (x.down != S::down || x.taps_b != S::taps_b)) {
            return false;
        }
    }
    return true;
}

// The specialisations in groups, each compiled in its own file (tiles_*.cu) so that the build runs in parallel.
#define SG3C_SPECS_T(X) X(T_up2) X(T_up2_40) X(T_up4) X(T_up4_40) X(T_up4_56) X(T_up4_adj)
#define SG3C_SPECS_R2(X) X(R_up2) X(R_up2_adj)
#define SG3C_SPECS_R4(X) X(R_up4) X(R_up4_adj)
#define SG3C_SPECS_SG2(X) X(SG2_filter) X(SG2_up) X(SG2_down)
#define SG3C_SPECS(X) SG3C_SPECS_T(X) SG3C_SPECS_R2(X) SG3C_SPECS_R4(X) SG3C_SPECS_SG2(X)

inline std::optional<tile::Plan> detail::spec_plan(const CallGeom& g) {
    std::optional<tile::Plan> best;
    int64_t best_work = 0;
    if (!g.fast_types) {
        return best;
    }
    // (outputs computed per image and channel: tiles times tile area)
    const auto work = [](const tile::Plan& p) {
        return int64_t(p.ax[0].tiles) * p.ax[1].tiles * p.ax[0].tile_out * p.ax[1].tile_out;
    };
#define SG3C_SPEC_PLAN(S)                                                                         \
    if (specs::S::tile != tile::kAny && spec_fits<specs::S>(g)) {                                  \
        std::optional<tile::Plan> p = plan_with_tile(g, {specs::S::tile, specs::S::tile_y});       \
        if (p && (!best || work(*p) < best_work)) {                                               \
            best = p;                                                                             \
            best_work = work(*p);                                                                 \
        }                                                                                         \
    }
    SG3C_SPECS(SG3C_SPEC_PLAN)
#undef SG3C_SPEC_PLAN
    return best;
}

// Calls f.template operator()<Spec>(name) with the specialisation for `p` (the Generic one if none).
// FAST: whether specialisations exist for this data type (float and half), decided at compile time so
// that no other type instantiates them.
template <bool FAST, class F>
void with_spec(const tile::Plan& p, F&& f) {
    if constexpr (FAST) {
#define SG3C_TRY_SPEC(S)                      \
    if (spec_matches<specs::S>(p)) {          \
        f.template operator()<specs::S>(#S);  \
        return;                               \
    }
        SG3C_SPECS(SG3C_TRY_SPEC)
#undef SG3C_TRY_SPEC
    }
    f.template operator()<tile::Generic>("Generic");
}

}  // namespace sg3c
