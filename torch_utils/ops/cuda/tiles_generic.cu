// The Generic tile kernel (run-time factors and taps), for every data type.
#include "plan.h"
#include "tile_kernel.cuh"

template cudaError_t sg3c::launch_tiles<sg3c::tile::Generic, float>(const sg3c::tile::Plan&,
                                                                    const sg3c::tile::Tensors<float>&, cudaStream_t);
template cudaError_t sg3c::launch_tiles<sg3c::tile::Generic, c10::Half>(const sg3c::tile::Plan&,
                                                                        const sg3c::tile::Tensors<c10::Half>&,
                                                                        cudaStream_t);
template cudaError_t sg3c::launch_tiles<sg3c::tile::Generic, c10::BFloat16>(const sg3c::tile::Plan&,
                                                                            const sg3c::tile::Tensors<c10::BFloat16>&,
                                                                            cudaStream_t);
template cudaError_t sg3c::launch_tiles<sg3c::tile::Generic, double>(const sg3c::tile::Plan&,
                                                                     const sg3c::tile::Tensors<double>&, cudaStream_t);
