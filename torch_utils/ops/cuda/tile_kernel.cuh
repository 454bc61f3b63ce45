// The tile kernel and its launcher, instantiated per specialisation in tiles_*.cu (one group per file, so
// that the build compiles them in parallel) and called from kernels.cu. Only tile.h and the CUDA runtime:
// these files compile without ATen.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include <cuda_runtime.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "tile.h"

namespace sg3c {

// The phases of one block in order, a barrier after each; each phase index a compile-time constant (a
// template argument, not an unrolled loop's counter, which nvcc may leave rolled), so that for a Spec every
// phase's grid, buffers and index decode fold into constants.
template <class S, typename T, int... K>
__device__ __forceinline__ void run_phases(const tile::Plan& p, const tile::Block& b, const tile::Tensors<T>& t,
                                           typename tile::AccType<T>::type* smem, std::integer_sequence<int, K...>) {
    const int phases = tile::phase_count(tile::shape_of<S>(p));
    ((K < phases ? (tile::run_phase<S, T>(p, K, b, t, smem, int(threadIdx.x), tile::kThreads), __syncthreads(), 0) : 0),
     ...);
}

template <class S, typename T>
__global__ void __launch_bounds__(tile::kThreads, 4) tile_kernel(tile::Plan plan, tile::Tensors<T> t) {
    using acc_t = typename tile::AccType<T>::type;
    const tile::Plan p = tile::fixed_plan<S>(plan);
    extern __shared__ __align__(16) unsigned char smem_bytes[];
    acc_t* smem = reinterpret_cast<acc_t*>(smem_bytes);
    for (int index = int(blockIdx.x); index < p.blocks; index += int(gridDim.x)) {   // (blocks < 2^31: plan.h)
        const tile::Block b = tile::locate_block<S>(p, index);
        run_phases<S, T>(p, b, t, smem, std::make_integer_sequence<int, tile::kMaxPhases>());
    }
}

// Enqueues one launch on `stream`; returns the launch's error (none: cudaSuccess). Never waits.
template <class S, typename T>
cudaError_t launch_tiles(const tile::Plan& p, const tile::Tensors<T>& t, cudaStream_t stream) {
    using acc_t = typename tile::AccType<T>::type;
    const size_t bytes = size_t(p.smem_elems) * sizeof(acc_t);
    const unsigned grid = unsigned(std::min<int64_t>(p.blocks, std::numeric_limits<int32_t>::max()));
    if (bytes > (48u << 10)) {   // (a fixed tile above the default limit: opt in, per device and kernel)
        const cudaError_t set = cudaFuncSetAttribute(tile_kernel<S, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
        if (set != cudaSuccess) {
            return set;
        }
    }
    tile_kernel<S, T><<<grid, tile::kThreads, bytes, stream>>>(p, t);
    return cudaGetLastError();
}

}  // namespace sg3c

// Explicit instantiations for one group of specialisations (float and half).
#define SG3C_INSTANTIATE_FAST(S)                                                                          \
    template cudaError_t sg3c::launch_tiles<sg3c::specs::S, float>(const sg3c::tile::Plan&,               \
                                                                   const sg3c::tile::Tensors<float>&,     \
                                                                   cudaStream_t);                         \
    template cudaError_t sg3c::launch_tiles<sg3c::specs::S, c10::Half>(const sg3c::tile::Plan&,           \
                                                                       const sg3c::tile::Tensors<c10::Half>&, \
                                                                       cudaStream_t);
