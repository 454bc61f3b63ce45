// Shared declarations of the stylegan3-clothing CUDA ops (bindings.cpp <-> the .cu files).
//
// Every kernel here is written for clarity first: one thread per output element, accumulation in the
// "op math" type (float for half/bfloat16/float), arbitrary input strides so that channels-last tensors
// need no copy. The Python side (torch_utils/ops/cuda_kernels.py) builds the autograd graph from these
// launches, so that gradients of gradients are again made of these same launches.
#pragma once

#include <cstdint>
#include <optional>

#include <torch/extension.h>

namespace sg3c {

// Activation applied after the sum: its derivative is a function of the output alone, which is what
// lets the backward pass keep only the output (see bias_act_grad).
enum Activation : int64_t { kLinear = 0, kLeakyRelu = 1 };

// What happens to a value after it is computed: act (with slope `alpha` for negative inputs), then
// multiplication by `gain`, then clamping to [-clamp, clamp] when clamp >= 0.
struct Epilogue {
    int64_t act;
    float alpha;
    float gain;
    float clamp;
};

// y = clamp(act(x + b) * gain), b broadcast along `dim` (b may be absent).
at::Tensor bias_act_forward(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, Epilogue epi);

// dx = dy * d(y)/d(pre-activation), evaluated from the forward output y.
at::Tensor bias_act_grad(const at::Tensor& dy, const at::Tensor& y, Epilogue epi);

// Per axis: zero-insert by up, pad by (pad0, pad1), correlate with `taps` [kh, kw], keep every down-th
// sample; the optional per-channel bias is added to the input samples first and the epilogue applied last.
struct Resample {
    int64_t up_x, up_y, down_x, down_y;
    int64_t pad_x0, pad_x1, pad_y0, pad_y1;
};
at::Tensor upfirdn2d_forward(const at::Tensor& x, const at::Tensor& taps, const std::optional<at::Tensor>& b,
                             Resample rs, Epilogue epi);

}  // namespace sg3c
