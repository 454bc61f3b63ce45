"""The garment classifier: a small CNN trained here on the synthetic garments, used as a metric detector.

NVIDIA's Inception network was trained on photographs of 1,000 ImageNet categories; at 64x64 on flat-lay
garments its features mostly see "white background with a blob". This network is trained on the
procedural garment set (`data/synthetic_garments.py`) to tell the six classes apart and to read the
colour, the pattern, the darkness (1 - luma of the garment colour) and the sleeve length, so that its
penultimate features describe what matters in these images. It gives:

- `classifier(img_uint8)`: softmax class probabilities [N, 6] (the conditional-accuracy check of a
  class-conditional generator);
- `classifier(img_uint8, return_features=True)`: the 128-d embedding used by the `fid_garments` metric
  (Fréchet distance on these features instead of Inception's; numbers are comparable only with each other);
- `classifier.predict(img_uint8)`: every head (class, colour, pattern logits; darkness and sleeve length).

Images are uint8 RGB [N, 3, H, W] at any resolution (resized to 64x64 with area averaging), exactly as the
Inception detector is called. The file is a weights-only `torch.save` of `{'config', 'state_dict', 'meta'}`
read with the allow-listed unpickler of torch_utils.safe_pickle: loading it cannot run code. `pretrained/train_classifier.py`
retrains it; `meta` records the data, epochs and held-out accuracy it reached.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from data import synthetic_garments as sg
from torch_utils import safe_pickle
from torch_utils.atomic import atomic_write
from torch_utils.cli import UserError, describe

RESOLUTION = 64
FILE_FORMAT = 'garment-classifier-v1'


def _block(cin: int, cout: int, stride: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False), torch.nn.BatchNorm2d(cout),
                               torch.nn.ReLU(inplace=True))


class GarmentClassifier(torch.nn.Module):
    def __init__(self, width: int = 16, embed_dim: int = 128, num_classes: int = len(sg.CLASSES),
                 num_colours: int = len(sg.COLOUR_NAMES), num_patterns: int = len(sg.PATTERNS)):
        super().__init__()
        self.config = dict(width=width, embed_dim=embed_dim, num_classes=num_classes, num_colours=num_colours,
                           num_patterns=num_patterns)
        # The first layer already halves the resolution: pattern periods at 64x64 are 3+ pixels, and the
        # cost of a full-resolution layer would dominate training on a CPU.
        self.body = torch.nn.Sequential(
            _block(3, width, 2), _block(width, width, 1),               # 32x32
            _block(width, 2 * width, 2), _block(2 * width, 2 * width, 1),  # 16x16
            _block(2 * width, 4 * width, 2),                            # 8x8
            _block(4 * width, 4 * width, 2),                            # 4x4
        )
        self.embed = torch.nn.Linear(4 * width * 4, embed_dim)
        self.class_head = torch.nn.Linear(embed_dim, num_classes)
        self.colour_head = torch.nn.Linear(embed_dim, num_colours)
        self.pattern_head = torch.nn.Linear(embed_dim, num_patterns)
        self.regress_head = torch.nn.Linear(embed_dim, 2)               # darkness, sleeve length

    def features(self, img: torch.Tensor) -> torch.Tensor:
        x = img.to(torch.float32)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[-1] != RESOLUTION or x.shape[-2] != RESOLUTION:
            x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode='area' if x.shape[-1] > RESOLUTION else 'bilinear')
        x = self.body(x / 127.5 - 1)
        # Pool to 2x2 rather than 1x1: where the garment's parts are (legs vs skirt) is the class.
        x = F.adaptive_avg_pool2d(x, 2).flatten(1)
        return torch.relu(self.embed(x))

    def predict(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(img)
        regress = self.regress_head(f)
        return dict(features=f, class_logits=self.class_head(f), colour_logits=self.colour_head(f),
                    pattern_logits=self.pattern_head(f), darkness=regress[:, 0], sleeve_length=regress[:, 1])

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        f = self.features(img)
        return f if return_features else torch.softmax(self.class_head(f), dim=1)


# ---------------------------------------------------------------------------------------------
# File I/O.

class ClassifierFileError(UserError, ValueError):
    pass


def save_garment_classifier(path: str, model: GarmentClassifier, meta: Optional[dict] = None) -> None:
    payload = dict(format=FILE_FORMAT, config=dict(model.config), meta=dict(meta or {}),
                   state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    atomic_write(path, lambda f: torch.save(payload, f))


def load_garment_classifier(path: str, device: torch.device = torch.device('cpu')) -> GarmentClassifier:
    """The classifier in eval mode; a file that is not one (or holds anything but tensors) is refused."""
    try:
        payload = safe_pickle.load_tensor_file(path)
    except (safe_pickle.UnsafePickleError, OSError) as e:
        raise ClassifierFileError(f'{path}: not a garment classifier file ({describe(e)[:200]})') from None
    if not isinstance(payload, dict) or payload.get('format') != FILE_FORMAT:
        raise ClassifierFileError(f'{path}: not a garment classifier file (expected format {FILE_FORMAT!r})')
    model = GarmentClassifier(**payload['config'])
    try:
        model.load_state_dict(payload['state_dict'])
    except RuntimeError as e:
        raise ClassifierFileError(f'{path}: weights do not fit the recorded architecture ({str(e).splitlines()[0]})') from None
    model.meta = payload.get('meta', {})
    return model.eval().requires_grad_(False).to(device)


# ---------------------------------------------------------------------------------------------
# Training on rendered garments.

def garment_targets(attrs: list[dict]) -> dict[str, np.ndarray]:
    colour = np.asarray([a['colour'] for a in attrs], dtype=np.float32)
    luma = colour @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    return dict(class_idx=np.asarray([a['class_idx'] for a in attrs], dtype=np.int64),
                colour_idx=np.asarray([a['colour_idx'] for a in attrs], dtype=np.int64),
                pattern_idx=np.asarray([a['pattern_idx'] for a in attrs], dtype=np.int64),
                darkness=1 - luma / 255, sleeve_length=np.asarray([a['sleeve_length'] for a in attrs], dtype=np.float32))


def _loss(out: dict, t: dict) -> torch.Tensor:
    return (F.cross_entropy(out['class_logits'], t['class_idx']) + 0.5 * F.cross_entropy(out['colour_logits'], t['colour_idx'])
            + 0.5 * F.cross_entropy(out['pattern_logits'], t['pattern_idx'])
            + 4 * F.mse_loss(out['darkness'], t['darkness']) + 4 * F.mse_loss(out['sleeve_length'], t['sleeve_length']))


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror, mild blur and pixel noise: generated garments are softer than the crisp renders."""
    flip = torch.rand([x.shape[0]], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    blur = torch.rand([x.shape[0]], generator=gen) < 0.3
    soft = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode='replicate'), 3, stride=1)
    x = torch.where(blur[:, None, None, None], soft, x)
    return (x + torch.randn(x.shape, generator=gen) * 4).clamp(0, 255)


def evaluate_classifier(model: GarmentClassifier, images: np.ndarray, targets: dict, batch: int = 256) -> dict[str, float]:
    """Held-out figures: class / colour / pattern accuracy, darkness and sleeve-length mean absolute error."""
    outs: dict[str, list] = {}
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out = model.predict(torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2))
            for k, v in out.items():
                outs.setdefault(k, []).append(v.numpy())
    o = {k: np.concatenate(v) for k, v in outs.items()}
    return dict(class_accuracy=float((o['class_logits'].argmax(1) == targets['class_idx']).mean()),
                colour_accuracy=float((o['colour_logits'].argmax(1) == targets['colour_idx']).mean()),
                pattern_accuracy=float((o['pattern_logits'].argmax(1) == targets['pattern_idx']).mean()),
                darkness_mae=float(np.abs(o['darkness'] - targets['darkness']).mean()),
                sleeve_length_mae=float(np.abs(o['sleeve_length'] - targets['sleeve_length']).mean()))


def train_garment_classifier(num_train: int = 6000, num_val: int = 1200, resolution: int = RESOLUTION,
                             epochs: int = 40, batch: int = 64, lr: float = 3e-3, width: int = 16, embed_dim: int = 128,
                             seed: int = 100, log: Optional[Callable[[str], None]] = print) -> tuple[GarmentClassifier, dict]:
    """Train on `num_train` rendered garments (seed `seed`), report on `num_val` others (seed `seed + 1`).

    The seeds differ from the GAN's training set (seed 0), so the classifier has not seen the images it
    later scores. Returns the model (eval mode) and its `meta` (data, settings, held-out figures, time)."""
    start = time.time()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_images, train_attrs = sg.render_garments(num_train, resolution=resolution, seed=seed)
    val_images, val_attrs = sg.render_garments(num_val, resolution=resolution, seed=seed + 1)
    x_all = torch.from_numpy(train_images).permute(0, 3, 1, 2).float()
    t_all = {k: torch.from_numpy(v) for k, v in garment_targets(train_attrs).items()}
    model = GarmentClassifier(width=width, embed_dim=embed_dim)
    steps = epochs * ((num_train + batch - 1) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(num_train, generator=gen)
        total = 0.0
        for i in range(0, num_train, batch):
            idx = order[i:i + batch]
            loss = _loss(model.predict(_augment(x_all[idx], gen)), {k: v[idx] for k, v in t_all.items()})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if log:
            log(f'epoch {epoch + 1}/{epochs}: loss {total / num_train:.4f}')
    model.eval().requires_grad_(False)
    held_out = evaluate_classifier(model, val_images, garment_targets(val_attrs))
    meta = dict(data=f'synthetic:garments?n={num_train}&resolution={resolution}&seed={seed}',
                held_out_data=f'synthetic:garments?n={num_val}&resolution={resolution}&seed={seed + 1}',
                epochs=epochs, batch=batch, lr=lr, width=width, embed_dim=embed_dim, classes=list(sg.CLASSES), held_out=held_out,
                train_seconds=round(time.time() - start, 1))
    return model, meta
