// Elementwise bias + activation + gain + clamp, and its derivative expressed through the output.
#include "device_common.cuh"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

namespace sg3c {
namespace {

// x is dense (in any dimension order) and y has the same strides, so both are walked in memory order;
// an element's index along the bias axis follows from its memory offset.
template <typename scalar_t>
__global__ void bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                                scalar_t* __restrict__ y, int64_t numel, int64_t bias_stride, int64_t bias_size,
                                Epilogue epi) {
    using acc_t = at::opmath_type<scalar_t>;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
         i += int64_t(blockDim.x) * gridDim.x) {
        acc_t v = static_cast<acc_t>(x[i]);
        if (b != nullptr) {
            v += static_cast<acc_t>(b[(i / bias_stride) % bias_size]);
        }
        y[i] = static_cast<scalar_t>(apply_epilogue(v, epi));
    }
}

// Where the forward output y was clamped the derivative is zero; elsewhere it is gain times the
// activation's slope, and the slope's branch can be read from y's sign because gain > 0.
template <typename scalar_t>
__global__ void bias_act_grad_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ y,
                                     scalar_t* __restrict__ dx, int64_t numel, Epilogue epi) {
    using acc_t = at::opmath_type<scalar_t>;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
         i += int64_t(blockDim.x) * gridDim.x) {
        const acc_t out = static_cast<acc_t>(y[i]);
        acc_t slope = acc_t(epi.gain);
        if (epi.act == kLeakyRelu && !(out > acc_t(0))) {
            slope *= acc_t(epi.alpha);
        }
        if (epi.clamp >= 0 && !(out < acc_t(epi.clamp) && out > acc_t(-epi.clamp))) {
            slope = acc_t(0);
        }
        dx[i] = static_cast<scalar_t>(static_cast<acc_t>(dy[i]) * slope);
    }
}

}  // namespace

at::Tensor bias_act_forward(const at::Tensor& x_in, const std::optional<at::Tensor>& b, int64_t dim, Epilogue epi) {
    const at::cuda::OptionalCUDAGuard guard(x_in.device());
    const at::Tensor x = x_in.is_non_overlapping_and_dense() ? x_in : x_in.contiguous();
    at::Tensor y = at::empty_like(x);   // keeps x's strides (x is dense)
    const int64_t numel = x.numel();
    if (numel == 0) {
        return y;
    }
    const bool has_bias = b.has_value() && b->defined();
    at::Tensor bias = has_bias ? b->contiguous() : at::Tensor();
    const int64_t bias_stride = x.stride(dim);
    const int64_t bias_size = x.size(dim);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sg3c_bias_act", [&] {
        bias_act_kernel<scalar_t><<<block_count(numel), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            x.data_ptr<scalar_t>(), has_bias ? bias.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>(), numel,
            bias_stride, bias_size, epi);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}

at::Tensor bias_act_grad(const at::Tensor& dy_in, const at::Tensor& y_in, Epilogue epi) {
    const at::cuda::OptionalCUDAGuard guard(y_in.device());
    const at::Tensor y = y_in.is_non_overlapping_and_dense() ? y_in : y_in.contiguous();
    // Walk both in y's memory order.
    const at::Tensor dy = dy_in.strides() == y.strides() ? dy_in : at::empty_like(y).copy_(dy_in);
    at::Tensor dx = at::empty_like(y);
    const int64_t numel = y.numel();
    if (numel == 0) {
        return dx;
    }
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "sg3c_bias_act_grad", [&] {
        bias_act_grad_kernel<scalar_t><<<block_count(numel), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            dy.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), numel, epi);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return dx;
}

}  // namespace sg3c
