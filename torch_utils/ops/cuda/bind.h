// The Python functions of an ops module (the CUDA extension or the CPU harness): the same names and
// signatures, so torch_utils/ops/cuda_kernels.py drives either.
#pragma once

#include <torch/extension.h>

#include "ops.h"

namespace sg3c {

inline void define_ops(pybind11::module& m, const OpsTable& t) {
    m.def("resample", t.resample,
          "bias -> upsample/filter (stage A) -> activation -> filter/downsample (stage B) in one launch; "
          "None when no tiled plan fits");
    m.def("describe", t.describe, "the specialisation and tiles a resample call would use ('' if none fits)");
    m.def("kernel_args", t.kernel_args, "the tile kernel's parameter buffer and template arguments for a resample call");
    m.def("upfirdn2d_direct", t.direct, "upfirdn2d, one output per thread (any size)");
    m.def("bias_act", t.bias_act, "y = clamp(act(x + b) * gain) and its 2-bit derivative record");
    m.def("bias_act_grad", t.bias_act_grad, "dy times the recorded derivative");
    m.attr("ACT_NONE") = int64_t(tile::kActNone);
    m.attr("ACT_APPLY") = int64_t(tile::kActApply);
    m.attr("ACT_RECORD") = int64_t(tile::kActRecord);
    m.attr("ACT_MASKED") = int64_t(tile::kActMasked);
}

}  // namespace sg3c
