// Python bindings of the CUDA ops: the functions of ops.h over the CUDA backend (kernels.cu).
#include "bind.h"

namespace sg3c {
OpsTable cuda_table();   // kernels.cu
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "stylegan3-clothing CUDA ops (see torch_utils/ops/cuda_kernels.py)";
    sg3c::define_ops(m, sg3c::cuda_table());
}
