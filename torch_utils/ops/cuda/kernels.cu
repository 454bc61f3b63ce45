// The CUDA backend of the ops (ops.h): kernels that run tile.h's per-tile code, one thread block per tile,
// a barrier after each phase (tile_kernel.cuh, compiled in tiles_*.cu), and the elementwise and direct
// kernels. Every launch goes on the current stream and none waits for the device, so the ops can be
// captured in a CUDA graph.
#include <algorithm>

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "ops.h"

namespace sg3c {

template <class S, typename T>   // tile_kernel.cuh, instantiated in tiles_*.cu
cudaError_t launch_tiles(const tile::Plan& p, const tile::Tensors<T>& t, cudaStream_t stream);

namespace {

template <typename T>
__global__ void direct_kernel(const T* __restrict__ x, const float* __restrict__ taps, T* __restrict__ y,
                              tile::DirectGeom g, int64_t count) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(blockDim.x) * gridDim.x) {
        tile::direct_output(x, taps, y, g, i);
    }
}

template <typename T>
__global__ void bias_act_kernel(tile::BiasActArgs<T> a) {
    const int64_t thread = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    tile::bias_act_warp(a, thread / tile::kWarp, int64_t(blockDim.x) * gridDim.x, int(threadIdx.x % tile::kWarp));
}

template <typename T>
__global__ void bias_act_grad_kernel(const T* __restrict__ dy, const uint32_t* __restrict__ bits, T* __restrict__ dx,
                                     int64_t numel, tile::ActParams act) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < numel; i += int64_t(blockDim.x) * gridDim.x) {
        tile::bias_act_grad_element(dy, bits, dx, act, i);
    }
}

// Blocks for `work` items at one per thread (grid-stride loops cover the rest).
unsigned int grid_for(int64_t work, int threads) {
    return unsigned(std::max<int64_t>(1, std::min<int64_t>((work + threads - 1) / threads, int64_t(1) << 20)));
}

}  // namespace

struct CudaBackend {
    static bool on_device(const at::Tensor& t) { return t.is_cuda(); }

    // Launch on the input's device (the current stream of that device).
    static c10::cuda::OptionalCUDAGuard guard(const at::Tensor& t) { return c10::cuda::OptionalCUDAGuard(t.device()); }

    // The default per-block limit, which needs no opt-in attribute on any GPU.
    static int64_t smem_limit() { return 48 << 10; }

    // The most a block may opt in to on the current device (launch_tiles sets the attribute).
    static int64_t smem_optin() {
        int device = 0, bytes = 48 << 10;
        C10_CUDA_CHECK(cudaGetDevice(&device));
        C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
        return bytes;
    }

    template <class S, typename T>
    static void tiles(const tile::Plan& p, const tile::Tensors<T>& t) {
        const cudaError_t launched = launch_tiles<S, T>(p, t, at::cuda::getCurrentCUDAStream());
        C10_CUDA_CHECK(launched);
    }

    template <typename T>
    static void direct(const T* x, const float* taps, T* y, const tile::DirectGeom& g, int64_t count) {
        direct_kernel<T><<<grid_for(count, 256), 256, 0, at::cuda::getCurrentCUDAStream()>>>(x, taps, y, g, count);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    }

    template <typename T>
    static void bias_act(const tile::BiasActArgs<T>& a) {   // (blockDim a multiple of the warp: bias_act_warp)
        bias_act_kernel<T><<<grid_for(a.numel, 256), 256, 0, at::cuda::getCurrentCUDAStream()>>>(a);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    }

    template <typename T>
    static void bias_act_grad(const T* dy, const uint32_t* bits, T* dx, int64_t numel, const tile::ActParams& act) {
        bias_act_grad_kernel<T><<<grid_for(numel, 256), 256, 0, at::cuda::getCurrentCUDAStream()>>>(dy, bits, dx, numel,
                                                                                                   act);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
};

OpsTable cuda_table() { return table_of<CudaBackend>(); }

}  // namespace sg3c
