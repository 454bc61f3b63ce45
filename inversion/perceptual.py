"""Perceptual distances for inversion: NVIDIA's VGG16 TorchScript or the `lpips` package.

Every kind is wrapped in `Perceptual`, which has two steps so that a fixed target is embedded once:
`embed(target, mask)` and `distance(embedding, image, mask) -> [N]`. Images are float NCHW in [-1, 1].

With a mask, both images are composited onto the same flat grey outside the mask before the network sees
them. The network's features near the mask edge then depend only on pixels inside the mask (and on the
constant fill), so the distance is blind to whatever the photo shows outside the garment.

Nothing heavy is imported until a kind is asked for: the `lpips` package pulls in torchvision, which does
not import next to every torch build, and NVIDIA's VGG16 is a download. Missing weights are an error that
says what to provide. A VGG16 TorchScript file is code: it runs only when it is a known file or named in
$SG3C_TRUST_TORCHSCRIPT (torch_utils.torchscript). The tests, which can download neither, use an untrained backbone instead:
`--perceptual=random`, accepted only where $SG3C_TEST_PERCEPTUAL is 1, so that no user gets a meaningless loss.
"""
from __future__ import annotations

import os
import re
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from metrics import DetectorError
from metrics.detectors import locate_detector
from torch_utils import torchscript
from torch_utils.cli import UserError
from torch_utils.download import DownloadError, download_cached

VGG16_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt'
KINDS_HELP = ("'vgg16' (NVIDIA's VGG16 LPIPS TorchScript, downloaded once), a path or URL to that vgg16.pt, "
              "'lpips' (the lpips package, VGG) or 'none'")
TEST_BACKBONE_ENV = 'SG3C_TEST_PERCEPTUAL'   # '1' lets the tests ask for 'random' (RandomBackbone)


class PerceptualUnavailable(UserError):
    """The requested perceptual network cannot be loaded here; the message says what to provide instead."""


def composite(images: torch.Tensor, mask: Optional[torch.Tensor], fill: float = 0.0) -> torch.Tensor:
    """Inside the mask the image, outside it a constant: identical for every image wherever mask == 0."""
    if mask is None:
        return images
    return images * mask + fill * (1 - mask)


class RandomBackbone(nn.Module):
    """A small untrained conv net with the call signature of NVIDIA's VGG16 TorchScript.

    Features of each stage are unit-normalised over channels and scaled by 1/sqrt(H*W) like LPIPS, so the
    squared distance of two outputs behaves like an LPIPS value. Weights come from a fixed seed: two
    instances are identical, which keeps inversions reproducible. Meant for tests of the code path only.
    """

    def __init__(self, seed: int = 0, channels: tuple[int, ...] = (16, 32, 64), in_channels: int = 3):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers = []
        prev = in_channels
        for i, ch in enumerate(channels):
            conv = nn.Conv2d(prev, ch, 3, stride=1 if i == 0 else 2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / (prev * 9) ** 0.5)
                conv.bias.zero_()
            layers.append(conv)
            prev = ch
        self.convs = nn.ModuleList(layers)
        self.requires_grad_(False)

    def forward(self, img: torch.Tensor, resize_images: bool = False, return_lpips: bool = False) -> torch.Tensor:
        x = img / 127.5 - 1
        if x.shape[1] == 1 and self.convs[0].in_channels == 3:
            x = x.repeat(1, 3, 1, 1)
        parts = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            unit = x / (x.square().sum(dim=1, keepdim=True) + 1e-10).sqrt()
            parts.append(unit.flatten(1) / (x.shape[2] * x.shape[3]) ** 0.5)
        return torch.cat(parts, dim=1)


class Perceptual(nn.Module):
    """Squared distance between LPIPS-normalised features of a backbone called like NVIDIA's vgg16.pt."""

    def __init__(self, backbone: nn.Module, name: str, max_size: int = 256, fill: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.name = name
        self.max_size = max_size   # NVIDIA's projector shows VGG at most 256x256 (it was trained near 224)
        self.fill = fill

    def _features(self, images: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = (composite(images, mask, self.fill) + 1) * 127.5
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[2] > self.max_size:
            x = F.interpolate(x, size=(self.max_size, self.max_size), mode='area')
        return self.backbone(x, resize_images=False, return_lpips=True)

    def embed(self, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Any:
        with torch.no_grad():
            return self._features(target, mask)

    def distance(self, embedding: Any, images: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return (self._features(images, mask) - embedding).square().sum(dim=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return (self._features(a, mask) - self._features(b, mask)).square().sum(dim=1)


class LpipsPackage(Perceptual):
    """The `lpips` package's LPIPS(net='vgg'); it compares pairs, so the 'embedding' is the target itself."""

    def __init__(self, model: nn.Module, max_size: int = 256, fill: float = 0.0):
        super().__init__(model, 'lpips', max_size, fill)

    def _prepare(self, images: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = composite(images, mask, self.fill)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[2] > self.max_size:
            x = F.interpolate(x, size=(self.max_size, self.max_size), mode='area')
        return x

    def embed(self, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._prepare(target, mask).detach()

    def distance(self, embedding: torch.Tensor, images: torch.Tensor, mask: Optional[torch.Tensor] = None):
        x = self._prepare(images, mask)
        return self.backbone(x, embedding.expand_as(x)).reshape(x.shape[0])

    def forward(self, a, b, mask=None):
        return self.backbone(self._prepare(a, mask), self._prepare(b, mask)).reshape(a.shape[0])


def _download(url: str) -> str:
    try:
        return str(download_cached(url))
    except DownloadError as e:
        raise PerceptualUnavailable(f'{e}; download it on a machine with internet access and pass '
                                    f'--perceptual=PATH/TO/vgg16.pt, or use --perceptual=none (pixel loss only)') from None


def locate_vgg16() -> str:
    """NVIDIA's vgg16.pt where the metrics look for it (their detector folder or cache), downloading it once."""
    try:
        return locate_detector('vgg16', option=None)
    except DetectorError as e:
        raise PerceptualUnavailable(f'{e}; or pass --perceptual=PATH/TO/vgg16.pt, or --perceptual=none for the pixel '
                                    f'loss only') from None


def load_vgg16(source: str, device: Union[str, torch.device] = 'cpu') -> Perceptual:
    """NVIDIA's VGG16 LPIPS TorchScript from a path or URL."""
    path = _download(source) if re.match(r'^(https?|file)://', source) else source
    if not os.path.isfile(path):
        raise PerceptualUnavailable(f'{path}: no such file; download NVIDIA\'s VGG16 ({VGG16_URL}) and pass its path, '
                                    f'or use --perceptual=none (pixel loss only)')
    try:
        net = torchscript.load(path, device).eval()
    except torchscript.UntrustedCode as e:
        raise PerceptualUnavailable(str(e)) from None
    except Exception as e:   # torch.jit reports bad archives with RuntimeError or ValueError depending on version
        raise PerceptualUnavailable(f'{path}: not a TorchScript archive ({type(e).__name__}: {str(e).splitlines()[0]})') from None
    for param in net.parameters():   # our own instance: gradients flow through it to the image, never into it
        param.requires_grad_(False)
    return Perceptual(net, f'vgg16:{os.path.basename(path)}').to(device)


def load_lpips_package(device: Union[str, torch.device] = 'cpu') -> Perceptual:
    try:
        import lpips   # here, not on top: optional, and 0.24 s of import that only --perceptual=lpips pays
    except Exception as e:   # torchvision built for another torch fails at import with RuntimeError
        raise PerceptualUnavailable(
            f'--perceptual=lpips needs the lpips package with a working torchvision, and here '
            f'"import lpips" failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}); install a '
            f'torchvision that matches torch, or pass --perceptual=vgg16 or a path to NVIDIA\'s vgg16.pt '
            f'({VGG16_URL})') from None
    try:
        model = lpips.LPIPS(net='vgg', verbose=False)
    except Exception as e:   # torchvision downloads the ImageNet VGG16 weights on first use
        raise PerceptualUnavailable(
            f'--perceptual=lpips could not load its VGG16 weights ({type(e).__name__}: {e}); put torchvision\'s '
            f'vgg16-397923af.pth in ~/.cache/torch/hub/checkpoints/, or pass a path to NVIDIA\'s vgg16.pt') from None
    return LpipsPackage(model.eval().requires_grad_(False)).to(device)


def load_perceptual(kind: Optional[str], device: Union[str, torch.device] = 'cpu') -> Optional[Perceptual]:
    """A Perceptual for `kind` (see KINDS_HELP), or None for 'none'."""
    kind = (kind or 'none').strip()
    if kind == 'none':
        return None
    if kind == 'random' and os.environ.get(TEST_BACKBONE_ENV) == '1':
        return Perceptual(RandomBackbone(), 'random').to(device)
    if kind == 'lpips':
        return load_lpips_package(device)
    if kind == 'vgg16':
        return load_vgg16(locate_vgg16(), device)
    if re.match(r'^(https?|file)://', kind) or os.path.splitext(kind)[1] in ('.pt', '.pth', '.jit') or os.path.exists(kind):
        return load_vgg16(kind, device)
    raise PerceptualUnavailable(f'unknown perceptual network {kind!r}; use {KINDS_HELP}')
