"""Bilinear grid sampling (zero padding) with gradients of any order w.r.t. the images.

The R1 penalty differentiates D's gradient w.r.t. the augmented reals, so the augmentation's resampling
must be differentiable twice. torch's grid_sample is on the CPU but not on CUDA ("derivative for
aten::grid_sampler_2d_backward is not implemented"), which stopped every GPU run with augmentation and
gamma > 0. Sampling is linear in the image: its image gradient is the transposed sampling
(grid_sampler_2d_backward), and the gradient of that is the sampling again. Two autograd functions that
run each other's kernel in their backward therefore give every order on every device, with torch's own
kernels. The grid gets no gradient: augmentation grids come from random numbers, not from parameters.
"""
from __future__ import annotations

import torch

_BILINEAR = 0   # torch's enum values for interpolation_mode and padding_mode
_ZEROS = 0


def grid_sample_bilinear(images: torch.Tensor, grid: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Same values as F.grid_sample(images, grid, 'bilinear', 'zeros', align_corners); images [N, C, H, W],
    grid [N, H_out, W_out, 2] in [-1, 1], without gradient."""
    if grid.requires_grad:
        raise ValueError('grid_sample_bilinear: the grid must not require gradients')
    return _Sample.apply(images, grid, align_corners)


class _Sample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, grid, align_corners):
        ctx.save_for_backward(images, grid)
        ctx.align_corners = align_corners
        return torch.grid_sampler_2d(images, grid, _BILINEAR, _ZEROS, align_corners)

    @staticmethod
    def backward(ctx, grad):
        images, grid = ctx.saved_tensors
        grad_images = _Transposed.apply(grad, images, grid, ctx.align_corners) if ctx.needs_input_grad[0] else None
        return grad_images, None, None


class _Transposed(torch.autograd.Function):
    """grad [N, C, H_out, W_out] -> images' shape; `images` only gives the shape (the map is linear)."""

    @staticmethod
    def forward(ctx, grad, images, grid, align_corners):
        ctx.save_for_backward(grid)
        ctx.align_corners = align_corners
        grad_images, _ = torch.ops.aten.grid_sampler_2d_backward(grad, images, grid, _BILINEAR, _ZEROS, align_corners,
                                                                 [True, False])
        return grad_images

    @staticmethod
    def backward(ctx, grad_grad):
        grid, = ctx.saved_tensors
        again = _Sample.apply(grad_grad, grid, ctx.align_corners) if ctx.needs_input_grad[0] else None
        return again, None, None, None
