// The tile kernel and its launcher, instantiated per specialisation in tiles_*.cu (one group per file, so
// that the build compiles them in parallel) and called from kernels.cu. Only tile.h and the CUDA runtime:
// these files compile without ATen.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include <cuda_runtime.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "tile.h"

namespace sg3c {

template <class S, typename T>
__global__ void __launch_bounds__(tile::kThreads) tile_kernel(tile::Plan p, tile::Tensors<T> t) {
    using acc_t = typename tile::AccType<T>::type;
    extern __shared__ __align__(16) unsigned char smem_bytes[];
    acc_t* smem = reinterpret_cast<acc_t*>(smem_bytes);
    const int phases = tile::phase_count(tile::shape_of<S>(p));
    for (int64_t index = blockIdx.x; index < p.blocks; index += gridDim.x) {
        const tile::Block b = tile::locate_block(p, index);
#pragma unroll
        for (int k = 0; k < tile::kMaxPhases; ++k) {   // (unrolled: each phase's identity is a constant)
            if (k < phases) {
                tile::run_phase<S, T>(p, k, b, t, smem, int(threadIdx.x), tile::kThreads);
                __syncthreads();
            }
        }
    }
}

// Enqueues one launch on `stream`; returns the launch's error (none: cudaSuccess). Never waits.
template <class S, typename T>
cudaError_t launch_tiles(const tile::Plan& p, const tile::Tensors<T>& t, cudaStream_t stream) {
    using acc_t = typename tile::AccType<T>::type;
    const size_t bytes = size_t(p.smem_elems) * sizeof(acc_t);
    const unsigned grid = unsigned(std::min<int64_t>(p.blocks, std::numeric_limits<int32_t>::max()));
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
