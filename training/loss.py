"""GAN losses: StyleGAN2's non-saturating logistic loss with lazy R1 and path-length regularisation,
and WGAN-GP as a subclass.

Training alternates phases; each accumulates gradients into the networks' .grad fields. The loss has
four parts, one method each:
  g_main       (Gmain) G makes D score its images as real: softplus(-D(G(z))), with style mixing on the ws
  path_length  (Greg)  |J^T y| for random image-space y stays near its running mean
  d_main       (Dmain) D scores reals high and fakes low: softplus(D(G(z))) + softplus(-D(x))
  r1           (Dreg)  squared gradient norm of D at real images, times gamma/2
Lazy regularisation runs the *reg phases every k steps with the gain k, so they cost 1/k as much; a
*both phase runs main and reg together. StyleGAN3-R also blurs every image D sees, fading the blur out
over the first kimg. WGAN-GP overrides g_main and d_main and has no lazy regularisation.
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
    r1_gamma: float = 10              # R1 penalty weight (the penalty is gamma/2 * |grad D(real)|^2)
    style_mixing_prob: float = 0      # chance that a generated batch takes its later ws from a second z
    pl_weight: float = 0              # path-length penalty weight (0 skips the Greg phase)
    pl_batch_shrink: int = 2          # the path-length phase runs on batch / this
    pl_decay: float = 0.01            # speed of the running mean that path lengths are pulled towards
    blur_init_sigma: float = 0        # D sees images blurred by this sigma at first (StyleGAN3-R) ...
    blur_fade_kimg: float = 0         # ... fading to none over this many kimg
    gp_weight: float = 10             # WGAN-GP: gradient penalty weight
    drift_weight: float = 1e-3        # WGAN-GP: keeps D's scores of reals near 0


class StyleGANLoss:
    """Loss of StyleGAN2/StyleGAN3 training.

    `report(name, values)` receives the statistics of every phase; `observe_real(logits)` D's scores of the
    reals, for adaptive augmentation."""

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, options: LossOptions = LossOptions(),
                 augment_pipe: Optional[torch.nn.Module] = None, report: Optional[Reporter] = None,
                 observe_real: Optional[Callable[[torch.Tensor], None]] = None):
        self.G, self.D, self.augment_pipe, self.opts = G, D, augment_pipe, options
        self.report = report or (lambda name, value: None)
        self.observe_real = observe_real or (lambda logits: None)
        self.pl_weight, self.r1_gamma = options.pl_weight, options.r1_gamma   # 0 skips the *reg phases
        # Running mean of path lengths: part of the training state, saved and restored with it.
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)

    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, real_c: torch.Tensor, gen_z: torch.Tensor,
                             gen_c: torch.Tensor, gain: float, cur_nimg: int) -> None:
        """Run one phase on one (sub)batch and add gain * d(loss)/d(params) to the .grad fields."""
        if phase not in PHASES:
            raise ValueError(f'unknown phase {phase!r}')
        main, reg = phase[1:] in ('main', 'both'), phase[1:] in ('reg', 'both')
        sigma = self.blur_sigma(cur_nimg)
        if phase[0] == 'G':
            if main:
                self.g_main(gen_z, gen_c, sigma).mean().mul(gain).backward()
            if reg and self.pl_weight > 0:
                self.path_length(gen_z, gen_c).mean().mul(gain).backward()
        elif main:
            self.d_main(real_img, real_c, gen_z, gen_c, sigma, gain, with_r1=reg and self.r1_gamma > 0)
        elif reg and self.r1_gamma > 0:
            real, logits = self.score_reals(real_img, real_c, sigma, requires_grad=True)
            self.r1(real, logits).mean().mul(gain).backward()

    # -- the four parts ------------------------------------------------------------------------

    def g_main(self, gen_z: torch.Tensor, gen_c: torch.Tensor, sigma: float) -> torch.Tensor:
        """G makes D score its images as real: softplus(-D(G(z))) per sample."""
        _, logits = self.score_fakes(gen_z, gen_c, sigma)
        loss = F.softplus(-logits)
        self.report('Loss/G/loss', loss)
        return loss

    def path_length(self, gen_z: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        """Path-length penalty per sample: how far |J^T y| (y random in image space) is from its running mean."""
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
        self.report('Loss/G/reg', penalty * self.pl_weight)
        return penalty * self.pl_weight

    def d_main(self, real_img: torch.Tensor, real_c: torch.Tensor, gen_z: torch.Tensor, gen_c: torch.Tensor,
               sigma: float, gain: float, with_r1: bool = False) -> None:
        """D scores fakes low and reals high: softplus(D(G(z))) + softplus(-D(x)), backpropagated half by half.
        `with_r1` (a *both phase) adds R1 to the pass over the reals."""
        _, fake_logits = self.score_fakes(gen_z, gen_c, sigma, update_emas=True)
        loss_fake = F.softplus(fake_logits)
        loss_fake.mean().mul(gain).backward()
        real, logits = self.score_reals(real_img, real_c, sigma, requires_grad=with_r1, observe=True)
        loss_real = F.softplus(-logits)
        self.report('Loss/D/loss', loss_fake + loss_real)
        loss = loss_real + self.r1(real, logits) if with_r1 else loss_real
        loss.mean().mul(gain).backward()

    def r1(self, real: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """R1 per sample: gamma/2 times the squared norm of D's gradient at the reals."""
        grads, = torch.autograd.grad(outputs=[logits.sum()], inputs=[real], create_graph=True)
        penalty = grads.square().sum([1, 2, 3])
        self.report('Loss/r1_penalty', penalty)
        self.report('Loss/D/reg', penalty * (self.r1_gamma / 2))
        return penalty * (self.r1_gamma / 2)

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

    def score_fakes(self, gen_z: torch.Tensor, gen_c: torch.Tensor, sigma: float, update_emas: bool = False):
        """Generated images and D's (reported) scores of them."""
        img, _ = self.generate(gen_z, gen_c, update_emas=update_emas)
        logits = self.discriminate(img, gen_c, sigma, update_emas=update_emas)
        self.report('Loss/scores/fake', logits)
        self.report('Loss/signs/fake', logits.sign())
        return img, logits

    def score_reals(self, real_img: torch.Tensor, real_c: torch.Tensor, sigma: float, requires_grad: bool = False,
                    observe: bool = False):
        """The reals (a leaf that takes gradients if asked) and D's (reported) scores of them; `observe`
        hands the scores to adaptive augmentation (once per step: in the main phase)."""
        real = real_img.detach().requires_grad_(requires_grad)
        logits = self.discriminate(real, real_c, sigma)
        self.report('Loss/scores/real', logits)
        self.report('Loss/signs/real', logits.sign())
        if observe:
            self.observe_real(logits)
        return real, logits

    def blur_sigma(self, cur_nimg: int) -> float:
        if self.opts.blur_fade_kimg <= 0:
            return 0
        return max(1 - cur_nimg / (self.opts.blur_fade_kimg * 1e3), 0) * self.opts.blur_init_sigma


class WGANGPLoss(StyleGANLoss):
    """Wasserstein loss with gradient penalty: G main -D(G(z)); D main D(G(z)) - D(x) + drift * D(x)^2 plus
    the gradient penalty at random points between reals and fakes, every step. Path length and R1 are off
    whatever their weights: the gradient penalty takes their place."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pl_weight = self.r1_gamma = 0

    def g_main(self, gen_z: torch.Tensor, gen_c: torch.Tensor, sigma: float) -> torch.Tensor:
        _, logits = self.score_fakes(gen_z, gen_c, sigma)
        loss = -logits
        self.report('Loss/G/loss', loss)
        return loss

    def d_main(self, real_img: torch.Tensor, real_c: torch.Tensor, gen_z: torch.Tensor, gen_c: torch.Tensor,
               sigma: float, gain: float, with_r1: bool = False) -> None:
        fake_img, fake_logits = self.score_fakes(gen_z, gen_c, sigma, update_emas=True)
        fake_logits.mean().mul(gain).backward()
        self.gradient_penalty(real_img, fake_img.detach(), real_c, sigma).mean().mul(gain).backward()
        _, logits = self.score_reals(real_img, real_c, sigma, observe=True)
        loss_real = -logits + self.opts.drift_weight * logits.square()
        self.report('Loss/D/loss', fake_logits + loss_real)
        loss_real.mean().mul(gain).backward()

    def gradient_penalty(self, real_img: torch.Tensor, fake_img: torch.Tensor, c: torch.Tensor,
                         sigma: float) -> torch.Tensor:
        """(|grad D| - 1)^2 per sample, at random points between reals and fakes, times its weight."""
        alpha = torch.rand([real_img.shape[0], 1, 1, 1], device=real_img.device)
        mixed = (real_img.detach().lerp(fake_img, alpha)).requires_grad_(True)
        logits = self.discriminate(mixed, c, sigma)
        grads, = torch.autograd.grad(outputs=[logits.sum()], inputs=[mixed], create_graph=True)
        penalty = (grads.flatten(1).norm(dim=1) - 1).square()
        self.report('Loss/gp_penalty', penalty)
        return penalty * self.opts.gp_weight


LOSSES = {'logistic': StyleGANLoss, 'wgan-gp': WGANGPLoss}   # train.py's --loss
