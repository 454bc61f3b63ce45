// The per-tile work of the resampling kernels, written once for two callers:
//   - the CUDA kernel (tile_kernel.cuh), where a thread block runs the phases below with a barrier after each;
//   - the CPU harness (harness.cpp), which runs the same functions block by block, phase by phase, for
//     every simulated thread of the block, so that the normal test suite checks the tiling on a CPU.
// Nothing here touches CUDA or ATen: plain arithmetic over a Plan, shared-memory arrays and raw pointers.
//
// The pipeline of one block (each stage optional; see plan.h for how a call becomes a Plan):
//   load    input tile plus halo -> shared memory (bias added, zeros outside the image), filter taps too;
//   stage A resample the tile: zero-insert by `up`, correlate with taps A, keep every `down_a`-th sample;
//           separable taps run as two 1-D passes (down the columns, then along the rows), 2-D taps as one;
//   act     leaky ReLU, gain, clamp on the "mid" tile (float32 or wider), recording 2 bits per mid sample
//           (slope side, clamped) for the backward pass; or multiplying by the derivative those bits give;
//   stage B correlate with taps B and keep every `down`-th sample (two 1-D passes, along the rows first, or
//           one 2-D pass);
//   store   the output tile -> global memory.
// plain upfirdn2d is `load, A, store`; filtered_lrelu is `load, A, act, B, store` in one launch.
//
// Coordinates along an axis: input i, mid t, output o (all global, int). Stage A computes
//   mid[t] = sum_k a[k] * in_z[t * down_a + k - pad_a],  in_z[up * i] = in[i], zero elsewhere,
// and stage B
//   out[o] = sum_k b[k] * mid[o * down - pad_b],  mid taken as zero outside [0, mid_size).
// Inside a tile every index is a 32-bit offset from the tile's origin; only the origin of an image
// plane in global memory is 64-bit.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SG3C_HD __host__ __device__ __forceinline__
#else
#define SG3C_HD inline
#endif
#if defined(__CUDA_ARCH__)   // (the device pass; host compilers would warn about the pragma)
#define SG3C_UNROLL _Pragma("unroll")
#else
#define SG3C_UNROLL
#endif

namespace sg3c {
namespace tile {

constexpr int kThreads = 256;   // threads per block, in the kernel and in the harness
constexpr int kAny = 0;         // a template argument read from the Plan at run time instead

template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };

SG3C_HD int floor_div(int a, int b) {   // b > 0
    const int q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}
SG3C_HD int ceil_div(int a, int b) { return -floor_div(-a, b); }
SG3C_HD int min_int(int a, int b) { return a < b ? a : b; }
SG3C_HD int max_int(int a, int b) { return a > b ? a : b; }

// n / d for 0 <= n < 2^31 by a multiply-high, an add and a shift, with the divisor's magic number made
// on the host (make_fast_div): the per-block decode of a launch index without a division instruction.
struct FastDiv {
    uint32_t mul, shift;
};
inline FastDiv make_fast_div(uint32_t d) {   // d >= 1
    uint32_t shift = 0;
    while ((uint64_t(1) << shift) < d) {
        ++shift;
    }
    const uint64_t mul = ((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1;   // < 2^32
    return {uint32_t(mul), shift};
}
SG3C_HD int fast_div(int n, const FastDiv& f) {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(uint32_t(n), f.mul);
#else
    const uint32_t hi = uint32_t((uint64_t(uint32_t(n)) * f.mul) >> 32);
#endif
    return int((hi + uint32_t(n)) >> f.shift);
}

// ------------------------------------------------------------------------------------------------------
// The activation epilogue and its 2-bit record, shared with bias_act.

enum Act : int { kActNone = 0, kActApply = 1, kActRecord = 2, kActMasked = 3 };

struct ActParams {
    bool leaky;    // leaky ReLU (slope `alpha` for inputs <= 0); else linear
    float alpha;
    float gain;    // > 0
    float clamp;   // < 0: none
};

constexpr uint32_t kBitSlope = 1u;     // the input was <= 0 (or NaN): the derivative carries alpha
constexpr uint32_t kBitClamped = 2u;   // |output| exceeded the clamp (or is NaN): the derivative is 0
constexpr int kSamplesPerWord = 16;    // 2 bits each in a 32-bit word

// |v| and c with the sign of v, each one instruction (or an operand modifier) on the device.
#if defined(__CUDA_ARCH__)
template <typename acc_t> SG3C_HD acc_t magnitude_of(acc_t v) { return fabs(v); }
template <typename acc_t> SG3C_HD acc_t sign_of(acc_t c, acc_t v) { return copysign(c, v); }
#else
template <typename acc_t> SG3C_HD acc_t magnitude_of(acc_t v) { return std::fabs(v); }
template <typename acc_t> SG3C_HD acc_t sign_of(acc_t c, acc_t v) { return std::copysign(c, v); }
#endif

// y = clamp(act(v) * gain) and the bits its derivative needs. At |y| == clamp the gradient passes, as
// torch's clamp lets it (the reference ops' definition).
template <typename acc_t>
SG3C_HD acc_t activate(acc_t v, const ActParams& p, uint32_t& bits) {
    const bool slope = p.leaky && !(v > acc_t(0));
    bits = slope ? kBitSlope : 0u;
    v *= slope ? acc_t(p.alpha) * acc_t(p.gain) : acc_t(p.gain);   // (one multiply: the factor is a select)
    if (p.clamp >= 0) {   // (by magnitude and sign: a NaN is marked clamped and stays NaN)
        const acc_t c = acc_t(p.clamp);
        bits |= magnitude_of(v) <= c ? 0u : kBitClamped;
        v = magnitude_of(v) > c ? sign_of(c, v) : v;
    }
    return v;
}

template <typename acc_t>
SG3C_HD acc_t derivative(uint32_t bits, const ActParams& p) {
    if (bits & kBitClamped) {
        return acc_t(0);
    }
    return (bits & kBitSlope) ? acc_t(p.gain) * acc_t(p.alpha) : acc_t(p.gain);
}

// ------------------------------------------------------------------------------------------------------
// bias_act, elementwise and coalesced: thread t of `threads` takes elements t, t + threads, ..., so a
// warp's 32 lanes read and write 32 consecutive elements. The record keeps one 32-bit word per 16
// consecutive elements in memory order; a warp gathers its lanes' bits with two ballots and lanes 0 and
// 16 each write one word. The host runs a warp's lanes in turn and emulates the ballots, so the CPU harness
// tests this same code.

constexpr int kWarp = 32;
#if defined(__CUDA_ARCH__)
constexpr int kLanesPerThread = 1;       // a thread is one lane of its warp
#else
constexpr int kLanesPerThread = kWarp;   // the host thread runs the whole warp
#endif

template <typename T>
struct BiasActArgs {
    const T* x;
    const T* bias;            // or null
    T* y;
    uint32_t* record;         // or null (no gradient needed)
    int64_t numel;
    int64_t bias_stride, bias_size;   // element i takes bias[(i / bias_stride) % bias_size]
    ActParams act;
};

// The bias channel of one lane's element, advanced by a fixed stride with adds and compares (the
// divisions run once per thread).
struct BiasWalk {
    int64_t within, channel, step_within, step_channel;
};

template <typename T>
SG3C_HD BiasWalk start_walk(const BiasActArgs<T>& a, int64_t i, int64_t step) {
    if (a.bias == nullptr) {
        return {0, 0, 0, 0};
    }
    return {i % a.bias_stride, (i / a.bias_stride) % a.bias_size, step % a.bias_stride,
            (step / a.bias_stride) % a.bias_size};
}

template <typename T>
SG3C_HD void advance(const BiasActArgs<T>& a, BiasWalk& w) {
    w.within += w.step_within;
    w.channel += w.step_channel;
    if (w.within >= a.bias_stride) {
        w.within -= a.bias_stride;
        ++w.channel;
    }
    if (w.channel >= a.bias_size) {
        w.channel -= a.bias_size;
    }
}

// Bit j of x (16 bits) to bit 2j.
SG3C_HD uint32_t spread_bits(uint32_t x) {
    x = (x | (x << 8)) & 0x00FF00FFu;
    x = (x | (x << 4)) & 0x0F0F0F0Fu;
    x = (x | (x << 2)) & 0x33333333u;
    return (x | (x << 1)) & 0x55555555u;
}

// The record word of lanes 16 * half .. 16 * half + 15, from the warp's ballots of the two bits.
SG3C_HD uint32_t record_word(uint32_t slope, uint32_t clamped, int half) {
    const int shift = 16 * half;
    return spread_bits((slope >> shift) & 0xFFFFu) | (spread_bits((clamped >> shift) & 0xFFFFu) << 1);
}

// One warp (`warp` of threads / kWarp), from its first element to the end; `lane` is this thread's lane
// on the device (the host runs all 32).
template <typename T>
SG3C_HD void bias_act_warp(const BiasActArgs<T>& a, int64_t warp, int64_t threads, int lane) {
    using acc_t = typename AccType<T>::type;
    const int lane0 = kLanesPerThread == 1 ? lane : 0;
    BiasWalk walk[kLanesPerThread];
    for (int l = 0; l < kLanesPerThread; ++l) {
        walk[l] = start_walk(a, warp * kWarp + lane0 + l, threads);
    }
    for (int64_t base = warp * kWarp; base < a.numel; base += threads) {   // (the same trip count for every lane)
        uint32_t slope = 0, clamped = 0;   // bit `lane`: that lane's record bits
        for (int l = 0; l < kLanesPerThread; ++l) {
            const int64_t i = base + lane0 + l;
            if (i < a.numel) {
                acc_t v = static_cast<acc_t>(a.x[i]);
                if (a.bias != nullptr) {
                    v += static_cast<acc_t>(a.bias[walk[l].channel]);
                }
                uint32_t bits;
                a.y[i] = static_cast<T>(activate(v, a.act, bits));
                slope |= (bits & kBitSlope) ? 1u << (lane0 + l) : 0u;
                clamped |= (bits & kBitClamped) ? 1u << (lane0 + l) : 0u;
            }
            advance(a, walk[l]);
        }
        if (a.record == nullptr) {
            continue;
        }
#if defined(__CUDA_ARCH__)
        slope = __ballot_sync(0xFFFFFFFFu, slope != 0);
        clamped = __ballot_sync(0xFFFFFFFFu, clamped != 0);
#endif
        for (int half = 0; half < 2; ++half) {
            const int first = half * kSamplesPerWord;   // the lane that writes this word
            if (first >= lane0 && first < lane0 + kLanesPerThread && base + first < a.numel) {
                a.record[base / kSamplesPerWord + half] = record_word(slope, clamped, half);
            }
        }
    }
}

// dx = dy * (derivative recorded by the forward pass) for element i; linear in dy, so its own derivative.
// (Lanes of a warp take consecutive elements: 16 of them read one record word at once.)
template <typename T>
SG3C_HD void bias_act_grad_element(const T* dy, const uint32_t* record, T* dx, const ActParams& act, int64_t i) {
    using acc_t = typename AccType<T>::type;
    const uint64_t u = uint64_t(i);   // (unsigned: a shift and a mask)
    const uint32_t bits = (record[u / kSamplesPerWord] >> (2 * (u % kSamplesPerWord))) & 3u;
    dx[i] = static_cast<T>(static_cast<acc_t>(dy[i]) * derivative<acc_t>(bits, act));
}

// ------------------------------------------------------------------------------------------------------
// upfirdn2d for any size: one output sample straight from global memory (64-bit offsets).
// Used where a tiled plan does not fit (shared memory, 32-bit in-image offsets).

struct DirectGeom {
    int64_t n, c, h, w;               // input sizes
    int64_t sn, sc, sh, sw;           // input strides
    int64_t out_c, out_h, out_w;
    int64_t osn, osc, osh, osw;       // output strides
    int64_t up_x, up_y, down_x, down_y, pad_x, pad_y;
    int64_t taps_x, taps_y;
    bool separable, flip;   // taps: [taps_x] used along both axes, or [taps_y][taps_x]; reversed
    float scale;            // per application of the taps
};

SG3C_HD float direct_tap(const float* taps, const DirectGeom& g, int64_t ky, int64_t kx) {
    if (g.flip) {
        ky = g.taps_y - 1 - ky;
        kx = g.taps_x - 1 - kx;
    }
    // (a separable filter is applied once per axis, and so is its scale)
    return g.separable ? (taps[ky] * g.scale) * (taps[kx] * g.scale) : taps[ky * g.taps_x + kx] * g.scale;
}

template <typename T>
SG3C_HD void direct_output(const T* x, const float* taps, T* y, const DirectGeom& g, int64_t index) {
    using acc_t = typename AccType<T>::type;
    const int64_t ox = index % g.out_w;
    const int64_t oy = (index / g.out_w) % g.out_h;
    const int64_t ch = (index / (g.out_w * g.out_h)) % g.out_c;
    const int64_t img = index / (g.out_w * g.out_h * g.out_c);
    const T* plane = x + img * g.sn + ch * g.sc;
    // First tap that meets an input sample along each axis, and that sample.
    const int64_t py = oy * g.down_y - g.pad_y;
    const int64_t px = ox * g.down_x - g.pad_x;
    const int64_t ky0 = ((-py) % g.up_y + g.up_y) % g.up_y;
    const int64_t kx0 = ((-px) % g.up_x + g.up_x) % g.up_x;
    acc_t acc = acc_t(0);
    for (int64_t ky = ky0, sy = (py + ky0) / g.up_y; ky < g.taps_y && sy < g.h; ky += g.up_y, ++sy) {
        if (sy < 0) {
            continue;
        }
        for (int64_t kx = kx0, sx = (px + kx0) / g.up_x; kx < g.taps_x && sx < g.w; kx += g.up_x, ++sx) {
            if (sx >= 0) {
                acc += static_cast<acc_t>(direct_tap(taps, g, ky, kx)) * static_cast<acc_t>(plane[sy * g.sh + sx * g.sw]);
            }
        }
    }
    y[img * g.osn + ch * g.osc + oy * g.osh + ox * g.osw] = static_cast<T>(acc);
}

// ------------------------------------------------------------------------------------------------------
// The plan of a launch (built on the host by resample_plan.h, passed to the kernel by value).

enum StageKind : int { kNoStage = 0, kSeparable = 1, kPlane = 2 };

struct AxisPlan {
    int in_size, mid_size, out_size;
    int up, down_a, pad_a, taps_a;   // stage A along this axis (1, 1, 0, 1 when there is none)
    int down, pad_b, taps_b;         // stage B along this axis (1, 0, 1 when there is none)
    int tile_out, tiles;             // outputs per tile, tiles along this axis
    int tile_mid, tile_in;           // mid and input samples a tile needs (largest over the tiles)
};

struct Plan {
    AxisPlan ax[2];                  // [0] = x (width), [1] = y (height)
    int stage_a, stage_b, act;
    ActParams act_params;
    int batch, channels;
    int cb, groups;                  // channels per block, blocks across the channels
    bool channels_fast;              // load/store with the channel index fastest (channels-last tensors)
    int64_t in_sn, in_sc;            // element strides of the input (image, channel)...
    int in_sh, in_sw, in_sc32;       // ...and inside an image, where 32 bits suffice (checked on the host)
    int64_t out_sn, out_sc;
    int out_sh, out_sw, out_sc32;
    int sign_words;                  // 32-bit words per mid row of the sign record
    int64_t sign_plane;              // words per (image, channel) of the sign record
    int buf_floats[2];               // the two ping-pong shared buffers, in accumulator elements
    int taps_offset;                 // where the taps start in shared memory (after the buffers)
    int taps_b_offset;               // ...and stage B's (after stage A's, 16-byte aligned: kTapAlign)
    int smem_elems;                  // all of shared memory, in accumulator elements
    int64_t blocks;                  // < 2^31
    FastDiv div_tiles_x, div_tiles_y, div_groups;   // by ax[0].tiles, ax[1].tiles, groups
    int fixed_tile[2];               // the tile (x, y) a specialisation fixes at compile time (fixed_plan), or 0s
};

// Global pointers of a launch.
template <typename T>
struct Tensors {
    const T* in;
    T* out;
    const T* bias;            // per channel, or null
    const float* taps_a;      // stage A: [taps] (separable) or [taps_y][taps_x]; null when no stage A
    const float* taps_b;
    float scale_a, scale_b;   // multiply the taps (gains)
    bool flip_a, flip_b;      // reverse them (both axes): the correlation taps of a convolution filter
    uint32_t* signs_out;      // kActRecord
    const uint32_t* signs_in; // kActMasked
};

// A [cb][rows][cols] array in shared memory. Rows and channel planes get odd strides, so that threads
// walking along either direction hit distinct banks.
struct Grid {
    int rows, cols, pitch, plane;
};
SG3C_HD Grid make_grid(int rows, int cols) {
    Grid g;
    g.rows = rows;
    g.cols = cols;
    g.pitch = cols | 1;
    g.plane = (rows * g.pitch) | 1;
    return g;
}

// Taps of stage A and B as shared memory holds them, one after the other.
SG3C_HD int taps_count(int stage, int taps_x, int taps_y) {
    return stage == kPlane ? taps_x * taps_y : (stage == kSeparable ? taps_x : 0);
}
SG3C_HD int taps_a_count(const Plan& p) { return taps_count(p.stage_a, p.ax[0].taps_a, p.ax[1].taps_a); }
SG3C_HD int taps_b_count(const Plan& p) { return taps_count(p.stage_b, p.ax[0].taps_b, p.ax[1].taps_b); }
// Taps A and taps B start at multiples of kTapAlign elements (16 bytes at least), so that a pass loads its
// taps 16 bytes at a time (load_taps).
constexpr int kTapAlign = 4;
SG3C_HD int align_taps(int elems) { return (elems + kTapAlign - 1) / kTapAlign * kTapAlign; }

// ------------------------------------------------------------------------------------------------------
// The phases of a block.

enum Phase : int { kLoad, kPassAy, kPassAx, kPassA2, kActPhase, kPassBx, kPassBy, kPassB2, kStore };
constexpr int kMaxPhases = 7;   // load, two A passes, act, two B passes, store

SG3C_HD int tile_mid_of(const AxisPlan& a, int stage_b) { return stage_b ? (a.tile_out - 1) * a.down + a.taps_b : a.tile_out; }

// Inputs a tile of `tile_mid` mid samples needs at most, whatever its phase against the input grid:
// (tile_mid - 1) * down_a + taps consecutive zero-inserted positions hold at most this many multiples of up.
SG3C_HD int tile_in_bound(int tile_mid, int down_a, int taps, int up) {
    return ((tile_mid - 1) * down_a + taps + up - 1) / up;
}

// The stage kinds and activation of a launch: a Spec's when it fixes them (then everything below folds to
// constants for each phase of the unrolled phase loop), else the Plan's.
struct Shape {
    int stage_a, stage_b, act;
};

SG3C_HD int passes_of(int stage) { return stage == kSeparable ? 2 : stage == kPlane ? 1 : 0; }

SG3C_HD int phase_count(const Shape& s) {
    return 2 + passes_of(s.stage_a) + (s.act != kActNone) + passes_of(s.stage_b);
}

// The k-th phase: load, stage A's passes, the activation, stage B's passes, store.
SG3C_HD int phase_at(const Shape& s, int k) {
    if (k == 0) {
        return kLoad;
    }
    k -= 1;
    const int na = passes_of(s.stage_a);
    if (k < na) {
        return s.stage_a == kPlane ? kPassA2 : (k == 0 ? kPassAy : kPassAx);
    }
    k -= na;
    if (s.act != kActNone) {
        if (k == 0) {
            return kActPhase;
        }
        k -= 1;
    }
    const int nb = passes_of(s.stage_b);
    if (k < nb) {
        return s.stage_b == kPlane ? kPassB2 : (k == 0 ? kPassBx : kPassBy);
    }
    return kStore;
}

SG3C_HD bool is_pass(int phase) { return phase != kLoad && phase != kActPhase && phase != kStore; }

// Which of the two shared buffers phase k writes: every pass reads one buffer and writes the other, the
// activation works in place (the store, which writes nothing, reports the buffer it reads).
SG3C_HD int buffer_at(const Shape& s, int k) {
    int passes = 0;
    for (int j = 1; j <= k; ++j) {
        passes += is_pass(phase_at(s, j));
    }
    return passes & 1;
}

// The array a phase writes (the store: the one it reads).
SG3C_HD Grid grid_of(const Plan& p, int phase) {
    const AxisPlan& x = p.ax[0];
    const AxisPlan& y = p.ax[1];
    switch (phase) {
        case kLoad:
            return p.stage_a ? make_grid(y.tile_in, x.tile_in) : make_grid(y.tile_mid, x.tile_mid);
        case kPassAy:
            return make_grid(y.tile_mid, x.tile_in);
        case kPassBx:
            return make_grid(y.tile_mid, x.tile_out);
        case kPassBy:
        case kPassB2:
        case kStore:
            return make_grid(y.tile_out, x.tile_out);   // (== mid when there is no stage B)
        default:   // kPassAx, kPassA2, kActPhase
            return make_grid(y.tile_mid, x.tile_mid);
    }
}

// Where a block sits: its image, first channel, and per axis the first output, mid and input sample.
struct Block {
    int n, c0;
    int o0[2], m0[2], i0[2];
};

template <class S>
SG3C_HD Block locate_block(const Plan& p, int index) {
    Block b;
    const int rest = fast_div(index, p.div_tiles_x);
    const int plane = fast_div(rest, p.div_tiles_y);   // (image, channel group)
    b.n = fast_div(plane, p.div_groups);
    b.c0 = (plane - b.n * p.groups) * p.cb;
    const int tiles[2] = {index - rest * p.ax[0].tiles, rest - plane * p.ax[1].tiles};
    const bool stage_a = S::stage_a >= 0 ? S::stage_a != kNoStage : p.stage_a != kNoStage;
    const bool stage_b = S::stage_b >= 0 ? S::stage_b != kNoStage : p.stage_b != kNoStage;
    SG3C_UNROLL
    for (int a = 0; a < 2; ++a) {
        const AxisPlan& ax = p.ax[a];
        b.o0[a] = tiles[a] * ax.tile_out;
        b.m0[a] = stage_b ? b.o0[a] * (S::down != kAny ? S::down : ax.down) - ax.pad_b : b.o0[a];
        b.i0[a] = stage_a ? ceil_div(b.m0[a] * (S::down_a != kAny ? S::down_a : ax.down_a) - ax.pad_a,
                                     S::up != kAny ? S::up : ax.up)
                          : b.m0[a];
    }
    return b;
}

// ------------------------------------------------------------------------------------------------------
// Load and store.

// Channels-last tensors (cb channels per block): the (channel, row, column) of a tile's item in loads and
// stores, consecutive threads taking consecutive channels of one pixel (coalesced).
SG3C_HD void channels_fast_item(const Plan& p, Grid g, int item, int& c, int& r, int& col) {
    c = item % p.cb;
    const int rest = item / p.cb;
    col = rest % g.cols;
    r = rest / g.cols;
}

template <typename T, typename acc_t>
SG3C_HD void phase_load(const Plan& p, const Block& b, const Tensors<T>& t, acc_t* smem, Grid g, acc_t* dst,
                        int tid, int nthreads) {
    const T* image = t.in + int64_t(b.n) * p.in_sn + int64_t(b.c0) * p.in_sc;
    const int h = p.ax[1].in_size;
    const int w = p.ax[0].in_size;
    if (p.channels_fast) {
        for (int item = tid; item < g.rows * g.cols * p.cb; item += nthreads) {
            int c, r, col;
            channels_fast_item(p, g, item, c, r, col);
            const int iy = b.i0[1] + r;
            const int ix = b.i0[0] + col;
            acc_t v = acc_t(0);
            if (iy >= 0 && iy < h && ix >= 0 && ix < w && b.c0 + c < p.channels) {
                v = static_cast<acc_t>(image[c * p.in_sc32 + iy * p.in_sh + ix * p.in_sw]);
                if (t.bias != nullptr) {
                    v += static_cast<acc_t>(t.bias[b.c0 + c]);
                }
            }
            dst[c * g.plane + r * g.pitch + col] = v;
        }
    } else {   // one channel per block (cb == 1): consecutive threads, consecutive columns; the bias read once
        const acc_t bias = t.bias != nullptr ? static_cast<acc_t>(t.bias[b.c0]) : acc_t(0);
        const bool inside = b.i0[0] >= 0 && b.i0[0] + g.cols <= w && b.i0[1] >= 0 && b.i0[1] + g.rows <= h;
        for (int item = tid; item < g.rows * g.cols; item += nthreads) {
            const int r = item / g.cols;   // (a constant divisor where a Spec fixes the tile)
            const int col = item - r * g.cols;
            const int iy = b.i0[1] + r;
            const int ix = b.i0[0] + col;
            const bool in_image = inside || (iy >= 0 && iy < h && ix >= 0 && ix < w);
            dst[r * g.pitch + col] = in_image ? static_cast<acc_t>(image[iy * p.in_sh + ix * p.in_sw]) + bias : acc_t(0);
        }
    }
    // The taps, flipped and scaled once per block (reversing the flattened [ky][kx] array flips both axes).
    acc_t* taps = smem + p.taps_offset;   // (taps A, then taps B at taps_b_offset)
    const int na = taps_a_count(p);
    const int nb = taps_b_count(p);
    for (int k = tid; k < na; k += nthreads) {
        taps[k] = static_cast<acc_t>(t.taps_a[t.flip_a ? na - 1 - k : k] * t.scale_a);
    }
    acc_t* taps_b = smem + p.taps_b_offset;
    for (int k = tid; k < nb; k += nthreads) {
        taps_b[k] = static_cast<acc_t>(t.taps_b[t.flip_b ? nb - 1 - k : k] * t.scale_b);
    }
}

template <typename T, typename acc_t>
SG3C_HD void phase_store(const Plan& p, const Block& b, const Tensors<T>& t, const acc_t* src, Grid g, int tid,
                         int nthreads) {
    T* image = t.out + int64_t(b.n) * p.out_sn + int64_t(b.c0) * p.out_sc;
    const int h = p.ax[1].out_size;
    const int w = p.ax[0].out_size;
    if (p.channels_fast) {
        for (int item = tid; item < g.rows * g.cols * p.cb; item += nthreads) {
            int c, r, col;
            channels_fast_item(p, g, item, c, r, col);
            const int oy = b.o0[1] + r;
            const int ox = b.o0[0] + col;
            if (oy < h && ox < w && b.c0 + c < p.channels) {
                image[c * p.out_sc32 + oy * p.out_sh + ox * p.out_sw] = static_cast<T>(src[c * g.plane + r * g.pitch + col]);
            }
        }
    } else {   // cb == 1
        const bool inside = b.o0[0] + g.cols <= w && b.o0[1] + g.rows <= h;
        for (int item = tid; item < g.rows * g.cols; item += nthreads) {
            const int r = item / g.cols;
            const int col = item - r * g.cols;
            const int oy = b.o0[1] + r;
            const int ox = b.o0[0] + col;
            if (inside || (oy < h && ox < w)) {
                image[oy * p.out_sh + ox * p.out_sw] = static_cast<T>(src[r * g.pitch + col]);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------------
// Resampling passes. One output q of a pass along a line reads the zero-inserted source at
// S(q) + k = q * down + base + k for taps k; only positions divisible by `up` hold samples, at source
// index (S(q) + k) / up. `base` (in (-up, 0]) places the tile's first output against its first source
// sample.

struct LineGeom {
    int up, down, taps, base;
    int lo, hi;   // outputs outside [lo, hi) are zero (mid samples outside the image)
};

// Generic form: any factors, taps read from shared memory.
template <typename acc_t>
SG3C_HD acc_t line_sum(const acc_t* src, int step, const acc_t* taps, int tap_step, const LineGeom& g, int q) {
    const int s = q * g.down + g.base;
    const int k0 = ((-s) % g.up + g.up) % g.up;
    int i = (s + k0) / g.up;
    acc_t acc = acc_t(0);
    for (int k = k0; k < g.taps; k += g.up, ++i) {
        acc += taps[k * tap_step] * src[i * step];
    }
    return acc;
}

// Fixed factors: RUN consecutive outputs from one window of source samples held in registers, with
// taps in registers (every index a compile-time constant once R, the phase of the first output, is).
template <int U, int D, int K, int RUN>
struct Run {
    template <int R>
    static constexpr int window() { return (R + (RUN - 1) * D + K - 1) / U + 1; }

    // acc[q] += sum_k taps[k] * window[(R + q*D + k) / U] over the k that meet a sample.
    template <int R, typename acc_t>
    SG3C_HD static void accumulate(const acc_t* src, int step, int first, int extent, const acc_t (&taps)[K],
                                   acc_t (&acc)[RUN]) {
        constexpr int W = window<R>();
        acc_t win[W];
        if (first >= 0 && first + W <= extent) {   // (all runs but a line's first and last: no clamping)
            const acc_t* at = src + first * step;
            SG3C_UNROLL
            for (int j = 0; j < W; ++j) {
                win[j] = at[j * step];
            }
        } else {
            SG3C_UNROLL
            for (int j = 0; j < W; ++j) {
                // (reads past the tile only feed outputs past its end, which are never stored)
                win[j] = src[min_int(max_int(first + j, 0), extent - 1) * step];
            }
        }
        SG3C_UNROLL
        for (int q = 0; q < RUN; ++q) {
            SG3C_UNROLL
            for (int k = 0; k < K; ++k) {
                if ((R + q * D + k) % U == 0) {
                    acc[q] += taps[k] * win[(R + q * D + k) / U];
                }
            }
        }
    }

    template <int R, typename acc_t>
    SG3C_HD static void dispatch(int r, const acc_t* src, int step, int first, int extent, const acc_t (&taps)[K],
                                 acc_t (&acc)[RUN]) {
        if constexpr (R + 1 < U) {
            if (r != R) {
                dispatch<R + 1>(r, src, step, first, extent, taps, acc);
                return;
            }
        }
        accumulate<R>(src, step, first, extent, taps, acc);
    }

    // The run of outputs q0 .. q0+RUN-1 of a line.
    template <typename acc_t>
    SG3C_HD static void line(const acc_t* src, int step, int extent, const acc_t (&taps)[K], int base, int q0,
                             acc_t (&acc)[RUN]) {
        const int s = q0 * D + base;
        const int a = floor_div(s, U);
        dispatch<0>(s - a * U, src, step, a, extent, taps, acc);
    }
};

// K taps from shared memory into registers, 16 bytes per load where they fill 16 bytes (`from` is
// 16-byte aligned: kTapAlign).
template <int K, typename acc_t>
SG3C_HD void load_taps(const acc_t* from, acc_t (&taps)[K]) {
    constexpr int V = 16 / sizeof(acc_t);
    struct alignas(16) Vec {
        acc_t v[V];
    };
    SG3C_UNROLL
    for (int k = 0; k + V <= K; k += V) {
        const Vec t = *reinterpret_cast<const Vec*>(from + k);
        SG3C_UNROLL
        for (int j = 0; j < V; ++j) {
            taps[k + j] = t.v[j];
        }
    }
    SG3C_UNROLL
    for (int k = K / V * V; k < K; ++k) {
        taps[k] = from[k];
    }
}

// Outputs per thread along a line: enough to reuse each source sample a few times.
template <int U, int D>
struct RunLength {
    static constexpr int value = U > 1 ? 4 * U : (D > 1 ? 4 : 8);
};

// What a pass does to a run of outputs in registers before storing them: nothing, or the activation
// (ActEpilogue, below).
struct NoEpilogue {
    template <int RUN, typename acc_t>
    SG3C_HD void operator()(int, int, int, acc_t (&)[RUN]) const {}
};

// A 1-D pass along `axis` (0: along rows, 1: down columns) over every line of a [cb][rows][cols] array.
// Threads are laid across lines (adjacent threads, adjacent lines: distinct banks) and each computes a run
// of RUN consecutive outputs along its line; with fixed factors, `epi(c, line, q0, acc)` sees each run.
template <int U, int D, int K, int RUN = RunLength<U, D>::value, typename acc_t, class Epilogue = NoEpilogue>
SG3C_HD void pass_axis(int axis, const acc_t* src, Grid gs, acc_t* dst, Grid gd, const acc_t* taps_smem,
                       const LineGeom& g, int cb, int tid, int nthreads, const Epilogue& epi = Epilogue()) {
    const int lines = axis == 0 ? gd.rows : gd.cols;
    const int length = axis == 0 ? gd.cols : gd.rows;
    const int src_step = axis == 0 ? 1 : gs.pitch;
    const int dst_step = axis == 0 ? 1 : gd.pitch;
    const int src_line = axis == 0 ? gs.pitch : 1;
    const int dst_line = axis == 0 ? gd.pitch : 1;
    const int src_extent = axis == 0 ? gs.cols : gs.rows;
    if constexpr (U == kAny || D == kAny || K == kAny) {
        const int total = lines * length * cb;
        for (int item = tid; item < total; item += nthreads) {
            const int line = item % lines;
            const int rest = item / lines;
            const int q = rest % length;
            const int c = rest / length;
            const acc_t v = line_sum(src + c * gs.plane + line * src_line, src_step, taps_smem, 1, g, q);
            dst[c * gd.plane + line * dst_line + q * dst_step] = (q >= g.lo && q < g.hi) ? v : acc_t(0);
        }
    } else {
        acc_t taps[K];
        load_taps(taps_smem, taps);
        const int runs = (length + RUN - 1) / RUN;
        const int total = lines * runs * cb;
        for (int item = tid; item < total; item += nthreads) {
            const int line = item % lines;
            const int rest = item / lines;
            const int q0 = (rest % runs) * RUN;
            const int c = rest / runs;
            acc_t acc[RUN];
            for (int q = 0; q < RUN; ++q) {
                acc[q] = acc_t(0);
            }
            Run<U, D, K, RUN>::line(src + c * gs.plane + line * src_line, src_step, src_extent, taps, g.base, q0, acc);
            epi(c, line, q0, acc);
            acc_t* out = dst + c * gd.plane + line * dst_line;
            if (q0 + RUN <= length && q0 >= g.lo && q0 + RUN <= g.hi) {   // (all but edge runs: no tests)
                SG3C_UNROLL
                for (int q = 0; q < RUN; ++q) {
                    out[(q0 + q) * dst_step] = acc[q];
                }
                continue;
            }
            for (int q = 0; q < RUN; ++q) {
                const int o = q0 + q;
                if (o < length) {
                    out[o * dst_step] = (o >= g.lo && o < g.hi) ? acc[q] : acc_t(0);
                }
            }
        }
    }
}

// A 2-D pass with [taps_y][taps_x] taps: per output row, the tap rows that meet a source row, each
// accumulated along x like a 1-D pass.
template <int U, int D, int K, typename acc_t>
SG3C_HD void pass_plane(const acc_t* src, Grid gs, acc_t* dst, Grid gd, const acc_t* taps_smem, const LineGeom& gx,
                        const LineGeom& gy, int cb, int tid, int nthreads) {
    if constexpr (U == kAny || D == kAny || K == kAny) {
        const int total = gd.rows * gd.cols * cb;
        for (int item = tid; item < total; item += nthreads) {
            const int col = item % gd.cols;
            const int rest = item / gd.cols;
            const int r = rest % gd.rows;
            const int c = rest / gd.rows;
            const int sy = r * gy.down + gy.base;
            const int k0 = ((-sy) % gy.up + gy.up) % gy.up;
            acc_t acc = acc_t(0);
            int iy = (sy + k0) / gy.up;
            for (int ky = k0; ky < gy.taps; ky += gy.up, ++iy) {
                acc += line_sum(src + c * gs.plane + iy * gs.pitch, 1, taps_smem + ky * gx.taps, 1, gx, col);
            }
            const bool inside = r >= gy.lo && r < gy.hi && col >= gx.lo && col < gx.hi;
            dst[c * gd.plane + r * gd.pitch + col] = inside ? acc : acc_t(0);
        }
    } else {
        constexpr int RUN = RunLength<U, D>::value;
        const int runs = (gd.cols + RUN - 1) / RUN;
        const int total = gd.rows * runs * cb;
        for (int item = tid; item < total; item += nthreads) {   // adjacent threads: adjacent rows
            const int r = item % gd.rows;
            const int rest = item / gd.rows;
            const int q0 = (rest % runs) * RUN;
            const int c = rest / runs;
            acc_t acc[RUN];
            for (int q = 0; q < RUN; ++q) {
                acc[q] = acc_t(0);
            }
            const int sy = r * D + gy.base;
            const int k0 = ((-sy) % U + U) % U;
            int iy = (sy + k0) / U;
            for (int ky = k0; ky < K; ky += U, ++iy) {
                acc_t taps[K];
                for (int k = 0; k < K; ++k) {
                    taps[k] = taps_smem[ky * K + k];
                }
                Run<U, D, K, RUN>::line(src + c * gs.plane + iy * gs.pitch, 1, gs.cols, taps, gx.base, q0, acc);
            }
            acc_t* out = dst + c * gd.plane + r * gd.pitch;
            const bool row_inside = r >= gy.lo && r < gy.hi;
            if (row_inside && q0 + RUN <= gd.cols && q0 >= gx.lo && q0 + RUN <= gx.hi) {   // (no tests)
                SG3C_UNROLL
                for (int q = 0; q < RUN; ++q) {
                    out[q0 + q] = acc[q];
                }
                continue;
            }
            for (int q = 0; q < RUN; ++q) {
                const int o = q0 + q;
                if (o < gd.cols) {
                    out[o] = (row_inside && o >= gx.lo && o < gx.hi) ? acc[q] : acc_t(0);
                }
            }
        }
    }
}

// Line geometry of stage A / B along one axis for a block.
SG3C_HD LineGeom geom_a(const Plan& p, const Block& b, int axis) {
    const AxisPlan& a = p.ax[axis];
    LineGeom g;
    g.up = a.up;
    g.down = a.down_a;
    g.taps = a.taps_a;
    g.base = b.m0[axis] * a.down_a - a.pad_a - b.i0[axis] * a.up;
    // Mid samples outside the image are zeros for stage B (not when A is the last stage: nothing reads them).
    g.lo = p.stage_b ? -b.m0[axis] : -(1 << 30);
    g.hi = p.stage_b ? a.mid_size - b.m0[axis] : (1 << 30);
    return g;
}

SG3C_HD LineGeom geom_b(const Plan& p, const Block& b, int axis) {
    const AxisPlan& a = p.ax[axis];
    LineGeom g;
    g.up = 1;
    g.down = a.down;
    g.taps = a.taps_b;
    g.base = b.o0[axis] * a.down - a.pad_b - b.m0[axis];   // == 0
    g.lo = -(1 << 30);
    g.hi = 1 << 30;
    return g;
}

// ------------------------------------------------------------------------------------------------------
// The activation over the mid tile. Work goes by 16-sample segments of a row, so that a thread owns
// whole words of the sign record. A block records the mid samples of its own outputs' stride
// (rows and columns [o0 * down, (o0 + tile_out) * down), the last tile to the end of the image), so every
// word is written by exactly one block; the Plan keeps tile origins word-aligned for this.

// The record bits of the 16 mid samples of row `words` from column mx0 on, in segment order (none outside
// the image's row). A segment starts anywhere in a record word: the (at most two) words are read once and
// shifted together.
SG3C_HD uint32_t segment_bits(const Plan& p, const uint32_t* words, bool row_inside, int mx0) {
    const int w = mx0 >> 4;   // (floor: mx0 < 0 at the image's left edge)
    const uint32_t lo = row_inside && w >= 0 && w < p.sign_words ? words[w] : 0u;
    const uint32_t hi = row_inside && (mx0 & 15) != 0 && w + 1 >= 0 && w + 1 < p.sign_words ? words[w + 1] : 0u;
    return uint32_t(((uint64_t(hi) << 32) | lo) >> ((mx0 & 15) * 2));
}

// The mid rows and record words (from the block's m0 on) whose record a recording block writes: its
// outputs' stride, the last tile to the end of the image (at most down - 1 samples past the computed tile).
struct Owned {
    int rows, words;
};
SG3C_HD Owned owned_by(const Plan& p, const Block& b) {
    const AxisPlan& ax = p.ax[0];
    const AxisPlan& ay = p.ax[1];
    Owned own;
    own.rows = b.o0[1] / ay.tile_out + 1 < ay.tiles ? ay.tile_out * ay.down : ay.mid_size - b.m0[1];
    own.words = b.o0[0] / ax.tile_out + 1 < ax.tiles ? ax.tile_out * ax.down / kSamplesPerWord
                                                     : p.sign_words - b.m0[0] / kSamplesPerWord;
    return own;
}

// Where a record row lives: (image, channel) plane of the block's channel c, mid row my.
SG3C_HD int64_t record_row(const Plan& p, const Block& b, int c, int my) {
    return (int64_t(b.n) * p.channels + b.c0 + c) * p.sign_plane + int64_t(my) * p.sign_words;
}

// The derivative of one segment's 16 samples from the record's bits in segment order, in place; zero for
// the samples outside the image (as stage A already made them). A whole segment inside the image and the
// tile takes the path without tests (the loop unrolled: every shift a constant).
template <typename acc_t>
SG3C_HD void act_masked_segment(const Plan& p, const uint32_t* words, bool row_inside, int m0x, int seg, acc_t* row,
                                int cols) {
    const int mx0 = m0x + seg * kSamplesPerWord;
    const uint32_t bits = segment_bits(p, words, row_inside, mx0);
    acc_t* at = row + seg * kSamplesPerWord;
    if (row_inside && mx0 >= 0 && mx0 + kSamplesPerWord <= p.ax[0].mid_size && (seg + 1) * kSamplesPerWord <= cols) {
        SG3C_UNROLL
        for (int s = 0; s < kSamplesPerWord; ++s) {
            at[s] *= derivative<acc_t>((bits >> (2 * s)) & 3u, p.act_params);
        }
        return;
    }
    for (int s = 0; s < kSamplesPerWord && seg * kSamplesPerWord + s < cols; ++s) {
        const bool inside = row_inside && mx0 + s >= 0 && mx0 + s < p.ax[0].mid_size;
        at[s] = inside ? at[s] * derivative<acc_t>((bits >> (2 * s)) & 3u, p.act_params) : acc_t(0);
    }
}

// The activation of 16 samples in place; returns their record word, holding the bits of the first `valid`
// (the computed samples inside the image; the rest record nothing).
template <typename acc_t>
SG3C_HD uint32_t act_record_samples(const Plan& p, acc_t (&at)[kSamplesPerWord], int valid) {
    uint32_t word = 0;
    SG3C_UNROLL
    for (int s = 0; s < kSamplesPerWord; ++s) {
        uint32_t bits;
        at[s] = activate(at[s], p.act_params, bits);
        word |= bits << (2 * s);
    }
    return valid >= kSamplesPerWord ? word : word & ((1u << (2 * max_int(valid, 0))) - 1u);
}

template <typename T, typename acc_t>
SG3C_HD void phase_act(const Plan& p, const Block& b, const Tensors<T>& t, acc_t* mid, Grid g, int tid, int nthreads) {
    if (p.act == kActNone) {
        return;
    }
    const AxisPlan& ax = p.ax[0];
    const AxisPlan& ay = p.ax[1];
    // Rows and 16-sample segments to visit: the computed tile, and for a recording block what it owns (the
    // extents are the bounds of that, so that with a fixed tile they are constants).
    const int rows = g.rows + ay.down - 1;
    const int segments = (g.cols + ax.down - 1 + kSamplesPerWord - 1) / kSamplesPerWord;
    const Owned own = p.act == kActRecord ? owned_by(p, b) : Owned{0, 0};
    const int total = rows * segments * p.cb;
    for (int item = tid; item < total; item += nthreads) {
        const int seg = item % segments;
        const int rest = item / segments;
        const int r = rest % rows;
        const int c = rest / rows;
        const int my = b.m0[1] + r;
        acc_t* row = mid + c * g.plane + r * g.pitch;
        if (p.act == kActMasked) {
            if (r < g.rows) {
                const bool row_inside = my >= 0 && my < ay.mid_size && b.c0 + c < p.channels;
                act_masked_segment(p, t.signs_in + record_row(p, b, c, row_inside ? my : 0), row_inside, b.m0[0], seg,
                                   row, g.cols);
            }
            continue;
        }
        const int c0 = seg * kSamplesPerWord;
        const int mx0 = b.m0[0] + c0;
        const int count = r < g.rows ? min_int(g.cols - c0, kSamplesPerWord) : 0;
        acc_t samples[kSamplesPerWord];
        SG3C_UNROLL
        for (int s = 0; s < kSamplesPerWord; ++s) {
            samples[s] = s < count ? row[c0 + s] : acc_t(0);
        }
        const uint32_t word = act_record_samples(p, samples, min_int(count, ax.mid_size - mx0));
        SG3C_UNROLL
        for (int s = 0; s < kSamplesPerWord; ++s) {
            if (s < count) {
                row[c0 + s] = samples[s];
            }
        }
        if (p.act == kActRecord && r < own.rows && seg < own.words && my >= 0 && my < ay.mid_size && mx0 >= 0 &&
            b.c0 + c < p.channels) {
            t.signs_out[record_row(p, b, c, my) + (mx0 >> 4)] = word;
        }
    }
}
// The activation fused into stage A's last pass along the rows (a Spec's separable stage A): each thread's
// run of 16 mid samples of a row is activated in registers, and a recording block builds the run's record
// word there (a run is one word: tile origins are word-aligned when recording, and RUN == 16). The
// samples outside the image are zeros by then (stage A's passes made them) and stay zeros.
template <int ACT, typename acc_t>
struct ActEpilogue {
    const Plan& p;
    const Block& b;
    uint32_t* signs_out;
    const uint32_t* signs_in;
    int cols;    // computed mid samples per row
    Owned own;   // (recording)

    SG3C_HD void operator()(int c, int r, int q0, acc_t (&acc)[kSamplesPerWord]) const {
        const int my = b.m0[1] + r;
        const int mx0 = b.m0[0] + q0;
        const bool row_inside = my >= 0 && my < p.ax[1].mid_size && b.c0 + c < p.channels;
        if constexpr (ACT == kActMasked) {
            const uint32_t bits = segment_bits(p, signs_in + record_row(p, b, c, row_inside ? my : 0), row_inside, mx0);
            SG3C_UNROLL
            for (int s = 0; s < kSamplesPerWord; ++s) {
                acc[s] *= derivative<acc_t>((bits >> (2 * s)) & 3u, p.act_params);
            }
        } else {
            const uint32_t word = act_record_samples(p, acc, min_int(cols - q0, p.ax[0].mid_size - mx0));
            if (ACT == kActRecord && row_inside && r < own.rows && q0 < own.words * kSamplesPerWord) {
                signs_out[record_row(p, b, c, my) + (mx0 >> 4)] = word;
            }
        }
    }
};

// The record words of the owned rows past the computed tile (at most down - 1 at the image's end, read by
// no output): zeros, as the activation phase writes them.
template <typename T>
SG3C_HD void record_rows_past_tile(const Plan& p, const Block& b, const Tensors<T>& t, Grid g, int tid, int nthreads) {
    const Owned own = owned_by(p, b);
    const int extra = own.rows - g.rows;
    if (extra <= 0) {
        return;
    }
    for (int item = tid; item < extra * own.words * p.cb; item += nthreads) {
        const int w = item % own.words;
        const int rest = item / own.words;
        const int my = b.m0[1] + g.rows + rest % extra;
        const int c = rest / extra;
        if (my < p.ax[1].mid_size && b.c0 + c < p.channels) {
            t.signs_out[record_row(p, b, c, my) + (b.m0[0] >> 4) + w] = 0u;
        }
    }
}

// ------------------------------------------------------------------------------------------------------
// One phase of one block for one thread. Spec fixes the stage kinds and the factors and tap counts
// (square: the same along both axes) at compile time; kAny leaves a value to the Plan.

template <int STAGE_A, int STAGE_B, int UP, int DOWN_A, int KA, int DOWN, int KB, int TILE = kAny, int TILE_Y = TILE>
struct Spec {
    static constexpr int stage_a = STAGE_A;
    static constexpr int stage_b = STAGE_B;
    static constexpr int up = UP;
    static constexpr int down_a = DOWN_A;
    static constexpr int taps_a = KA;
    static constexpr int down = DOWN;
    static constexpr int taps_b = KB;
    static constexpr int tile = TILE;   // outputs per block along x (the Plan's when kAny)...
    static constexpr int tile_y = TILE_Y;   // ...and along y
};
using Generic = Spec<-1, -1, kAny, kAny, kAny, kAny, kAny>;

// The Plan with the tile sizes a specialisation fixes written in as constants, so that every extent and
// index decode below folds into multiply-shift by constants (the planner gave the same values:
// plan.h, make_plan with the spec's tile). Called once by each block's caller, kernel and harness alike.
template <class S>
SG3C_HD Plan fixed_plan(const Plan& p) {
    if constexpr (S::tile == kAny) {
        return p;
    } else {
        Plan q = p;
        q.stage_a = S::stage_a;   // (a Spec with a tile fixes both stage kinds)
        q.stage_b = S::stage_b;
        SG3C_UNROLL
        for (int a = 0; a < 2; ++a) {
            AxisPlan& x = q.ax[a];
            x.up = S::up;
            x.down_a = S::down_a;
            x.taps_a = S::taps_a;
            x.down = S::down;
            x.taps_b = S::taps_b;
            x.tile_out = a == 0 ? S::tile : S::tile_y;
            x.tile_mid = S::stage_b != kNoStage ? (x.tile_out - 1) * S::down + S::taps_b : x.tile_out;
            x.tile_in = S::stage_a != kNoStage ? tile_in_bound(x.tile_mid, S::down_a, S::taps_a, S::up) : x.tile_mid;
        }
        q.taps_b_offset = q.taps_offset + align_taps(taps_a_count(q));   // (a constant offset from taps A)
        return q;
    }
}

// A Spec that fixes stage B always has the activation's phase between the stages (a no-op when the
// Plan's act is kActNone), so that every phase's identity, grid and buffer is a compile-time constant.
template <class S>
constexpr bool fuses_act() {   // the activation runs in stage A's last pass (ActEpilogue): no phase of its own
    return S::stage_a == kSeparable && S::stage_b > kNoStage && S::up != kAny && S::down_a != kAny && S::taps_a != kAny;
}

template <class S>
SG3C_HD Shape shape_of(const Plan& p) {
    if constexpr (S::stage_b >= 0) {
        const bool act_phase = S::stage_b != kNoStage && !fuses_act<S>();
        return {S::stage_a >= 0 ? S::stage_a : p.stage_a, S::stage_b, act_phase ? kActApply : kActNone};
    } else {
        return {S::stage_a >= 0 ? S::stage_a : p.stage_a, p.stage_b, p.act};
    }
}

// Stage A's pass along the rows with the Plan's activation fused in (fuses_act).
template <class S, typename T, typename acc_t>
SG3C_HD void pass_ax_act(const Plan& p, const Block& b, const Tensors<T>& t, const acc_t* src, Grid gs, acc_t* dst,
                         Grid g, const acc_t* taps, int tid, int nthreads) {
    constexpr int RUN = kSamplesPerWord;
    const LineGeom geom = geom_a(p, b, 0);
    switch (p.act) {
        case kActRecord:
            pass_axis<S::up, S::down_a, S::taps_a, RUN>(
                0, src, gs, dst, g, taps, geom, p.cb, tid, nthreads,
                ActEpilogue<kActRecord, acc_t>{p, b, t.signs_out, t.signs_in, g.cols, owned_by(p, b)});
            record_rows_past_tile(p, b, t, g, tid, nthreads);
            break;
        case kActMasked:
            pass_axis<S::up, S::down_a, S::taps_a, RUN>(
                0, src, gs, dst, g, taps, geom, p.cb, tid, nthreads,
                ActEpilogue<kActMasked, acc_t>{p, b, t.signs_out, t.signs_in, g.cols, Owned{0, 0}});
            break;
        case kActApply:
            pass_axis<S::up, S::down_a, S::taps_a, RUN>(
                0, src, gs, dst, g, taps, geom, p.cb, tid, nthreads,
                ActEpilogue<kActApply, acc_t>{p, b, t.signs_out, t.signs_in, g.cols, Owned{0, 0}});
            break;
        default:
            pass_axis<S::up, S::down_a, S::taps_a>(0, src, gs, dst, g, taps, geom, p.cb, tid, nthreads);
            break;
    }
}

template <class S, typename T>
SG3C_HD void run_phase(const Plan& p, int k, const Block& b, const Tensors<T>& t, typename AccType<T>::type* smem,
                       int tid, int nthreads) {
    using acc_t = typename AccType<T>::type;
    const Shape shape = shape_of<S>(p);
    const acc_t* taps_a = smem + p.taps_offset;
    const acc_t* taps_b = smem + p.taps_b_offset;
    const int phase = phase_at(shape, k);
    const Grid g = grid_of(p, phase);
    acc_t* dst = smem + (buffer_at(shape, k) ? p.buf_floats[0] : 0);
    const int before = k > 0 ? phase_at(shape, k - 1) : kLoad;
    const acc_t* src = smem + (k > 0 && buffer_at(shape, k - 1) ? p.buf_floats[0] : 0);
    const Grid gs = grid_of(p, before);
    constexpr int UA = S::up;
    constexpr int DA = S::down_a;
    constexpr int UB = S::down == kAny ? kAny : 1;
    // (a Spec that fixes a stage kind compiles only the passes of that kind)
    constexpr bool any_a = S::stage_a < 0;
    constexpr bool any_b = S::stage_b < 0;
    switch (phase) {
        case kLoad:
            phase_load(p, b, t, smem, g, dst, tid, nthreads);
            break;
        case kPassAy:
            if constexpr (any_a || S::stage_a == kSeparable) {
                pass_axis<UA, DA, S::taps_a>(1, src, gs, dst, g, taps_a, geom_a(p, b, 1), p.cb, tid, nthreads);
            }
            break;
        case kPassAx:
            if constexpr (fuses_act<S>()) {
                pass_ax_act<S>(p, b, t, src, gs, dst, g, taps_a, tid, nthreads);
            } else if constexpr (any_a || S::stage_a == kSeparable) {
                pass_axis<UA, DA, S::taps_a>(0, src, gs, dst, g, taps_a, geom_a(p, b, 0), p.cb, tid, nthreads);
            }
            break;
        case kPassA2:
            if constexpr (any_a || S::stage_a == kPlane) {
                pass_plane<UA, DA, S::taps_a>(src, gs, dst, g, taps_a, geom_a(p, b, 0), geom_a(p, b, 1), p.cb, tid,
                                              nthreads);
            }
            break;
        case kActPhase:
            if constexpr (any_b || S::stage_b != kNoStage) {
                phase_act(p, b, t, dst, g, tid, nthreads);
            }
            break;
        case kPassBx:
            if constexpr (any_b || S::stage_b == kSeparable) {
                pass_axis<UB, S::down, S::taps_b>(0, src, gs, dst, g, taps_b, geom_b(p, b, 0), p.cb, tid, nthreads);
            }
            break;
        case kPassBy:
            if constexpr (any_b || S::stage_b == kSeparable) {
                pass_axis<UB, S::down, S::taps_b>(1, src, gs, dst, g, taps_b, geom_b(p, b, 1), p.cb, tid, nthreads);
            }
            break;
        case kPassB2:
            if constexpr (any_b || S::stage_b == kPlane) {
                pass_plane<UB, S::down, S::taps_b>(src, gs, dst, g, taps_b, geom_b(p, b, 0), geom_b(p, b, 1), p.cb, tid,
                                                   nthreads);
            }
            break;
        default:   // kStore
            phase_store(p, b, t, src, gs, tid, nthreads);
            break;
    }
}

}  // namespace tile
}  // namespace sg3c
