// Python bindings of the CUDA ops: argument checks here, kernels in the .cu files.
#include "sg3c_ops.h"

namespace {

sg3c::Epilogue make_epilogue(int64_t act, double alpha, double gain, double clamp) {
    TORCH_CHECK(act == sg3c::kLinear || act == sg3c::kLeakyRelu, "sg3c ops: unknown activation code ", act);
    return {act, static_cast<float>(alpha), static_cast<float>(gain), static_cast<float>(clamp)};
}

void check_bias(const std::optional<at::Tensor>& b, const at::Tensor& x, int64_t dim) {
    if (!b.has_value() || !b->defined()) {
        return;
    }
    TORCH_CHECK(b->device() == x.device(), "sg3c ops: bias must be on the input's device");
    TORCH_CHECK(b->scalar_type() == x.scalar_type(), "sg3c ops: bias must have the input's dtype");
    TORCH_CHECK(b->dim() == 1 && b->size(0) == x.size(dim), "sg3c ops: bias must be 1-D with one value per channel");
}

at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, int64_t act, double alpha,
                    double gain, double clamp) {
    TORCH_CHECK(x.is_cuda(), "sg3c ops: bias_act needs a CUDA tensor");
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "sg3c ops: bias_act dim out of range");
    check_bias(b, x, dim);
    return sg3c::bias_act_forward(x, b, dim, make_epilogue(act, alpha, gain, clamp));
}

at::Tensor bias_act_grad(const at::Tensor& dy, const at::Tensor& y, int64_t act, double alpha, double gain,
                         double clamp) {
    TORCH_CHECK(y.is_cuda() && dy.device() == y.device(), "sg3c ops: bias_act_grad needs CUDA tensors on one device");
    TORCH_CHECK(dy.sizes() == y.sizes() && dy.scalar_type() == y.scalar_type(),
                "sg3c ops: bias_act_grad needs dy shaped and typed like y");
    return sg3c::bias_act_grad(dy, y, make_epilogue(act, alpha, gain, clamp));
}

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& taps, const std::optional<at::Tensor>& b, int64_t up_x,
                     int64_t up_y, int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0,
                     int64_t pad_y1, int64_t act, double alpha, double gain, double clamp) {
    TORCH_CHECK(x.is_cuda() && x.dim() == 4, "sg3c ops: upfirdn2d needs a 4-D CUDA tensor");
    TORCH_CHECK(taps.device() == x.device() && taps.scalar_type() == at::kFloat && taps.dim() == 2,
                "sg3c ops: upfirdn2d taps must be a 2-D float32 tensor on the input's device");
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "sg3c ops: up/down factors must be >= 1");
    check_bias(b, x, 1);
    const sg3c::Resample rs{up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1};
    return sg3c::upfirdn2d_forward(x, taps, b, rs, make_epilogue(act, alpha, gain, clamp));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "stylegan3-clothing CUDA ops (see torch_utils/ops/cuda_kernels.py)";
    m.def("bias_act", &bias_act, "y = clamp(act(x + b) * gain)");
    m.def("bias_act_grad", &bias_act_grad, "dx from dy and the forward output y");
    m.def("upfirdn2d", &upfirdn2d, "bias, upsample, pad, correlate, downsample, then act/gain/clamp");
    m.attr("ACT_LINEAR") = static_cast<int64_t>(sg3c::kLinear);
    m.attr("ACT_LRELU") = static_cast<int64_t>(sg3c::kLeakyRelu);
}
