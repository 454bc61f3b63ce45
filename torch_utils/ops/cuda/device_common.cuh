// Device helpers shared by the kernels: launch sizing and the epilogue (activation, gain, clamp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "sg3c_ops.h"

namespace sg3c {

constexpr int kThreads = 256;

// Blocks for `work` elements at one element per thread; grid-stride loops cover whatever the cap leaves.
inline int64_t block_count(int64_t work) {
    return std::max<int64_t>(1, std::min<int64_t>((work + kThreads - 1) / kThreads, int64_t(1) << 20));
}

template <typename acc_t>
__device__ __forceinline__ acc_t apply_epilogue(acc_t v, const Epilogue& epi) {
    if (epi.act == kLeakyRelu && v < acc_t(0)) {
        v *= acc_t(epi.alpha);
    }
    v *= acc_t(epi.gain);
    if (epi.clamp >= 0) {
        const acc_t hi = acc_t(epi.clamp);
        v = v < -hi ? -hi : (v > hi ? hi : v);
    }
    return v;
}

}  // namespace sg3c
