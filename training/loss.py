"""GAN losses: StyleGAN2's non-saturating logistic loss with lazy R1 and path-length regularisation,
and WGAN-GP as an alternative.

Training alternates phases; each accumulates gradients into the networks' .grad fields:
  Gmain  G makes D score its images as real (softplus(-D(G(z)))), with style mixing on the ws
  Greg   path-length regularisation: |J^T y| for random image-space y stays near its running mean
  Dmain  D scores reals high and fakes low
  Dreg   R1: squared gradient norm of D at real images, times gamma/2
Lazy regularisation runs the *reg phases every k steps with the gain k, so they cost 1/k as much.
StyleGAN3-R also blurs every image D sees, fading the blur out over the first kimg.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import distributed
from torch_utils.ops.upfirdn2d import filter2d

Reporter = Callable[[str, torch.Tensor], None]
PHASES = ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth')


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(np.floor(sigma * 3))
    if radius <= 0:
        return img
    taps = torch.arange(-radius, radius + 1, device=img.device).div(sigma).square().neg().exp2()
    return filter2d(img, taps / taps.sum())


@dataclass(frozen=True)
class LossOptions:
    """What the loss computes; the training loop fills it from its own options (gamma, pl_weight, ...)."""
    kind: str = 'logistic'            # logistic | wgan-gp
    r1_gamma: float = 10              # logistic: R1 penalty weight (the penalty is gamma/2 * |grad D(real)|^2)
    style_mixing_prob: float = 0      # chance that a generated batch takes its later ws from a second z
    pl_weight: float = 0              # logistic: path-length penalty weight (0 skips the Greg phase)
    pl_batch_shrink: int = 2          # the path-length phase runs on batch / this
    pl_decay: float = 0.01            # speed of the running mean that path lengths are pulled towards
    blur_init_sigma: float = 0        # D sees images blurred by this sigma at first (StyleGAN3-R) ...
    blur_fade_kimg: float = 0         # ... fading to none over this many kimg
    gp_weight: float = 10             # wgan-gp: gradient penalty weight
    drift_weight: float = 1e-3        # wgan-gp: keeps D's scores of reals near 0

    def __post_init__(self):
        if self.kind not in ('logistic', 'wgan-gp'):
            raise ValueError(f'unknown loss {self.kind!r}')


class StyleGANLoss:
    """Loss of StyleGAN2/StyleGAN3 training; `LossOptions(kind='wgan-gp')` swaps in the Wasserstein loss with gradient penalty.

    `report(name, values)` receives the statistics of every phase; `observe_real(logits)` D's scores of the
    reals, for adaptive augmentation."""

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, options: LossOptions = LossOptions(),
                 augment_pipe: Optional[torch.nn.Module] = None, report: Optional[Reporter] = None,
                 observe_real: Optional[Callable[[torch.Tensor], None]] = None):
        self.G, self.D, self.augment_pipe, self.opts = G, D, augment_pipe, options
        self.report = report or (lambda name, value: None)
        self.observe_real = observe_real or (lambda logits: None)
        # Running mean of path lengths: part of the training state, saved and restored with it.
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)

    # -- forward passes ---------------------------------------------------------------------

    def generate(self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = False):
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.opts.style_mixing_prob > 0:
            # From a random layer on, the ws come from a second latent: regularises the per-layer styles.
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, ws.shape[1])
            cutoff = torch.where(torch.rand([], device=ws.device) < self.opts.style_mixing_prob, cutoff,
                                 torch.full_like(cutoff, ws.shape[1]))
            ws[:, cutoff:] = self.G.mapping(torch.randn_like(z), c, update_emas=False)[:, cutoff:]
        return self.G.synthesis(ws, update_emas=update_emas), ws

    def discriminate(self, img: torch.Tensor, c: torch.Tensor, blur_sigma: float = 0, update_emas: bool = False):
        img = gaussian_blur(img, blur_sigma) if blur_sigma > 0 else img
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c, update_emas=update_emas)

    def blur_sigma(self, cur_nimg: int) -> float:
        if self.opts.blur_fade_kimg <= 0:
            return 0
        return max(1 - cur_nimg / (self.opts.blur_fade_kimg * 1e3), 0) * self.opts.blur_init_sigma

    # -- one phase ----------------------------------------------------------------------------

    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, real_c: torch.Tensor, gen_z: torch.Tensor,
                             gen_c: torch.Tensor, gain: float, cur_nimg: int) -> None:
        """Run one phase on one (sub)batch and add gain * d(loss)/d(params) to the .grad fields."""
        if phase not in PHASES:
            raise ValueError(f'unknown phase {phase!r}')
        if self.opts.pl_weight == 0 or self.opts.kind == 'wgan-gp':
            phase = {'Greg': 'none', 'Gboth': 'Gmain'}.get(phase, phase)
        if self.opts.r1_gamma == 0 and self.opts.kind == 'logistic':
            phase = {'Dreg': 'none', 'Dboth': 'Dmain'}.get(phase, phase)
        sigma = self.blur_sigma(cur_nimg)

        if phase in ('Gmain', 'Gboth'):
            img, _ = self.generate(gen_z, gen_c)
            logits = self.discriminate(img, gen_c, sigma)
            self.report('Loss/scores/fake', logits)
            self.report('Loss/signs/fake', logits.sign())
            loss = F.softplus(-logits) if self.opts.kind == 'logistic' else -logits
            self.report('Loss/G/loss', loss)
            loss.mean().mul(gain).backward()

        if phase in ('Greg', 'Gboth'):
            n = max(gen_z.shape[0] // self.opts.pl_batch_shrink, 1)
            img, ws = self.generate(gen_z[:n], gen_c[:n])
            y = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
            grads, = torch.autograd.grad(outputs=[(img * y).sum()], inputs=[ws], create_graph=True)
            lengths = grads.square().sum(2).mean(1).sqrt()
            batch_mean = lengths.mean()
            # Across ranks: the value of the global mean, the gradient of this rank's part.
            batch_mean = batch_mean + (distributed.mean_over_ranks(batch_mean) - batch_mean).detach()
            pl_mean = self.pl_mean.lerp(batch_mean, self.opts.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            penalty = (lengths - pl_mean).square()
            self.report('Loss/pl_penalty', penalty)
            self.report('Loss/G/reg', penalty * self.opts.pl_weight)
            (penalty * self.opts.pl_weight).mean().mul(gain).backward()

        loss_fake = 0
        if phase in ('Dmain', 'Dboth'):
            img, _ = self.generate(gen_z, gen_c, update_emas=True)
            logits = self.discriminate(img, gen_c, sigma, update_emas=True)
            self.report('Loss/scores/fake', logits)
            self.report('Loss/signs/fake', logits.sign())
            loss_fake = F.softplus(logits) if self.opts.kind == 'logistic' else logits
            loss_fake.mean().mul(gain).backward()
            if self.opts.kind == 'wgan-gp' and phase == 'Dmain':
                self._gradient_penalty(real_img, img.detach(), real_c, sigma, gain)

        if phase in ('Dmain', 'Dreg', 'Dboth') and not (self.opts.kind == 'wgan-gp' and phase == 'Dreg'):
            need_r1 = phase in ('Dreg', 'Dboth') and self.opts.kind == 'logistic'
            real = real_img.detach().requires_grad_(need_r1)
            logits = self.discriminate(real, real_c, sigma)
            self.report('Loss/scores/real', logits)
            self.report('Loss/signs/real', logits.sign())
            if phase in ('Dmain', 'Dboth'):
                self.observe_real(logits)
            loss = 0
            if phase in ('Dmain', 'Dboth'):
                loss_real = F.softplus(-logits) if self.opts.kind == 'logistic' else \
                    -logits + self.opts.drift_weight * logits.square()
                self.report('Loss/D/loss', loss_fake + loss_real)
                loss = loss_real
            if need_r1:
                grads, = torch.autograd.grad(outputs=[logits.sum()], inputs=[real], create_graph=True)
                penalty = grads.square().sum([1, 2, 3])
                self.report('Loss/r1_penalty', penalty)
                self.report('Loss/D/reg', penalty * (self.opts.r1_gamma / 2))
                loss = loss + penalty * (self.opts.r1_gamma / 2)
            if torch.is_tensor(loss):
                loss.mean().mul(gain).backward()

    def _gradient_penalty(self, real_img, fake_img, c, sigma, gain):
        """WGAN-GP: (|grad D| - 1)^2 at random points between reals and fakes."""
        alpha = torch.rand([real_img.shape[0], 1, 1, 1], device=real_img.device)
        mixed = (real_img.detach().lerp(fake_img, alpha)).requires_grad_(True)
        logits = self.discriminate(mixed, c, sigma)
        grads, = torch.autograd.grad(outputs=[logits.sum()], inputs=[mixed], create_graph=True)
        penalty = (grads.flatten(1).norm(dim=1) - 1).square()
        self.report('Loss/gp_penalty', penalty)
        (penalty * self.opts.gp_weight).mean().mul(gain).backward()
