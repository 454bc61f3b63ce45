"""The options of a training run: what train.py decides, saved as training_options.json and inside each
snapshot (so that `--resume` continues with exactly these)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from torch_utils.cli import UserError


@dataclass
class TrainingOptions:
    """Every setting of a run; saved as training_options.json and inside each snapshot."""
    run_dir: str
    cfg: str                          # stylegan3-t | stylegan3-r | stylegan2
    data: str                         # dataset zip or folder
    gpus: int = 1
    batch: int = 32
    batch_gpu: int = 4
    gamma: float = 8.0
    cond: bool = False
    mirror: bool = False
    aug: str = 'ada'                  # ada | noaug | fixed
    augpipe: str = 'bgc'
    p: float = 0.2                    # augmentation probability for aug=fixed
    target: float = 0.6               # ADA target for sign(D(real))
    ada_kimg: float = 500             # kimg for ADA's p to move from 0 to 1
    ada_interval: int = 4
    resume: Optional[str] = None
    transfer: bool = False            # resume gives weights only (a new run), even from one of our snapshots
    freezed: int = 0
    cbase: int = 32768
    cmax: int = 512
    z_dim: int = 512
    w_dim: int = 512
    map_depth: Optional[int] = None
    glr: Optional[float] = None
    dlr: float = 0.002
    mbstd_group: int = 4
    mbstd_by_class: bool = False      # conditional: D's stddev within each label instead of mixed groups
    loss: str = 'logistic'            # logistic | wgan-gp
    metrics: list = field(default_factory=list)
    detector_dir: Optional[str] = None   # where the metrics' feature networks are (else env / cache / download)
    kimg: float = 25000
    tick: float = 4
    snap: int = 50
    seed: int = 0
    fp32: bool = False
    nobench: bool = False
    workers: int = 3
    ema_kimg: Optional[float] = None  # default: batch * 10 / 32
    ema_rampup: Optional[float] = 0.05
    g_reg_interval: Optional[int] = None
    d_reg_interval: int = 16
    style_mixing_prob: float = 0.0
    pl_weight: float = 0.0
    blur_init_sigma: float = 0.0
    blur_fade_kimg: float = 0.0

    def __post_init__(self):
        if self.cfg not in ('stylegan3-t', 'stylegan3-r', 'stylegan2'):
            raise UserError(f'unknown cfg {self.cfg!r}')
        if self.batch % self.gpus or (self.batch // self.gpus) % self.batch_gpu:
            raise UserError(f'--batch={self.batch} must be a multiple of --gpus={self.gpus} times '
                            f'--batch-gpu={self.batch_gpu}')
        if self.mbstd_by_class and not self.cond:
            raise UserError('--mbstd-by-class=True needs a conditional model (--cond=True)')
        if self.batch_gpu < self.mbstd_group:
            raise UserError(f'--batch-gpu={self.batch_gpu} (the batch of one process) cannot be smaller than '
                            f'--mbstd-group={self.mbstd_group}')
        if self.ema_kimg is None:
            self.ema_kimg = self.batch * 10 / 32
        if self.glr is None:
            self.glr = 0.002 if self.cfg == 'stylegan2' else 0.0025


def config_defaults(cfg: str, batch: int, resuming: bool) -> dict:
    """Per-config settings of NVIDIA's train.py that are not command-line options."""
    d: dict[str, Any] = {}
    if cfg == 'stylegan2':
        d.update(style_mixing_prob=0.9, pl_weight=2, g_reg_interval=4)
    if cfg == 'stylegan3-r':
        d.update(blur_init_sigma=10, blur_fade_kimg=batch * 200 / 32)
    if resuming:
        d.update(ada_kimg=100, ema_rampup=None, blur_init_sigma=0)
    return d
