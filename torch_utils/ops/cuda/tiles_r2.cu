// Tile kernels of the specialisation group SG3C_SPECS_R2 (plan.h), float and half.
#include "plan.h"
#include "tile_kernel.cuh"

SG3C_SPECS_R2(SG3C_INSTANTIATE_FAST)
