"""Quality metrics for one snapshot, several, or every snapshot of a training run.

\b
Examples:
  # Every snapshot of a run (skips those already in metric-*.jsonl), best snapshot marked:
  python calc_metrics.py --metrics=fid50k_full,kid50k_full --network=runs/00000-stylegan3-t-garments-gpus1-batch32-gamma2
  # One snapshot against a given dataset, with x-flips:
  python calc_metrics.py --metrics=fid10k_full,pr50k3_full --network=runs/.../network-snapshot-000432.pkl --data=garments-256x256.zip
  # A run's curves (losses, augment p, recorded metrics over kimg) as a PNG, without TensorBoard:
  python calc_metrics.py --network=runs/00000-stylegan3-t-garments-gpus1-batch32-gamma2 --metrics=none --plot=curves.png
  # Equivariance of a StyleGAN3 pickle from NVIDIA:
  python calc_metrics.py --metrics=eqt50k_int,eqr50k --network=https://.../stylegan3-r-afhqv2-512x512.pkl

\b
Recommended metrics (NVIDIA's names and meanings):
  fid50k_full  Frechet inception distance against the full dataset
  kid50k_full  Kernel inception distance against the full dataset
  pr50k3_full  Precision and recall against the full dataset
  ppl2_wend    Perceptual path length in W, endpoints, full image
  eqt50k_int   Equivariance to integer translation (EQ-T), StyleGAN3 only
  eqt50k_frac  Equivariance to fractional translation (EQ-T_frac), StyleGAN3 only
  eqr50k       Equivariance to rotation (EQ-R), StyleGAN3 only
Legacy: fid50k, kid50k, pr50k3 (against 50k reals), is50k (Inception score), ppl_wend etc. (face crop).
Linear separability: ls (200k samples), ls10k ...; needs class labels in dataset.json.
Any count works: fid10k_full, fid2k_full, kid500_full, pr10k3_full, eqt5k_int, ppl2_wend_10k.

Detectors (Inception, VGG16) are NVIDIA's TorchScript files, downloaded once into
~/.cache/stylegan3-clothing/detectors, or read from --detector-dir / $SG3C_DETECTOR_DIR.
"""
from __future__ import annotations

import os

import click

from generation.seeds import MAX_SEED
from metrics.runner import EvalJob, collect, format_table, prepare, run
from networks.snapshot import resolve_source
from torch_utils import cli
from training.curves import plot_run
from training.run_dir import run_dir_of


def parse_metrics(value: str) -> list[str]:
    if value is None or value.strip().lower() in ('', 'none'):
        return []
    return [m.strip() for m in value.split(',') if m.strip()]


@click.command(help=__doc__)
@click.option('--network', required=True, metavar='PKL|PT|URL|RUN_DIR|NAME',
              help='Snapshot, export, URL, run directory, or the short name of a model in pretrained/ (garments)')
@click.option('--metrics', default='fid50k_full', show_default=True, metavar='[NAME|A,B,C]', help='Metrics to compute')
@click.option('--data', metavar='[ZIP|DIR|synthetic:...]', help='Dataset to compare with  [default: the snapshot\'s training set]')
@click.option('--mirror', type=bool, metavar='BOOL', help='Dataset x-flips for metrics that use them  [default: as trained]')
@click.option('--gpus', type=click.IntRange(min=1), default=1, show_default=True, help='Processes (GPUs; CPU processes without CUDA)')
@click.option('--detector-dir', metavar='DIR', help='Folder holding inception-2015-12-05.pt and vgg16.pt  [default: download]')
@click.option('--force', is_flag=True, help='Recompute results already in the run\'s metric-*.jsonl')
@click.option('--seed', type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help='Seed of the generated samples')
@click.option('--verbose/--quiet', default=True, show_default=True, help='Progress bars and per-result lines')
@click.option('--plot', type=click.Path(dir_okay=False), metavar='PNG',
              help="Also draw the run's curves (losses, augment p, metrics over kimg) into this PNG; --metrics=none: only that")
def main(network, metrics, data, mirror, gpus, detector_dir, force, seed, verbose, plot):
    names = parse_metrics(metrics)
    if not names and not plot:
        raise click.BadParameter('give at least one metric (or none with --plot)', param_hint='--metrics')
    # a file, URL, run directory (every snapshot of it) or folder of runs (its newest run) as given; a
    # shipped model's or RUN_DIR:best's file
    source = resolve_source(network)
    plot_run_dir = None
    if plot:   # before any metric is computed: where the curves come from and go
        cli.check_output_path(plot, '--plot', folder=False)
        plot_run_dir = run_dir_of(source)
        if plot_run_dir is None:
            raise cli.UserError(f'--plot: {source.path} is not a run directory, a folder of runs or a snapshot in a run')
    if names:
        job = EvalJob(metrics=names, network=source.path, data=data, mirror=mirror, gpus=gpus, detector_dir=detector_dir,
                      force=force, seed=seed, verbose=verbose)
        prepare(job)   # every failure a user can cause is a UserError: one line, exit code 1 (torch_utils.cli.run)
        if job.run_dir and os.path.isdir(source.path) and os.path.normpath(job.run_dir) != os.path.normpath(source.path):
            click.echo(f'using {job.run_dir}, the newest run in {source.path}')
        skipped = len(job.snapshots) * len(names) - len(job.todo)
        if skipped and verbose:
            click.echo(f'{skipped} result(s) already in {job.run_dir}/metric-*.jsonl; --force recomputes them')
        new = run(job)
        click.echo(format_table(collect(job, new)))
    if plot:
        click.echo(f'wrote {plot_run(plot_run_dir, plot)}')


if __name__ == '__main__':
    cli.run(main)
