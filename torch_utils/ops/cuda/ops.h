// The ops as Python sees them, written once over a Backend that runs the per-tile code: the CUDA
// launcher (kernels.cu) or the CPU harness (harness.cpp). Argument checks, output allocation, the plan and
// the choice of specialisation live here, so the harness exercises exactly what the GPU build does.
//
// A Backend provides
//   static bool on_device(const at::Tensor&);                       // the tensors it accepts
//   static auto guard(const at::Tensor&);                           // makes the tensor's device current
//   static int64_t smem_limit();                                    // bytes of shared memory per block
//   static int64_t smem_optin();         // ...that a specialisation's fixed tile may opt in to (>= smem_limit)
//   template <class S, typename T> static void tiles(const tile::Plan&, const tile::Tensors<T>&);
//   template <typename T> static void direct(const T*, const float*, T*, const tile::DirectGeom&, int64_t n);
//   template <typename T> static void bias_act(const tile::BiasActArgs<T>&);
//   template <typename T> static void bias_act_grad(const T*, const uint32_t*, T*, int64_t numel,
//                                                   const tile::ActParams&);
// None of these calls synchronises with the host (the CUDA ones only enqueue work).
#pragma once

#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include "plan.h"

namespace sg3c {

using Resampled = std::optional<std::tuple<at::Tensor, at::Tensor>>;

// Calls f.template operator()<T, FAST>() for x's data type.
template <class F>
void with_dtype(at::ScalarType type, F&& f) {
    switch (type) {
        case at::kFloat: f.template operator()<float, true>(); break;
        case at::kHalf: f.template operator()<at::Half, true>(); break;
        case at::kBFloat16: f.template operator()<at::BFloat16, false>(); break;
        case at::kDouble: f.template operator()<double, false>(); break;
        default: TORCH_CHECK(false, "sg3c ops: unsupported dtype ", type);
    }
}

inline tile::ActParams act_params(bool leaky, double alpha, double gain, double clamp) {
    return {leaky, float(alpha), float(gain), float(clamp)};
}

template <class Backend>
struct Ops {
    // (Functors rather than template lambdas: the sources stay C++17.)
    template <typename T>
    struct LaunchSpec {
        const tile::Plan& plan;
        const tile::Tensors<T>& t;
        template <class S>
        void operator()(const char*) const {
            Backend::template tiles<S, T>(plan, t);
        }
    };

    struct StageTaps {
        float scale_a, scale_b;
        bool flip_a, flip_b;
    };

    struct LaunchTiles {
        const tile::Plan& plan;
        const at::Tensor &x, &y, &bias, &a, &b, &record, &signs;
        StageTaps st;
        template <typename T, bool FAST>
        void operator()() const {
            tile::Tensors<T> t;
            t.in = x.data_ptr<T>();
            t.out = y.data_ptr<T>();
            t.bias = bias.defined() ? bias.data_ptr<T>() : nullptr;
            t.taps_a = a.defined() ? a.data_ptr<float>() : nullptr;
            t.taps_b = b.defined() ? b.data_ptr<float>() : nullptr;
            t.signs_out = record.defined() ? reinterpret_cast<uint32_t*>(record.data_ptr<int32_t>()) : nullptr;
            t.signs_in = signs.defined() ? reinterpret_cast<const uint32_t*>(signs.data_ptr<int32_t>()) : nullptr;
            t.scale_a = st.scale_a;
            t.scale_b = st.scale_b;
            t.flip_a = st.flip_a;
            t.flip_b = st.flip_b;
            with_spec<FAST>(plan, LaunchSpec<T>{plan, t});
        }
    };

    struct SpecName {
        std::string& name;
        template <class S>
        void operator()(const char* spec) const {
            name = spec;
        }
    };

    struct NameSpec {
        const tile::Plan& plan;
        std::string& name;
        template <typename T, bool FAST>
        void operator()() const {
            with_spec<FAST>(plan, SpecName{name});
        }
    };

    // A specialisation's name and template arguments ("T_up2 1 1 2 1 12 2 12").
    struct SpecArgs {
        std::string& out;
        template <class S>
        void operator()(const char* spec) const {
            out = std::string(spec);
            for (int v : {S::stage_a, S::stage_b, S::up, S::down_a, S::taps_a, S::down, S::taps_b, S::tile, S::tile_y}) {
                out += ' ';   // (appended piece by piece: " " + to_string(v) trips GCC 12's -Wrestrict)
                out += std::to_string(v);
            }
        }
    };

    struct NameSpecArgs {
        const tile::Plan& plan;
        std::string& out;
        template <typename T, bool FAST>
        void operator()() const {
            with_spec<FAST>(plan, SpecArgs{out});
        }
    };

    struct LaunchDirect {
        const at::Tensor &x, &taps, &y;
        const tile::DirectGeom& g;
        int64_t count;
        template <typename T, bool FAST>
        void operator()() const {
            Backend::template direct<T>(x.data_ptr<T>(), taps.data_ptr<float>(), y.data_ptr<T>(), g, count);
        }
    };

    struct LaunchBiasAct {
        const at::Tensor &x, &bias, &y, &bits;
        int64_t dim;
        tile::ActParams act;
        template <typename T, bool FAST>
        void operator()() const {
            tile::BiasActArgs<T> a{x.data_ptr<T>(), bias.defined() ? bias.data_ptr<T>() : nullptr, y.data_ptr<T>(),
                                   bits.defined() ? reinterpret_cast<uint32_t*>(bits.data_ptr<int32_t>()) : nullptr,
                                   x.numel(), x.stride(dim), x.size(dim), act};
            Backend::template bias_act<T>(a);
        }
    };

    struct LaunchBiasActGrad {
        const at::Tensor &dy, &bits, &dx;
        tile::ActParams act;
        template <typename T, bool FAST>
        void operator()() const {
            Backend::template bias_act_grad<T>(dy.data_ptr<T>(), reinterpret_cast<const uint32_t*>(bits.data_ptr<int32_t>()),
                                               dx.data_ptr<T>(), dy.numel(), act);
        }
    };

    static void check_tensor(const at::Tensor& t, const char* what) {
        TORCH_CHECK(Backend::on_device(t), "sg3c ops: ", what, " is on the wrong device (", t.device(), ")");
    }

    static at::Tensor float_taps(const std::optional<at::Tensor>& taps, const at::Tensor& x, const char* what) {
        if (!taps.has_value() || !taps->defined()) {
            return at::Tensor();
        }
        TORCH_CHECK(taps->device() == x.device() && taps->scalar_type() == at::kFloat,
                    "sg3c ops: ", what, " must be float32 on the input's device");
        TORCH_CHECK((taps->dim() == 1 || taps->dim() == 2) && taps->numel() > 0, "sg3c ops: ", what, " must be 1-D or 2-D");
        return taps->contiguous();
    }

    static void stage_from(StageGeom& s, const at::Tensor& taps) {
        if (!taps.defined()) {
            return;
        }
        s.kind = taps.dim() == 1 ? tile::kSeparable : tile::kPlane;
        s.taps[0] = int(taps.size(-1));
        s.taps[1] = int(taps.size(0));
    }

    // geom = [a_up x, y, a_down x, y, a_pad x, y, mid w, h, b_down x, y, b_pad x, y, out w, h]
    static std::optional<std::pair<tile::Plan, CallGeom>> plan_for(const at::Tensor& x, const at::Tensor& a,
                                                                   const at::Tensor& b, const std::vector<int64_t>& geom,
                                                                   int64_t act, const tile::ActParams& params) {
        TORCH_CHECK(geom.size() == 14, "sg3c ops: resample geometry needs 14 integers");
        TORCH_CHECK(x.dim() == 4, "sg3c ops: resample needs a 4-D input");
        for (int64_t v : geom) {
            TORCH_CHECK(v > -(int64_t(1) << 28) && v < (int64_t(1) << 28), "sg3c ops: geometry value out of range");
        }
        for (int64_t d = 0; d < 4; ++d) {
            TORCH_CHECK(x.stride(d) >= 0, "sg3c ops: negative strides are not supported");
        }
        CallGeom g;
        g.batch = int(x.size(0));
        g.channels = int(x.size(1));
        g.in_size[0] = int(x.size(3));
        g.in_size[1] = int(x.size(2));
        stage_from(g.a, a);
        stage_from(g.b, b);
        for (int axis = 0; axis < 2; ++axis) {
            g.a.up[axis] = int(geom[0 + axis]);
            g.a.down[axis] = int(geom[2 + axis]);
            g.a.pad[axis] = int(geom[4 + axis]);
            g.mid_size[axis] = int(geom[6 + axis]);
            g.b.down[axis] = int(geom[8 + axis]);
            g.b.pad[axis] = int(geom[10 + axis]);
            g.out_size[axis] = int(geom[12 + axis]);
            TORCH_CHECK(g.a.up[axis] >= 1 && g.a.down[axis] >= 1 && g.b.down[axis] >= 1,
                        "sg3c ops: up/down factors must be >= 1");
        }
        if (g.a.kind == tile::kNoStage) {   // nothing between the input and mid
            for (int axis = 0; axis < 2; ++axis) {
                TORCH_CHECK(g.mid_size[axis] == g.in_size[axis], "sg3c ops: without stage A, mid must be the input");
            }
        }
        if (g.b.kind == tile::kNoStage) {
            for (int axis = 0; axis < 2; ++axis) {
                TORCH_CHECK(g.mid_size[axis] == g.out_size[axis], "sg3c ops: without stage B, mid must be the output");
            }
        }
        g.act = int(act);
        g.act_params = params;
        g.channels_fast = x.size(1) > 1 && x.stride(1) == 1;
        g.fast_types = x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf;   // (with_dtype's FAST)
        for (int d = 0; d < 4; ++d) {
            g.in_strides[d] = x.stride(d);
        }
        g.elem_bytes = int(x.element_size());
        g.acc_bytes = x.scalar_type() == at::kDouble ? 8 : 4;
        g.smem_limit = Backend::smem_limit();
        g.smem_optin = Backend::smem_optin();
        // The output's strides: x's memory format (dense).
        const auto format = x.suggest_memory_format();
        const int64_t oc = x.size(1), oh = g.out_size[1], ow = g.out_size[0];
        if (format == at::MemoryFormat::ChannelsLast) {
            g.out_strides[0] = oh * ow * oc;
            g.out_strides[1] = 1;
            g.out_strides[2] = ow * oc;
            g.out_strides[3] = oc;
        } else {
            g.out_strides[0] = oc * oh * ow;
            g.out_strides[1] = oh * ow;
            g.out_strides[2] = ow;
            g.out_strides[3] = 1;
        }
        const std::optional<tile::Plan> plan = make_plan(g);
        if (!plan) {
            return std::nullopt;
        }
        return std::make_pair(*plan, g);
    }

    // bias -> stage A -> activation -> stage B, one launch. None when no tiled plan fits (the caller takes
    // another path). act: kActNone, kActApply, kActRecord (also returns the 2-bit record), kActMasked
    // (multiplies by the derivative in `signs`, the record of a forward pass with the same mid geometry).
    static Resampled resample(const at::Tensor& x, const std::optional<at::Tensor>& taps_a, bool flip_a, double scale_a,
                              const std::optional<at::Tensor>& taps_b, bool flip_b, double scale_b,
                              const std::optional<at::Tensor>& bias,
                              const std::optional<at::Tensor>& signs, const std::vector<int64_t>& geom, int64_t act,
                              double alpha, double gain, double clamp) {
        check_tensor(x, "input");
        [[maybe_unused]] const auto device_guard = Backend::guard(x);
        TORCH_CHECK(act >= tile::kActNone && act <= tile::kActMasked, "sg3c ops: unknown activation mode ", act);
        const at::Tensor a = float_taps(taps_a, x, "stage A taps");
        const at::Tensor b = float_taps(taps_b, x, "stage B taps");
        const tile::ActParams params = act_params(true, alpha, gain, clamp);
        auto planned = plan_for(x, a, b, geom, act, params);
        if (!planned) {
            return std::nullopt;
        }
        const tile::Plan& plan = planned->first;
        const CallGeom& g = planned->second;
        at::Tensor y = at::empty({x.size(0), x.size(1), g.out_size[1], g.out_size[0]},
                                 x.options().memory_format(x.suggest_memory_format()));
        at::Tensor record;
        at::Tensor bias_c;
        if (bias.has_value() && bias->defined()) {
            TORCH_CHECK(bias->device() == x.device() && bias->scalar_type() == x.scalar_type() && bias->dim() == 1 &&
                            bias->size(0) == x.size(1),
                        "sg3c ops: bias must be 1-D, one value per channel, of the input's dtype and device");
            bias_c = bias->contiguous();
        }
        at::Tensor signs_c;
        const std::vector<int64_t> record_shape = {x.size(0), x.size(1), g.mid_size[1], plan.sign_words};
        if (act == tile::kActRecord) {
            record = at::empty(record_shape, x.options().dtype(at::kInt));
        } else if (act == tile::kActMasked) {
            TORCH_CHECK(signs.has_value() && signs->defined() && signs->device() == x.device() &&
                            signs->scalar_type() == at::kInt && signs->sizes().vec() == record_shape,
                        "sg3c ops: the masked pass needs the int32 record of its forward pass, shaped ", record_shape);
            signs_c = signs->contiguous();
        }
        if (y.numel() == 0) {
            return std::make_tuple(y, record);
        }
        const StageTaps st{float(scale_a), float(scale_b), flip_a, flip_b};
        with_dtype(x.scalar_type(), LaunchTiles{plan, x, y, bias_c, a, b, record, signs_c, st});
        return std::make_tuple(y, record);
    }

    // Which specialisation and tiles a resample call would use ("" when no plan fits): for tests and benchmarks.
    static std::string describe(const at::Tensor& x, const std::optional<at::Tensor>& taps_a,
                                const std::optional<at::Tensor>& taps_b, const std::vector<int64_t>& geom, int64_t act) {
        // (only shapes, strides and types matter: any device, "meta" included)
        const at::Tensor a = taps_a.has_value() && taps_a->defined() ? *taps_a : at::Tensor();
        const at::Tensor b = taps_b.has_value() && taps_b->defined() ? *taps_b : at::Tensor();
        TORCH_CHECK((!a.defined() || a.dim() == 1 || a.dim() == 2) && (!b.defined() || b.dim() == 1 || b.dim() == 2),
                    "sg3c ops: taps must be 1-D or 2-D");
        auto planned = plan_for(x, a, b, geom, act, act_params(true, 0.2, 1.0, -1.0));
        if (!planned) {
            return "";
        }
        const tile::Plan& p = planned->first;
        std::string name;
        with_dtype(x.scalar_type(), NameSpec{p, name});
        return name + " tile " + std::to_string(p.ax[0].tile_out) + "x" + std::to_string(p.ax[1].tile_out) + " cb " +
               std::to_string(p.cb) + " smem " + std::to_string(p.smem_elems) + " blocks " + std::to_string(p.blocks);
    }

    // The parameter buffer of the tile kernel a resample call would launch (its Plan and Tensors, laid out as
    // the kernel takes them by value), with stand-in addresses 1 << 40, 2 << 40, ... for the input, output,
    // bias, taps A, taps B and record; and its specialisation's template arguments. For counting the
    // kernel's instructions without a GPU (benchmarks/kernel_cost.py); shapes and strides are all it reads.
    static std::tuple<std::string, at::Tensor> kernel_args(const at::Tensor& x, const std::optional<at::Tensor>& taps_a,
                                                           const std::optional<at::Tensor>& taps_b,
                                                           const std::vector<int64_t>& geom, int64_t act, bool bias,
                                                           double alpha, double gain, double clamp) {
        const at::Tensor a = taps_a.has_value() && taps_a->defined() ? *taps_a : at::Tensor();
        const at::Tensor b = taps_b.has_value() && taps_b->defined() ? *taps_b : at::Tensor();
        auto planned = plan_for(x, a, b, geom, act, act_params(true, alpha, gain, clamp));
        TORCH_CHECK(planned.has_value(), "sg3c ops: no tiled plan for this call");
        struct Args {
            tile::Plan plan;
            tile::Tensors<float> t;   // (the same layout for every element type: pointers, scales, flags)
        } args{};
        args.plan = planned->first;
        const auto fake = [](int64_t k) { return reinterpret_cast<void*>(k << 40); };
        args.t.in = static_cast<const float*>(fake(1));
        args.t.out = static_cast<float*>(fake(2));
        args.t.bias = bias ? static_cast<const float*>(fake(3)) : nullptr;
        args.t.taps_a = a.defined() ? static_cast<const float*>(fake(4)) : nullptr;
        args.t.taps_b = b.defined() ? static_cast<const float*>(fake(5)) : nullptr;
        args.t.scale_a = args.t.scale_b = 1.f;
        args.t.flip_a = args.t.flip_b = true;
        args.t.signs_out = act == tile::kActRecord ? static_cast<uint32_t*>(fake(6)) : nullptr;
        args.t.signs_in = act == tile::kActMasked ? static_cast<const uint32_t*>(fake(6)) : nullptr;
        at::Tensor bytes = at::empty({int64_t(sizeof(Args))}, at::TensorOptions().dtype(at::kByte));
        std::memcpy(bytes.data_ptr<uint8_t>(), &args, sizeof(Args));
        std::string spec;
        with_dtype(x.scalar_type(), NameSpecArgs{args.plan, spec});
        return {spec, bytes};
    }

    // upfirdn2d, one output per thread straight from global memory: any size.
    // geom = [up x, y, down x, y, pad x, y, out w, h]
    static at::Tensor direct(const at::Tensor& x, const at::Tensor& taps_in, bool flip, double scale,
                             const std::vector<int64_t>& geom) {
        check_tensor(x, "input");
        [[maybe_unused]] const auto device_guard = Backend::guard(x);
        TORCH_CHECK(geom.size() == 8, "sg3c ops: direct upfirdn2d geometry needs 8 integers");
        TORCH_CHECK(x.dim() == 4, "sg3c ops: upfirdn2d needs a 4-D input");
        const at::Tensor taps = float_taps(taps_in, x, "taps");
        TORCH_CHECK(geom[0] >= 1 && geom[1] >= 1 && geom[2] >= 1 && geom[3] >= 1, "sg3c ops: up/down must be >= 1");
        at::Tensor y = at::empty({x.size(0), x.size(1), std::max<int64_t>(geom[7], 0), std::max<int64_t>(geom[6], 0)},
                                 x.options().memory_format(x.suggest_memory_format()));
        const int64_t count = y.numel();
        if (count == 0) {
            return y;
        }
        tile::DirectGeom g{x.size(0), x.size(1), x.size(2), x.size(3), x.stride(0), x.stride(1), x.stride(2), x.stride(3),
                           y.size(1), y.size(2), y.size(3), y.stride(0), y.stride(1), y.stride(2), y.stride(3),
                           geom[0], geom[1], geom[2], geom[3], geom[4], geom[5], taps.size(-1), taps.size(0),
                           taps.dim() == 1, flip, float(scale)};
        with_dtype(x.scalar_type(), LaunchDirect{x, taps, y, g, count});
        return y;
    }

    // y = clamp(act(x + b) * gain) along `dim`, and (record) its 2-bit derivative record in memory order.
    static std::tuple<at::Tensor, at::Tensor> bias_act(const at::Tensor& x_in, const std::optional<at::Tensor>& b,
                                                       int64_t dim, bool leaky, double alpha, double gain, double clamp,
                                                       bool record) {
        check_tensor(x_in, "input");
        [[maybe_unused]] const auto device_guard = Backend::guard(x_in);
        TORCH_CHECK(dim >= 0 && dim < x_in.dim(), "sg3c ops: bias_act dim out of range");
        const at::Tensor x = x_in.is_non_overlapping_and_dense() ? x_in : x_in.contiguous();
        at::Tensor y = at::empty_like(x);   // x's strides (x is dense)
        const int64_t numel = x.numel();
        const int64_t words = (numel + tile::kSamplesPerWord - 1) / tile::kSamplesPerWord;
        at::Tensor bits = record ? at::empty({words}, x.options().dtype(at::kInt)) : at::Tensor();
        at::Tensor bias;
        if (b.has_value() && b->defined()) {
            TORCH_CHECK(b->device() == x.device() && b->scalar_type() == x.scalar_type() && b->dim() == 1 &&
                            b->size(0) == x.size(dim),
                        "sg3c ops: bias must be 1-D, one value per channel, of the input's dtype and device");
            bias = b->contiguous();
        }
        if (numel == 0) {
            return {y, bits};
        }
        with_dtype(x.scalar_type(), LaunchBiasAct{x, bias, y, bits, dim, act_params(leaky, alpha, gain, clamp)});
        return {y, bits};
    }

    // dx = dy * derivative, from the record of bias_act(record=true) whose output had `strides` (dense):
    // the record follows that memory order, and so does dx.
    static at::Tensor bias_act_grad(const at::Tensor& dy_in, const at::Tensor& bits, const std::vector<int64_t>& strides,
                                    bool leaky, double alpha, double gain, double clamp) {
        check_tensor(dy_in, "gradient");
        [[maybe_unused]] const auto device_guard = Backend::guard(dy_in);
        TORCH_CHECK(int64_t(strides.size()) == dy_in.dim(), "sg3c ops: bias_act_grad needs the output's strides");
        const at::Tensor y_like = at::empty_strided(dy_in.sizes(), strides, dy_in.options());
        TORCH_CHECK(y_like.is_non_overlapping_and_dense(), "sg3c ops: bias_act_grad needs a dense layout");
        const int64_t numel = dy_in.numel();
        const int64_t words = (numel + tile::kSamplesPerWord - 1) / tile::kSamplesPerWord;
        TORCH_CHECK(bits.device() == dy_in.device() && bits.scalar_type() == at::kInt && bits.numel() == words,
                    "sg3c ops: bias_act_grad needs the forward pass's record");
        // Walk dy in the forward output's memory order, which the record follows.
        const at::Tensor dy = dy_in.strides() == y_like.strides() ? dy_in : at::empty_like(y_like).copy_(dy_in);
        at::Tensor dx = at::empty_like(y_like);
        if (numel == 0) {
            return dx;
        }
        const at::Tensor bits_c = bits.contiguous();
        with_dtype(dy.scalar_type(), LaunchBiasActGrad{dy, bits_c, dx, act_params(leaky, alpha, gain, clamp)});
        return dx;
    }
};

// The ops of one Backend as plain function pointers (their types do not depend on the Backend), so that
// the Python bindings (bind.h, compiled by the host compiler) need none of the kernel code.
struct OpsTable {
    decltype(&Ops<void>::resample) resample;
    decltype(&Ops<void>::describe) describe;
    decltype(&Ops<void>::kernel_args) kernel_args;
    decltype(&Ops<void>::direct) direct;
    decltype(&Ops<void>::bias_act) bias_act;
    decltype(&Ops<void>::bias_act_grad) bias_act_grad;
};

template <class Backend>
OpsTable table_of() {
    using O = Ops<Backend>;
    return {&O::resample, &O::describe, &O::kernel_args, &O::direct, &O::bias_act, &O::bias_act_grad};
}

}  // namespace sg3c
