"""Named directions are measured before they are named: the held-out check of a direction named after an
attribute of the synthetic garments, and the attribute measures it uses.

The synthetic garments (data/synthetic_garments.py) are drawn from known parameters, so their
attributes have measures that do not depend on any direction: `darkness` is 1 - luma of the garment colour,
`pattern` the texture energy inside the garment, `sleeve` the sideways extent of the sleeves, `coverage` the
garment's share of the image (labels.garment_measures, read from pixels). The check edits held-out seeds
(seeds 100000 onwards: never among the latents a direction is fitted on) of every class at the strengths
the web app's sliders offer, and counts the seeds whose measure moved in the strength's sense (darker for
+2, lighter for -2) while the shipped garment classifier still reads the same class. A direction passes
when that count is at least 90% of the seeds in every class at every strength.

`SOFT_MEASURES` are differentiable forms of two of the measures, for finding directions by their gradient
(discovery.gradient_direction): the masked mean luma for darkness, the garment classifier's pattern head
(not solid against solid) for pattern; the check itself always reads the pixels.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from generation.seeds import seeds_to_ws, synthesize
from metrics.detectors import locate_detector
from metrics.garment_classifier import load_garment_classifier

from . import EditingError
from .directions import CHECKS, Directions
from .edits import Edit, apply_edits
from .labels import GARMENT_MEASURES, garment_measures

CHECK_STRENGTHS = (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0)   # the web app's sliders span +-3
CHECK_FIRST_SEED = 100000
CHECK_SEEDS = 20                                      # per class
CHECK_TRUNCATION = 0.7                                # the web app's default
PASS_FRACTION = 0.9
# Where an attribute exists: trousers and skirts have no sleeves (there only the class must stay).
ATTRIBUTE_CLASSES = {'sleeve': ('t-shirt', 'long-sleeve', 'dress', 'jacket')}
# The ws rows a direction found by its gradient acts on unless --layers says otherwise: colour and texture
# live in the fine rows, and edits there leave the silhouette (the class) alone.
ATTRIBUTE_LAYERS = {'darkness': 'fine', 'pattern': 'fine'}
GARMENT_MASK_THRESHOLD = 40 / 255      # synthetic_garments.garment_mask's, on [0, 1] pixels


def garment_classifier(device: torch.device = torch.device('cpu')) -> torch.nn.Module:
    """The shipped garment classifier (pretrained/garment-classifier-64x64.pt), as the metrics find it."""
    return load_garment_classifier(locate_detector('garments'), device)


def _pixels(images: torch.Tensor) -> torch.Tensor:
    """Generator output [N, C, H, W] in [-1, 1] -> [0, 255] as torch_utils.media.to_uint8 rounds it, unrounded."""
    return (images * 127.5 + 128).clamp(0, 255)


def soft_darkness(images: torch.Tensor, classifier: Optional[torch.nn.Module] = None) -> torch.Tensor:
    """[N] 1 - mean luma of the garment's pixels (those clearly off white, chosen without gradient)."""
    x = _pixels(images) / 255
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    with torch.no_grad():
        mask = ((1 - x).amax(dim=1) > GARMENT_MASK_THRESHOLD).to(x.dtype)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    return 1 - (luma * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)


def soft_pattern(images: torch.Tensor, classifier: Optional[torch.nn.Module] = None) -> torch.Tensor:
    """[N] log-odds of 'patterned' against 'solid' from the garment classifier's pattern head."""
    if classifier is None:
        raise EditingError('the pattern measure needs the garment classifier')
    logits = classifier.predict(_pixels(images))['pattern_logits']
    return torch.logsumexp(logits[:, 1:], dim=1) - logits[:, 0]


SOFT_MEASURES: dict[str, Callable[..., torch.Tensor]] = {'darkness': soft_darkness, 'pattern': soft_pattern}


@dataclasses.dataclass
class CheckResult:
    """Counts of held-out seeds per class (rows) and strength (columns), as plain data (it goes into the
    directions file's meta)."""
    name: str
    classes: list[str]
    strengths: list[float]
    seeds: int                     # per class
    first_seed: int
    truncation_psi: float
    moved: list[list[int]]         # the measure moved in the strength's sense (every seed where it does not exist)
    kept: list[list[int]]          # the classifier reads the class it read before the edit
    passed: list[list[int]]        # both

    @property
    def worst(self) -> float:
        return min(min(row) for row in self.passed) / self.seeds

    @property
    def ok(self) -> bool:
        return self.worst >= PASS_FRACTION

    def table(self) -> list[str]:
        need = int(np.ceil(PASS_FRACTION * self.seeds))
        head = (f'held-out check of {self.name!r}: of {self.seeds} seeds per class ({self.first_seed}-'
                f'{self.first_seed + self.seeds - 1}, truncation {self.truncation_psi:g}), those whose {self.name} '
                f'moved with the strength\'s sign and whose class stayed')
        lines = [head, f'  {"strength":<14s}' + ''.join(f'{s:>+8g}' for s in self.strengths)]
        for cls, row in zip(self.classes, self.passed):
            lines.append(f'  {cls:<14s}' + ''.join(f'{n:>5d}/{self.seeds:<2d}' for n in row))
        verdict = 'passes' if self.ok else 'FAILS'
        lines.append(f'  {verdict}: {need} of {self.seeds} needed in every class at every strength '
                     f'(worst {round(self.worst * self.seeds)})')
        return lines


def _class_labels(G: torch.nn.Module) -> list[tuple[Optional[int], str]]:
    if not G.c_dim:
        return [(None, 'all')]
    names = getattr(G, 'class_names', None) or [f'class {k}' for k in range(G.c_dim)]
    return list(enumerate(names))


@torch.no_grad()
def _classes_of(classifier: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    device = next(classifier.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
    return classifier.predict(x)['class_logits'].argmax(1).cpu().numpy()


def check_direction(G: torch.nn.Module, d: Directions, name: str, classifier: torch.nn.Module,
                    measure: Optional[Callable[[np.ndarray], np.ndarray]] = None, seeds: int = CHECK_SEEDS,
                    first_seed: int = CHECK_FIRST_SEED, strengths: Sequence[float] = CHECK_STRENGTHS,
                    truncation_psi: float = CHECK_TRUNCATION, only_class: Optional[int] = None) -> CheckResult:
    """The held-out check of direction `name` of `d` (see the module docstring) in every class of G (or only
    `only_class`, for a direction found for one class); `measure` defaults to the garment measure of the same
    name."""
    measure = measure or (lambda images: garment_measures(images, [name])[name])
    exists = ATTRIBUTE_CLASSES.get(name)
    result = CheckResult(name, [], [float(s) for s in strengths], seeds, first_seed, float(truncation_psi), [], [], [])
    labels = [(k, label) for k, label in _class_labels(G) if only_class is None or k == only_class]
    for class_idx, label in tqdm(labels, desc=f'held-out check of {name}', unit='class', leave=False):
        ws = seeds_to_ws(G, list(range(first_seed, first_seed + seeds)), truncation_psi, class_idx).float()
        before = synthesize(G, ws)
        value0, class0 = measure(before), _classes_of(classifier, before)
        moved, kept, passed = [], [], []
        for s in strengths:
            after = synthesize(G, apply_edits(ws, d, [Edit(name, float(s))], G))
            went = np.sign(measure(after) - value0) == np.sign(s)
            if exists is not None and label not in exists:
                went = np.ones_like(went)
            same = _classes_of(classifier, after) == class0
            moved.append(int(went.sum()))
            kept.append(int(same.sum()))
            passed.append(int((went & same).sum()))
        result.classes.append(label)
        result.moved.append(moved)
        result.kept.append(kept)
        result.passed.append(passed)
    return result


def check_tables(d: Directions) -> list[str]:
    """The held-out checks recorded in a directions file (its meta), as `CheckResult.table` prints them."""
    return [line for result in d.meta.get(CHECKS, {}).values() for line in CheckResult(**result).table()]


def checkable(name: str) -> bool:
    """Whether a direction of this name has a garment measure to be checked with."""
    return name in GARMENT_MEASURES
