#!/usr/bin/env python3
"""Generation speed: images/s for each config at one resolution on the current device (CPU or CUDA).

Builds each generator with default widths and a fixed random init, times `G(z, c)` after a warm-up
and prints a table. Given an NVIDIA stylegan3 checkout (--compare-nvidia or $SG3C_NVIDIA_REPO; without
either, ours runs alone) the same network, weights and latents are also run by NVIDIA's code in a separate
process (their package names clash with ours), with --nvidia-python or $SG3C_NVIDIA_PYTHON (default: this
interpreter; NVIDIA's code imports pkg_resources, so it needs setuptools<81), and the table gains their
speed, the ratio ours/NVIDIA, and the largest absolute difference between the two outputs.

On the CPU the table also gives the time our calls spend in the networks' own convolutions (the work no
implementation can skip) and its share of the call: from extra calls under torch.profiler, the wall time
of every conv2d / conv_transpose2d whose weights have more than one input channel per group (the modulated
and ToRGB convolutions; the FIR filters' per-channel convolutions have one), summed, over the wall time of
the whole call. Wall time on both sides, so work on every thread counts, filtering in the ops' worker
threads included, and the profiler's own overhead (per op, so mostly outside the convolutions) only lowers
the share.

  python benchmarks/generate.py                       # stylegan3-t, stylegan3-r, stylegan2 at 256x256, ours only
  python benchmarks/generate.py --configs=stylegan3-t --batch=1,4 --json-out=gen_speed.jsonl
  python benchmarks/generate.py --compare-nvidia=../stylegan3 --nvidia-python=../refenv/bin/python

Figures only; nothing here asserts.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Optional

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    # Only when imported from elsewhere, and then last: in front, benchmarks/inversion.py and metrics.py
    # would shadow the packages of the same names for the importer.
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from nvidia_env import nvidia_env   # noqa: E402

WORKER_FLAG = '--nvidia-worker'


def generator_kwargs(cfg: str, res: int, cbase: int = 32768, cmax: int = 512) -> tuple[str, dict]:
    """(family, constructor kwargs) of a generator as NVIDIA's train.py builds it with default options (and
    its --cbase, --cmax)."""
    kwargs = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                  channel_base=cbase, channel_max=cmax)
    if cfg == 'stylegan2':
        kwargs['mapping_kwargs'] = dict(num_layers=8)
        return 'stylegan2', kwargs
    if cfg not in ('stylegan3-t', 'stylegan3-r'):
        raise ValueError(f'unknown config {cfg!r}: expected stylegan3-t, stylegan3-r or stylegan2')
    kwargs['mapping_kwargs'] = dict(num_layers=2)
    kwargs['magnitude_ema_beta'] = 0.5 ** (32 / 20e3)   # batch 32, as train.py derives it
    if cfg == 'stylegan3-r':
        # train.py doubles the capacity of -R and gives it 1x1 convs and radial down filters.
        kwargs.update(channel_base=cbase * 2, channel_max=cmax * 2, conv_kernel=1, use_radial_filters=True)
    return 'stylegan3', kwargs


def latents(batch: int, z_dim: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).randn(batch, z_dim)).to(torch.float32)


def time_generator(G: torch.nn.Module, z: torch.Tensor, repeats: int, warmup: int = 1,
                   force_fp32: bool = True, cuda_graph: bool = False) -> tuple[list[float], torch.Tensor]:
    """Seconds per call of G(z) (noise 'const'; float32 everywhere unless force_fp32=False) and the last output,
    on z's device; with `cuda_graph`, replayed from a CUDA graph (captured in the warm-up call)."""
    c = torch.zeros([z.shape[0], G.c_dim], device=z.device)
    sync = torch.cuda.synchronize if z.device.type == 'cuda' else (lambda: None)
    call = lambda z, c: G(z, c, noise_mode='const', force_fp32=force_fp32)   # noqa: E731
    if cuda_graph:
        from torch_utils.cuda_graph import GraphedFunction   # (ours: only on our side)
        call = GraphedFunction(call)
    times = []
    img = None
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            t0 = time.perf_counter()
            img = call(z, c)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times, img


CONV_OPS = ('aten::conv2d', 'aten::conv_transpose2d')


def is_network_conv(event) -> bool:
    """A profiler event of one of the network's own convolutions: more than one input channel per group in
    the weights (input_shapes[1]; conv_transpose2d's [in, out/groups, kh, kw] too), unlike the per-channel
    convolutions that FIR filtering runs on."""
    shapes = event.input_shapes
    return event.name in CONV_OPS and len(shapes) > 1 and len(shapes[1]) == 4 and shapes[1][1] > 1


def time_convolutions(G: torch.nn.Module, z: torch.Tensor, calls: int,
                      force_fp32: bool = True) -> Optional[tuple[float, float]]:
    """(seconds per call in the networks' convolutions, their share of the call's wall time), medians over
    `calls` calls of G(z) profiled one by one; None off the CPU, where the profiler's CPU times say nothing
    about the device."""
    if z.device.type != 'cpu':
        return None
    c = torch.zeros([z.shape[0], G.c_dim])
    seconds, shares = [], []
    with torch.inference_mode():
        for _ in range(calls):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
                t0 = time.perf_counter()
                G(z, c, noise_mode='const', force_fp32=force_fp32)
                total = time.perf_counter() - t0
            conv = sum(e.time_range.elapsed_us() for e in prof.events() if is_network_conv(e)) / 1e6
            seconds.append(conv)
            shares.append(conv / total)
    return float(np.median(seconds)), float(np.median(shares))


def import_ours() -> None:
    """Our packages importable (not in NVIDIA's worker process, whose torch_utils is theirs)."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)


def build_ours(cfg: str, res: int, seed: int, device: torch.device, **widths) -> torch.nn.Module:
    import_ours()
    from networks import stylegan2, stylegan3
    family, kwargs = generator_kwargs(cfg, res, **widths)
    torch.manual_seed(seed)
    G = (stylegan3 if family == 'stylegan3' else stylegan2).Generator(**kwargs)
    return G.eval().requires_grad_(False).to(device)


# ------------------------------------------------------------------ NVIDIA side (runs in its own process)

def nvidia_worker(job_path: str) -> None:
    """Build NVIDIA's generator from a job file written by `run_nvidia`, load our weights, time it, save its output."""
    job = torch.load(job_path, weights_only=False)
    repo = job['repo']
    sys.path[:] = [repo] + [p for p in sys.path if os.path.abspath(p or '.') not in (REPO, os.path.dirname(__file__))]
    import importlib
    module = importlib.import_module(f'training.networks_{job["family"]}')
    G = module.Generator(**job['kwargs'])
    missing, unexpected = G.load_state_dict(job['state'], strict=False)
    if missing or unexpected:
        raise SystemExit(f'state dicts differ: missing {missing[:5]}, unexpected {unexpected[:5]}')
    if job.get('threads'):
        torch.set_num_threads(job['threads'])
    device = torch.device(job['device'])
    G = G.eval().requires_grad_(False).to(device)
    times, img = time_generator(G, job['z'].to(device), job['repeats'], force_fp32=job.get('force_fp32', True))
    torch.save(img.cpu(), job['out'])
    print(json.dumps({'times': times, 'ops': nvidia_ops_used(device)}))


def nvidia_ops_used(device: torch.device) -> str:
    """Which of NVIDIA's op implementations ran: its CUDA plugins (loaded by the run) or its reference path."""
    if device.type != 'cuda':
        return f"NVIDIA's reference path ({device.type})"
    loaded = [name for name in ('bias_act', 'upfirdn2d', 'filtered_lrelu')
              if getattr(sys.modules.get(f'torch_utils.ops.{name}'), '_plugin', None) is not None]
    return f'CUDA plugins ({", ".join(loaded)})' if loaded else "NVIDIA's reference path (no plugin loaded)"


def run_nvidia(repo: str, python: str, cfg: str, res: int, G: torch.nn.Module, z: torch.Tensor, repeats: int,
               device: torch.device, force_fp32: bool = True,
               widths: Optional[dict] = None) -> tuple[Optional[list[float]], Optional[torch.Tensor], str]:
    """(seconds per call, output, which of NVIDIA's ops ran) from NVIDIA's code on the same weights, or
    (None, None, reason)."""
    family, kwargs = generator_kwargs(cfg, res, **(widths or {}))
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out_path = os.path.join(tmp, 'job.pt'), os.path.join(tmp, 'img.pt')
        state = {k: v.detach().cpu() for k, v in G.state_dict().items()}
        torch.save(dict(repo=repo, family=family, kwargs=kwargs, state=state, z=z.cpu(), repeats=repeats,
                        force_fp32=force_fp32,
                        device=str(device), out=out_path, threads=torch.get_num_threads()), job_path)
        proc = subprocess.run([python, os.path.abspath(__file__), WORKER_FLAG, job_path], capture_output=True,
                              text=True, env=nvidia_env(), cwd=tmp)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            return None, None, f'NVIDIA run failed: {lines[-1] if lines else proc.returncode}'
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        return answer['times'], torch.load(out_path), answer['ops']


# ------------------------------------------------------------------ driver

def nvidia_setup(compare: Optional[str], python: Optional[str] = None) -> tuple[Optional[str], str, str]:
    """(checkout or None, python to run it with, reason when None)."""
    if compare is None or compare.lower() in ('', 'none', 'off', '0'):
        return None, '', 'no --compare-nvidia or $SG3C_NVIDIA_REPO given'
    if not os.path.isfile(os.path.join(compare, 'training', 'networks_stylegan3.py')):
        return None, '', f'no NVIDIA stylegan3 checkout at {compare}'
    return os.path.abspath(compare), python or sys.executable, ''


def benchmark(configs: list[str], res: int, batches: list[int], repeats: int, device: torch.device,
              nvidia_repo: Optional[str], nvidia_python: str, seed: int = 0, force_fp32: bool = True,
              cuda_graph: bool = False, widths: Optional[dict] = None) -> list[dict]:
    rows = []
    for cfg in configs:
        G = build_ours(cfg, res, seed, device, **(widths or {}))
        for batch in batches:
            z = latents(batch, G.z_dim, seed).to(device)
            graph = cuda_graph and batch == 1 and device.type == 'cuda'
            times, img = time_generator(G, z, repeats, force_fp32=force_fp32, cuda_graph=graph)
            row = dict(config=cfg, res=res, batch=batch, precision='fp32' if force_fp32 else 'mixed', device=str(device),
                       cuda_graph=graph,
                       threads=torch.get_num_threads(), torch=torch.__version__, cpu=platform.processor() or platform.machine(),
                       load_avg_1min=load_average(), ours_sec_per_call=float(np.median(times)),
                       ours_best_sec_per_call=float(min(times)), ours_img_per_s=batch / float(np.median(times)))
            convs = time_convolutions(G, z, min(repeats, 3), force_fp32=force_fp32)
            if convs is not None:
                row.update(ours_conv_sec_per_call=convs[0], ours_conv_share=convs[1])
            if nvidia_repo is not None:
                nv_times, nv_img, reason = run_nvidia(nvidia_repo, nvidia_python, cfg, res, G, z, repeats, device,
                                                      force_fp32, widths)
                if nv_times is not None:
                    nv_med = float(np.median(nv_times))
                    row.update(nvidia_sec_per_call=nv_med, nvidia_best_sec_per_call=float(min(nv_times)),
                               nvidia_img_per_s=batch / nv_med, speedup=nv_med / row['ours_sec_per_call'],
                               speedup_best=float(min(nv_times)) / row['ours_best_sec_per_call'],
                               max_abs_diff=float((img.cpu() - nv_img).abs().max()),
                               load_avg_1min_after=load_average(), nvidia_ops=reason)
                else:
                    row['nvidia_error'] = reason
            print_row(row)
            rows.append(row)
    return rows


def load_average() -> Optional[float]:
    """1-minute load average: other processes on the machine distort every figure here."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def fmt(value: Optional[float], spec: str) -> str:
    return '-' if value is None else format(value, spec)


def print_header() -> None:
    print('s/img: median (best) per call; conv: s/img in the networks\' convolutions and their share of the call '
          '(profiled calls, CPU only); ratio: NVIDIA time / ours, median (best)', flush=True)
    print(f'{"config":<12} {"res":>4} {"batch":>5} {"ours img/s":>11} {"s/img":>15} {"conv s/img":>10} {"conv%":>6} '
          f'{"NVIDIA img/s":>13} {"s/img":>15} {"ours/NVIDIA":>15} {"max|diff|":>10} {"load":>5}', flush=True)


def print_row(row: dict) -> None:
    b = row['batch']
    nv = row.get('nvidia_img_per_s')
    ours_s = f'{row["ours_sec_per_call"] / b:.3f} ({row["ours_best_sec_per_call"] / b:.3f})'
    nv_s = f'{row["nvidia_sec_per_call"] / b:.3f} ({row["nvidia_best_sec_per_call"] / b:.3f})' if nv else '-'
    ratio = f'{row["speedup"]:.2f}x ({row["speedup_best"]:.2f}x)' if nv else '-'
    conv = row.get('ours_conv_sec_per_call')
    share = row.get('ours_conv_share')
    print(f'{row["config"]:<12} {row["res"]:>4} {b:>5} {row["ours_img_per_s"]:>11.4f} {ours_s:>15} '
          f'{fmt(None if conv is None else conv / b, ">10.3f")} {"-" if share is None else f"{100 * share:.1f}%":>6} '
          f'{fmt(nv, ">13.4f")} {nv_s:>15} {ratio:>15} {fmt(row.get("max_abs_diff"), ">10.2e")} '
          f'{fmt(row.get("load_avg_1min"), ">5.1f")}', flush=True)
    if 'nvidia_error' in row:
        print(f'  ({row["nvidia_error"]})', flush=True)


def write_jsonl(rows: list[dict], path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix='.tmp')
    with os.fdopen(fd, 'w') as f:
        for row in rows:
            f.write(json.dumps(row) + '\n')
    os.replace(tmp, path)


def main() -> None:
    import click

    @click.command()
    @click.option('--configs', default='stylegan3-t,stylegan3-r,stylegan2', show_default=True)
    @click.option('--res', type=int, default=256, show_default=True)
    @click.option('--batch', 'batches', default='1', show_default=True, help='Batch sizes (comma list)')
    @click.option('--repeats', type=click.IntRange(min=1), default=3, show_default=True,
                  help='Timed calls after one warm-up call; the median is reported')
    @click.option('--device', default='auto', show_default=True, help="'auto' (CUDA if available), 'cpu', 'cuda'")
    @click.option('--seed', type=int, default=0, show_default=True)
    @click.option('--threads', type=click.IntRange(min=1), default=None,
                  help='CPU threads for both implementations (default: torch\'s default)')
    @click.option('--compare-nvidia', envvar='SG3C_NVIDIA_REPO', metavar='DIR',
                  help="NVlabs/stylegan3 checkout to compare with (env SG3C_NVIDIA_REPO)  [default: ours alone]")
    @click.option('--nvidia-python', envvar='SG3C_NVIDIA_PYTHON', metavar='PYTHON',
                  help='Interpreter for NVIDIA\'s code (env SG3C_NVIDIA_PYTHON)  [default: this one]')
    @click.option('--json-out', default=None, help='Also write the rows as JSON lines here')
    @click.option('--precision', type=click.Choice(['fp32', 'mixed']), default='fp32', show_default=True,
                  help="'mixed': float16 in the layers where the networks use it on CUDA, as NVIDIA's gen_images.py does")
    @click.option('--cuda-graph', is_flag=True, help='Our batch-1 runs replayed from a CUDA graph, as gen_images.py does')
    @click.option('--cbase', type=click.IntRange(min=1), default=32768, show_default=True,
                  help="Capacity multiplier, as train.py's (doubled for stylegan3-r)")
    @click.option('--cmax', type=click.IntRange(min=1), default=512, show_default=True,
                  help="Max. feature maps, as train.py's (doubled for stylegan3-r)")
    @click.option('--retain-memory/--no-retain-memory', default=True, show_default=True,
                  help='Keep freed host memory for reuse, as our scripts do (torch_utils/host_memory.py); '
                       'NVIDIA\'s process keeps glibc\'s defaults either way')
    def cli(configs, res, batches, repeats, device, seed, threads, compare_nvidia, nvidia_python, json_out, precision,
            cuda_graph, cbase, cmax, retain_memory):
        """Images/s of each generator config on this machine, ours vs NVIDIA's."""
        if retain_memory:
            import_ours()
            from torch_utils import host_memory
            host_memory.retain_freed_memory()
        if threads:
            torch.set_num_threads(threads)
        cfgs = [c.strip() for c in configs.split(',') if c.strip()]
        for cfg in cfgs:
            try:
                generator_kwargs(cfg, res)
            except ValueError as err:
                raise click.BadParameter(str(err), param_hint='--configs')
        try:
            batch_list = [int(b) for b in batches.split(',')]
        except ValueError:
            raise click.BadParameter(f'{batches!r} is not a comma list of integers', param_hint='--batch')
        import_ours()   # here, not at the top: NVIDIA's worker process runs this file with its own torch_utils
        from torch_utils.devices import device_from_option
        dev = device_from_option(device)
        repo, python, reason = nvidia_setup(compare_nvidia, nvidia_python)
        print(f'device {dev}, {torch.get_num_threads()} threads, torch {torch.__version__}, '
              f'freed host memory {"retained" if retain_memory else "returned (glibc defaults)"}; '
              + (f'NVIDIA: {repo} via {python}' if repo else f'NVIDIA: skipped ({reason})'), flush=True)
        print_header()
        rows = benchmark(cfgs, res, batch_list, repeats, dev, repo, python, seed=seed, force_fp32=precision == 'fp32',
                         cuda_graph=cuda_graph, widths=dict(cbase=cbase, cmax=cmax))
        if json_out:
            write_jsonl(rows, json_out)

    cli()


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == WORKER_FLAG:
        nvidia_worker(sys.argv[2])
    else:
        main()
