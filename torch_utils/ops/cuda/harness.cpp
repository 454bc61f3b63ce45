// The CPU harness of the CUDA kernels' tile code (tile.h): built with the CPU torch on the fly
// (torch_utils/ops/kernel_harness.py), it runs every block of a launch in turn, and inside a block each
// phase for every thread of the block before the next phase starts, as the barriers order them on a GPU.
// It proves the indexing, halos, tiling, plans and arithmetic of the GPU code on a CPU (not launch bounds
// or races). Shared memory is filled with NaN before each block, so a read of anything no phase wrote
// poisons the result, and a guard zone past its end is checked after each block.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>

#include "bind.h"

namespace sg3c {

struct HostBackend {
    static bool on_device(const at::Tensor& t) { return t.device().is_cpu(); }

    struct NoGuard {};
    static NoGuard guard(const at::Tensor&) { return {}; }

    // As on the GPU (without opting in to more), so that plans and tiles are the GPU's.
    static int64_t smem_limit() { return 48 << 10; }
    // An H100's opt-in limit (227 KB), so that the specialisations' fixed tiles are the H100's.
    static int64_t smem_optin() { return 227 << 10; }

    template <class S, typename T>
    static void tiles(const tile::Plan& plan, const tile::Tensors<T>& t) {
        using acc_t = typename tile::AccType<T>::type;
        const tile::Plan p = tile::fixed_plan<S>(plan);
        constexpr int kGuard = 64;
        const int phases = tile::phase_count(tile::shape_of<S>(p));
        at::parallel_for(0, p.blocks, 1, [&](int64_t begin, int64_t end) {
            std::vector<acc_t> smem(size_t(p.smem_elems) + kGuard);
            const acc_t poison = std::numeric_limits<acc_t>::quiet_NaN();
            for (int64_t index = begin; index < end; ++index) {
                std::fill(smem.begin(), smem.end(), poison);
                const tile::Block blk = tile::locate_block<S>(p, int(index));
                for (int k = 0; k < phases; ++k) {
                    for (int tid = 0; tid < tile::kThreads; ++tid) {
                        tile::run_phase<S, T>(p, k, blk, t, smem.data(), tid, tile::kThreads);
                    }
                }
                for (int g = 0; g < kGuard; ++g) {
                    const acc_t v = smem[size_t(p.smem_elems) + g];
                    TORCH_CHECK(v != v, "sg3c harness: block ", index, " wrote past its shared memory (",
                                p.smem_elems, " elements)");
                }
            }
        });
    }

    template <typename T>
    static void direct(const T* x, const float* taps, T* y, const tile::DirectGeom& g, int64_t count) {
        at::parallel_for(0, count, 4096, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                tile::direct_output(x, taps, y, g, i);
            }
        });
    }

    // One block's worth of warps, each over many elements: a warp's lanes and its ballots run in
    // bias_act_warp's host branch, and every lane advances its bias channel several times.
    template <typename T>
    static void bias_act(const tile::BiasActArgs<T>& a) {
        constexpr int64_t warps = tile::kThreads / tile::kWarp;
        at::parallel_for(0, warps, 1, [&](int64_t begin, int64_t end) {
            for (int64_t w = begin; w < end; ++w) {
                tile::bias_act_warp(a, w, tile::kThreads, 0);
            }
        });
    }

    template <typename T>
    static void bias_act_grad(const T* dy, const uint32_t* bits, T* dx, int64_t numel, const tile::ActParams& act) {
        at::parallel_for(0, numel, 4096, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                tile::bias_act_grad_element(dy, bits, dx, act, i);
            }
        });
    }
};

}  // namespace sg3c

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "CPU harness of the stylegan3-clothing CUDA kernels' tile code (see torch_utils/ops/kernel_harness.py)";
    sg3c::define_ops(m, sg3c::table_of<sg3c::HostBackend>());
}
