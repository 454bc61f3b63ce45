// Upsample (zero insertion), pad, FIR-correlate and downsample, per channel, in one pass.
//
// Each thread computes one output sample directly from the input: of the filter taps that land on the
// zero-inserted image, only every up-th one meets a real input sample, so the loops step over taps by
// `up` starting from the first tap with that phase. Nothing of the upsampled image is ever stored.
#include "device_common.cuh"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

namespace sg3c {
namespace {

struct Layout {   // sizes and element strides of an [N, C, H, W] tensor
    int64_t n, c, h, w;
    int64_t sn, sc, sh, sw;
};

Layout layout_of(const at::Tensor& t) {
    return {t.size(0), t.size(1), t.size(2), t.size(3), t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// One axis of the resampling: output sample o starts its taps at position o * down - pad0 of the
// zero-inserted input, whose real samples sit at multiples of up.
struct AxisWalk {
    int64_t first_tap;   // first tap index that meets a real sample
    int64_t first_src;   // the input index that tap meets (may be negative: the loop skips those)
};

__device__ __forceinline__ AxisWalk start_axis(int64_t o, int64_t up, int64_t down, int64_t pad0) {
    const int64_t pos = o * down - pad0;
    const int64_t tap = ((-pos) % up + up) % up;
    return {tap, (pos + tap) / up};
}

template <typename scalar_t>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x, Layout xl, const float* __restrict__ taps,
                                 int64_t kh, int64_t kw, const scalar_t* __restrict__ bias, scalar_t* __restrict__ y,
                                 Layout yl, Resample rs, Epilogue epi) {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t total = yl.n * yl.c * yl.h * yl.w;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += int64_t(blockDim.x) * gridDim.x) {
        const int64_t ox = i % yl.w;
        const int64_t oy = (i / yl.w) % yl.h;
        const int64_t ch = (i / (yl.w * yl.h)) % yl.c;
        const int64_t img = i / (yl.w * yl.h * yl.c);
        const acc_t shift = bias != nullptr ? static_cast<acc_t>(bias[ch]) : acc_t(0);
        const scalar_t* plane = x + img * xl.sn + ch * xl.sc;

        const AxisWalk wy = start_axis(oy, rs.up_y, rs.down_y, rs.pad_y0);
        const AxisWalk wx = start_axis(ox, rs.up_x, rs.down_x, rs.pad_x0);
        acc_t acc = 0;
        for (int64_t ky = wy.first_tap, sy = wy.first_src; ky < kh && sy < xl.h; ky += rs.up_y, ++sy) {
            if (sy < 0) {
                continue;
            }
            const float* row = taps + ky * kw;
            for (int64_t kx = wx.first_tap, sx = wx.first_src; kx < kw && sx < xl.w; kx += rs.up_x, ++sx) {
                if (sx < 0) {
                    continue;
                }
                acc += static_cast<acc_t>(row[kx]) * (static_cast<acc_t>(plane[sy * xl.sh + sx * xl.sw]) + shift);
            }
        }
        y[img * yl.sn + ch * yl.sc + oy * yl.sh + ox * yl.sw] = static_cast<scalar_t>(apply_epilogue(acc, epi));
    }
}

int64_t output_size(int64_t in, int64_t up, int64_t down, int64_t pad0, int64_t pad1, int64_t taps) {
    const int64_t full = in * up + pad0 + pad1 - taps + 1;   // fully overlapping filter positions
    return full > 0 ? (full + down - 1) / down : 0;
}

}  // namespace

at::Tensor upfirdn2d_forward(const at::Tensor& x, const at::Tensor& taps, const std::optional<at::Tensor>& b,
                             Resample rs, Epilogue epi) {
    const at::cuda::OptionalCUDAGuard guard(x.device());
    const int64_t kh = taps.size(0);
    const int64_t kw = taps.size(1);
    const int64_t out_h = output_size(x.size(2), rs.up_y, rs.down_y, rs.pad_y0, rs.pad_y1, kh);
    const int64_t out_w = output_size(x.size(3), rs.up_x, rs.down_x, rs.pad_x0, rs.pad_x1, kw);
    at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w},
                             x.options().memory_format(x.suggest_memory_format()));
    const int64_t total = y.numel();
    if (total == 0) {
        return y;
    }
    const bool has_bias = b.has_value() && b->defined();
    const at::Tensor bias = has_bias ? b->contiguous() : at::Tensor();
    const at::Tensor filt = taps.contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sg3c_upfirdn2d", [&] {
        upfirdn2d_kernel<scalar_t><<<block_count(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            x.data_ptr<scalar_t>(), layout_of(x), filt.data_ptr<float>(), kh, kw,
            has_bias ? bias.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>(), layout_of(y), rs, epi);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}

}  // namespace sg3c
