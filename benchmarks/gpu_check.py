#!/usr/bin/env python3
"""The GPU acceptance of the CUDA ops (issues 24, 31), as two runs that fit one lent GPU's 15 minutes
together, callable as one command of at most 9 minutes, and their rehearsal on a CPU (called by
benchmarks/gpu_check.sh; docs/cuda_ops.md says how a session runs them).

Run 1 (225 s alone, build included):
  build     compile our kernels for this device's architecture (NVIDIA's worker starts in the background);
  ops       our kernels against our reference ops (benchmarks/op_compare.py --layers): random geometries and
            the networks' own layer shapes, float32/float16, forward, gradient, gradient of gradient;
  opbench   op times at the StyleGAN3-T/-R 256/1024 layer shapes and StyleGAN2's resampling
            (benchmarks/op_bench.py): our kernel, our reference, NVIDIA's op case by case, ratios;
  racecheck compute-sanitizer --tool racecheck over two tiny network layers.
Run 2 (340 s alone; a fresh machine builds the kernels again first, a joint command does not):
  generate  img/s of StyleGAN3-T/-R at 256 px, batch 1 (our side from a CUDA graph) and 32, float16 layers,
            side by side with NVIDIA's code on the same weights, and the largest pixel difference;
  train     s/kimg and peak memory at 256 px, batch 32, ours and NVIDIA's train.py on the same data with the
            same tick (1 kimg: 31 steps and the same R1 steps in the timed window), ours given at most half
            of the time left: StyleGAN3-T first, then -R if time is left (--train-configs chooses);
  pytest    the tests marked gpu, if time is left;
  e2e       a short train.py --gpus=1 run, then gen_images.py and invert.py on its snapshot, if time is left.
--rehearse runs the same steps through the same functions on the CPU with the REHEARSAL profile (tiny
shapes, the reference ops standing in for the kernels, NVIDIA's code on its reference path and its
train.py with --dry-run, since its training loop needs CUDA), so that a broken step shows before a GPU is
lent. Every step runs in its own process under a time limit drawn from its run's budget; what no longer
fits is reported as skipped. Writes exactly three files into the output folder: gpu_check.md (the table),
gpu_check.json (everything) and gpu_check_logs.tar (every step's log), refreshed after each step.
"""
from __future__ import annotations

import argparse
import glob
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nvidia_env import ENV_VAR as NVIDIA_PATH_VAR, compat_path, nvidia_env   # noqa: E402

sys.path.insert(0, REPO)
from networks.snapshot import find_latest_snapshot   # noqa: E402

MIN_STEP_S = 5                # a step given less time than this is skipped
RUNS = {1: ('build', 'ops', 'opbench', 'racecheck'), 2: ('build', 'generate', 'train', 'pytest', 'e2e')}
# Targets of issue 24.
TRAIN_RATIO_TARGET = 1.0      # our s/kimg over NVIDIA's, at most (goal 0.7)
GEN_SPEEDUP_TARGET = 1.0      # our img/s over NVIDIA's, at least (goal 1.5)
IMAGE_LEVEL = 2 / 255         # one 8-bit level of an image in [-1, 1]
TRAIN_CONFIGS = ('stylegan3-t', 'stylegan3-r')
TRAIN_RUN_CAP_S = 150         # one train.py run: start-up, tick 0, and the timed 1-kimg tick
RACECHECK_CAP_S = 75          # compute-sanitizer's start with torch, and two tiny layers under racecheck
# The build step's child: our kernels built, loaded and self-tested; in the rehearsal nothing is built and
# the self-test runs with the reference ops standing in for the kernels.
BUILD_SCRIPT = ('import sys, time, torch; t = time.time(); from torch_utils.ops import cuda_kernels, selftest; '
                'rehearse = sys.argv[1] == "ref"; '
                'f = selftest.agree_with_reference(torch.device("cpu"), selftest.backend_ops("ref")) if rehearse '
                'else cuda_kernels.load(); '
                'print("no build, reference self-test" if rehearse else "build+load+self-test", '
                'round(time.time() - t, 1), "s:", f or "ok"); raise SystemExit(f is not None)')


@dataclass(frozen=True)
class Profile:
    """What differs between the check on a GPU and its rehearsal on a CPU: the device, which of our ops fill
    the kernel columns, and the sizes. The steps, their commands, the budgets' logic and the report are the
    same code, so that a broken step shows in the rehearsal."""
    name: str
    device: str
    impl: str                          # our ops in the kernel columns ('ref' stands in for the kernels)
    budgets: dict                      # seconds: run 1, run 2, and (1, 2) both in one command
    op_compare: tuple[str, ...]
    op_bench: tuple[str, ...]
    generate: tuple[str, ...]
    train_data: str
    train: tuple[str, ...]             # our train.py and NVIDIA's alike
    train_length: tuple[str, ...]      # ours
    nvidia_train_length: tuple[str, ...]
    train_configs: tuple[str, ...]
    pytest: tuple[str, ...]
    e2e_train: tuple[str, ...]
    invert_steps: int


GPU = Profile(
    name='gpu', device='cuda', impl='cuda', budgets={1: 225, 2: 340, (1, 2): (200, 525)},
    op_compare=('--cases=20', '--layers'), op_bench=(),
    generate=('--configs=stylegan3-t,stylegan3-r', '--res=256', '--batch=1,32', '--repeats=5', '--precision=mixed'),
    train_data='synthetic:garments?n=256&resolution=256',
    train=('--gpus=1', '--batch=32', '--gamma=2', '--metrics=none', '--snap=1000'),
    train_length=('--kimg=1', '--tick=1'), nvidia_train_length=('--kimg=1', '--tick=1'), train_configs=TRAIN_CONFIGS,
    pytest=('tests',),
    e2e_train=('--data=synthetic:garments?n=64&resolution=64', '--batch=8', '--cbase=8192', '--cmax=128',
               '--kimg=0.032', '--tick=0.016'),
    invert_steps=50)
# NVIDIA's training loop needs CUDA (it puts everything on torch.device('cuda')): on a CPU its train.py runs
# with --dry-run, which parses the same options and opens the same dataset.
REHEARSAL = Profile(
    name='rehearsal', device='cpu', impl='ref', budgets={1: 160, 2: 170, (1, 2): (160, 285)},
    op_compare=('--cases=2', '--layers', '--tiny'), op_bench=('--tiny', '--repeats=1', '--warmup=1'),
    generate=('--configs=stylegan3-t', '--res=32', '--batch=1,4', '--repeats=1', '--precision=mixed', '--cbase=512',
              '--cmax=16'),
    train_data='synthetic:garments?n=16&resolution=32',
    train=('--gpus=1', '--batch=4', '--gamma=2', '--metrics=none', '--snap=1000', '--cbase=512', '--cmax=16'),
    train_length=('--kimg=0.008', '--tick=0.004'), nvidia_train_length=('--kimg=1', '--tick=1', '--dry-run'),
    train_configs=('stylegan3-t',), pytest=('tests/test_cuda_ops.py',),
    e2e_train=('--data=synthetic:garments?n=16&resolution=32', '--batch=4', '--cbase=512', '--cmax=16',
               '--kimg=0.004', '--tick=0.004'),
    invert_steps=5)


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def limit(self, cap: float, keep: float = 0) -> float:
        """Seconds a step may take: at most `cap`, leaving `keep` for the steps after it."""
        return max(0.0, min(cap, self.left() - keep))


def run(cmd: list[str], log_path: str, timeout: float, env: Optional[dict] = None, cwd: str = REPO) -> dict:
    """Run one command with output to `log_path`; on timeout its whole process group is killed."""
    if timeout < MIN_STEP_S:
        return {'rc': None, 'seconds': 0.0, 'skipped': 'no time left in the budget'}
    start = time.monotonic()
    with open(log_path, 'a') as log:
        log.write(f'$ {" ".join(cmd)}\n')
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc, timed_out = proc.wait(), True
    result = {'rc': rc, 'seconds': round(time.monotonic() - start, 1)}
    if timed_out:
        result['timed_out'] = True
    return result


def tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, errors='replace') as f:
            return ' | '.join(line.strip() for line in f.readlines()[-lines:])
    except OSError:
        return ''


def read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def environment(nvidia: Optional['Nvidia'], profile: Profile) -> dict:
    import torch
    env = {'torch': torch.__version__, 'cuda': torch.version.cuda, 'python': platform.python_version(),
           'date': time.strftime('%Y-%m-%d'), 'nvidia_repo': nvidia.repo if nvidia else None, 'profile': profile.name}
    if profile.device == 'cuda':
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2 ** 30, 1),
                   capability='.'.join(map(str, torch.cuda.get_device_capability(0))))
    else:
        env.update(gpu=f'no GPU: rehearsal on {platform.machine()} CPU ({os.cpu_count()} cores)', gpu_memory_gb=None,
                   capability=None)
    return env


class Nvidia:
    """NVIDIA's checkout, the interpreter for it, and its plugins compiling in the background."""

    def __init__(self, repo: str, python: str, work: str, device: str):
        self.repo, self.python, self.work, self.device = repo, python, work, device
        extra = compat_path(python, os.path.join(work, 'nvidia_compat'))
        self.env = nvidia_env(extra)
        self.env['PYTHONUNBUFFERED'] = '1'
        # (our benchmark scripts start NVIDIA's side themselves: they read the folders from here)
        self.bench_env = {NVIDIA_PATH_VAR: self.env.get('PYTHONPATH', '')}
        self.compat = extra
        self.build_log = os.path.join(work, 'nvidia_build.log')
        self.build: Optional[subprocess.Popen] = None
        self.status: dict = {'rc': None, 'waiting': True}   # the last wait_build's answer

    def args(self) -> list[str]:
        return [f'--nvidia-repo={self.repo}', f'--nvidia-python={self.python}']

    def start_build(self) -> None:
        with open(self.build_log, 'w') as log:
            self.build = subprocess.Popen([sys.executable, 'benchmarks/op_bench.py', '--build-nvidia', *self.args(),
                                           f'--device={self.device}'],
                                          stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                          env=dict(os.environ, **self.bench_env), start_new_session=True)

    def wait_build(self, timeout: float) -> dict:
        """Until the plugins are built (or `timeout`); NVIDIA's runs would otherwise compile them in their
        timed windows. 'plugins' says which of NVIDIA's ops load their CUDA plugin."""
        if self.build is None:
            return {'rc': None}
        start = time.monotonic()
        try:
            rc = self.build.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            return {'rc': None, 'waiting': True, 'seconds': round(time.monotonic() - start, 1)}
        result = {'rc': rc, 'seconds': round(time.monotonic() - start, 1), 'summary': tail(self.build_log, 1)}
        try:
            result['plugins'] = json.loads(result['summary'])['plugins']
        except (ValueError, KeyError, TypeError):
            pass
        self.status = result
        return result

    def stop(self) -> None:
        if self.build is not None and self.build.poll() is None:
            os.killpg(self.build.pid, signal.SIGKILL)


@dataclass
class Check:
    """One invocation: the profile, the work folder, the environment of our steps, NVIDIA's side."""
    profile: Profile
    work: str
    env: dict
    nvidia: Optional[Nvidia]

    def our(self, *names: str) -> list[str]:
        """--device and --impl for our benchmark scripts, as the profile says."""
        values = {'device': self.profile.device, 'impl': self.env['SG3C_OPS']}
        return [f'--{name}={values[name]}' for name in names]

    def log(self, name: str) -> str:
        return os.path.join(self.work, name)

    def bench_env(self) -> dict:
        return dict(self.env, **(self.nvidia.bench_env if self.nvidia else {}))


# ------------------------------------------------------------------ steps

def step_build(check: Check, budget: Budget) -> dict:
    log = check.log('build.log')
    res = run([sys.executable, '-c', BUILD_SCRIPT, check.profile.impl], log, budget.limit(150, keep=60), check.env)
    res['summary'] = tail(log, 1)
    res['ok'] = res.get('rc') == 0
    return res


def step_ops(check: Check, budget: Budget) -> dict:
    path = check.log('op_compare.json')
    res = run([sys.executable, 'benchmarks/op_compare.py', *check.profile.op_compare, *check.our('device', 'impl'),
               f'--json={path}'], check.log('ops.log'), budget.limit(90, keep=45 + RACECHECK_CAP_S / 2), check.env)
    res.update(read_json(path))
    res['ok'] = res.get('rc') == 0
    return res


def step_opbench(check: Check, budget: Budget) -> dict:
    res: dict = {}
    nvidia = check.nvidia
    if nvidia is not None:
        res['nvidia_build'] = nvidia.wait_build(budget.limit(60, keep=40 + RACECHECK_CAP_S))
    path = check.log('op_bench.json')
    quick = budget.left() < 100 + RACECHECK_CAP_S   # (the 256 px layers only)
    cmd = [sys.executable, 'benchmarks/op_bench.py', f'--json={path}', *check.profile.op_bench,
           *check.our('device', 'impl'), f'--nvidia-log={check.log("nvidia_opbench.log")}'] + (['--quick'] if quick else [])
    if nvidia is not None:
        cmd += nvidia.args()
    res.update(run(cmd, check.log('opbench.log'), budget.limit(200, keep=RACECHECK_CAP_S), check.bench_env()))
    res.update(read_json(path))   # (the rows that finished, also after a timeout)
    res['quick'] = quick
    res['ok'] = res.get('rc') == 0
    return res


def sanitizer() -> Optional[str]:
    found = shutil.which('compute-sanitizer')
    if found is None and os.path.isfile('/usr/local/cuda/bin/compute-sanitizer'):
        found = '/usr/local/cuda/bin/compute-sanitizer'
    return found


def step_racecheck(check: Check, budget: Budget) -> dict:
    """compute-sanitizer's racecheck over two tiny network layers (forward, gradients), which reach the tiled
    kernels; in the rehearsal, the same command without the sanitizer."""
    log = check.log('racecheck.log')
    tool = sanitizer() if check.profile.device == 'cuda' else None
    prefix = [tool, '--tool', 'racecheck', '--error-exitcode', '3'] if tool else []
    res = run([*prefix, sys.executable, 'benchmarks/op_compare.py', '--cases=0', '--sample=2', '--dtypes=float16',
               *check.our('device', 'impl')], log, budget.limit(RACECHECK_CAP_S), check.env)
    with open(log, errors='replace') as f:
        summary = re.findall(r'RACECHECK SUMMARY: .*', f.read())
    res['sanitizer'] = tool
    res['summary'] = summary[-1] if summary else ('no compute-sanitizer: the tiny case ran unsanitized'
                                                  if not tool else tail(log, 1))
    res['ok'] = res.get('rc') == 0 and (not tool or bool(summary))
    return res


def step_generate(check: Check, budget: Budget) -> dict:
    res: dict = {}
    nvidia = check.nvidia
    if nvidia is not None:
        res['nvidia_build'] = nvidia.wait_build(budget.limit(150, keep=180))
    path = check.log('generate.jsonl')
    cmd = [sys.executable, 'benchmarks/generate.py', *check.profile.generate, *check.our('device'), '--cuda-graph',
           f'--json-out={path}', f'--compare-nvidia={nvidia.repo if nvidia else "none"}']
    if nvidia is not None:
        cmd.append(f'--nvidia-python={nvidia.python}')
    res.update(run(cmd, check.log('generate.log'), budget.limit(120, keep=150), check.bench_env()))
    rows = []
    if os.path.isfile(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        if 'speedup' in row:
            row['meets_speed_target'] = row['speedup'] >= GEN_SPEEDUP_TARGET
            row['identical_to_1_level'] = row['max_abs_diff'] <= IMAGE_LEVEL
    res['rows'] = rows
    configs = next(a for a in check.profile.generate if a.startswith('--configs=')).split('=')[1].split(',')
    batches = next(a for a in check.profile.generate if a.startswith('--batch=')).split('=')[1].split(',')
    res['ok'] = res.get('rc') == 0 and len(rows) == len(configs) * len(batches)
    return res


def last_tick(run_root: str) -> dict:
    stats = sorted(glob.glob(os.path.join(run_root, '*', 'stats.jsonl')))
    if not stats:
        return {}
    with open(stats[-1]) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if not lines:
        return {}
    last = lines[-1]

    def mean(key: str) -> Optional[float]:
        value = last.get(key)
        return value.get('mean') if isinstance(value, dict) else value

    return {'sec_per_kimg': mean('Timing/sec_per_kimg'), 'peak_gpu_mem_gb': mean('Resources/peak_gpu_mem_gb'),
            'ticks': len(lines)}


def nvidia_ops_in_log(log: str, dry_run: bool) -> str:
    """Which of NVIDIA's op implementations its train.py used, from what its plugin loader printed."""
    try:
        with open(log, errors='replace') as f:
            text = f.read()
    except OSError:
        text = ''
    done = re.findall(r'Setting up PyTorch plugin "(\w+)"\.\.\. Done', text)
    if 'Failed!' in text:
        return f'CUDA plugins failed to load (NVIDIA has no fallback on CUDA){"; loaded: " + ", ".join(done) if done else ""}'
    if done:
        return f'CUDA plugins ({", ".join(done)})'
    return "dry run: NVIDIA's training loop needs CUDA" if dry_run else "NVIDIA's reference path (no plugin set up)"


def step_train(check: Check, budget: Budget, configs: tuple[str, ...]) -> dict:
    """Both train.py's with --kimg=1 --tick=1 at batch 32: tick 0 is the first step, tick 1 the next 31
    (1 kimg, rounded up to whole batches), with D's R1 step at the 16th; its s/kimg is the measurement.
    Ours may take half of what is left, so that NVIDIA's run beside it gets the other half."""
    log = check.log('train.log')
    data = check.log('garments.zip')
    nvidia, profile = check.nvidia, check.profile
    res: dict = {'rows': []}
    res['dataset'] = run([sys.executable, 'dataset_tool.py', f'--source={profile.train_data}', f'--dest={data}'], log,
                         budget.limit(40), check.env)
    if res['dataset'].get('rc') != 0:
        res['ok'] = False
        return res
    common = [*profile.train, f'--data={data}']
    for cfg in configs:   # in order of priority: each run gets what it needs while the budget lasts
        outdir = check.log(f'ours-{cfg}')
        keep = budget.left() / 2 if nvidia is not None else 10
        r = run([sys.executable, 'train.py', f'--outdir={outdir}', f'--cfg={cfg}', *common, *profile.train_length],
                log, budget.limit(TRAIN_RUN_CAP_S, keep=keep), check.env)
        row = {'config': cfg, 'batch': next(a.split('=')[1] for a in profile.train if a.startswith('--batch=')),
               'ours': {**r, **last_tick(outdir)}}
        if nvidia is not None:
            nvidia.wait_build(budget.limit(60, keep=30))
            outdir, nv_log = check.log(f'nvidia-{cfg}'), check.log(f'nvidia_train_{cfg}.log')
            r = run([nvidia.python, os.path.join(nvidia.repo, 'train.py'), f'--outdir={outdir}', f'--cfg={cfg}', *common,
                     *profile.nvidia_train_length], nv_log, budget.limit(TRAIN_RUN_CAP_S, keep=10), nvidia.env,
                    cwd=nvidia.repo)
            row['nvidia'] = {**r, **last_tick(outdir),
                             'ops': nvidia_ops_in_log(nv_log, '--dry-run' in profile.nvidia_train_length)}
            ours, theirs = row['ours'].get('sec_per_kimg'), row['nvidia'].get('sec_per_kimg')
            if ours and theirs:
                row['ratio'] = ours / theirs
                row['meets_target'] = row['ratio'] <= TRAIN_RATIO_TARGET
        res['rows'].append(row)
    res['ok'] = all(r['ours'].get('rc') == 0 and r['ours'].get('sec_per_kimg') and r.get('nvidia', {}).get('rc', 0) == 0
                    for r in res['rows'])
    return res


def step_pytest(check: Check, budget: Budget) -> dict:
    log = check.log('pytest.log')
    res = run([sys.executable, '-m', 'pytest', '-q', '-m', 'gpu', '-p', 'no:cacheprovider', *check.profile.pytest],
              log, budget.limit(120), check.env)
    res['summary'] = tail(log, 1)
    res['ok'] = res.get('rc') in (0, 5) if check.profile.device != 'cuda' else res.get('rc') == 0
    return res


def step_e2e(check: Check, budget: Budget) -> dict:
    root = check.log('e2e')
    log = check.log('e2e.log')
    stop = time.monotonic() + budget.limit(120)
    device = check.our('device')
    res: dict = {}
    res['train'] = run([sys.executable, 'train.py', f'--outdir={root}/train', '--cfg=stylegan3-t', '--gpus=1',
                        '--gamma=0.5', '--snap=1', '--metrics=none', *check.profile.e2e_train],
                       log, stop - time.monotonic(), check.env)
    snapshot = find_latest_snapshot(os.path.join(root, 'train')) if os.path.isdir(os.path.join(root, 'train')) else None
    if snapshot:
        res['gen_images'] = run([sys.executable, 'gen_images.py', f'--network={snapshot}', '--seeds=0-3',
                                 f'--outdir={root}/images', *device], log, stop - time.monotonic(), check.env)
        images = sorted(glob.glob(os.path.join(root, 'images', '*.png')))
        res['images'] = len(images)
        if images:
            res['invert'] = run([sys.executable, 'invert.py', '--method=project', '--perceptual=none',
                                 f'--network={snapshot}', f'--target={images[0]}', f'--outdir={root}/invert',
                                 f'--steps={check.profile.invert_steps}', *device], log, stop - time.monotonic(),
                                check.env)
    res['ok'] = all(res.get(k, {}).get('rc') == 0 for k in ('train', 'gen_images', 'invert')) and res.get('images') == 4
    if not res['train'].get('rc') and res['train'].get('skipped'):
        res['skipped'] = res['train']['skipped']
    return res


# ------------------------------------------------------------------ report

def fmt(value, spec: str = '.3g', none: str = '-') -> str:
    return none if value is None else format(value, spec)


def status(res: dict) -> str:
    if res.get('skipped'):
        return 'skipped'
    if res.get('timed_out'):
        return 'TIMED OUT'
    return 'ok' if res.get('ok') else 'FAIL'


def line(*cells) -> str:
    """One table row; an empty cell says 'n/a' (every column filled, also where a check has no NVIDIA side)."""
    return '| ' + ' | '.join(str(c).strip() or 'n/a' for c in cells) + ' |'


def plugins_text(plugins: Optional[dict]) -> str:
    if not plugins:
        return ''
    notes = sorted({v.get('note', '') for v in plugins.values()})
    return '; '.join(notes)


def run1_lines(s: dict, nv: dict) -> list[str]:
    lines = []
    if 'build' in s:
        theirs = plugins_text(nv.get('plugins')) or ('still building' if nv.get('waiting') else nv.get('summary', ''))
        lines.append(line('build', 'CUDA ops build + load + self-test', s['build'].get('summary', ''), theirs, '',
                          status(s['build'])))
    ops = s.get('ops', {})
    for r in ops.get('rows', []):
        lines.append(line('ops', f'{r["op"]} {r["dtype"]} vs reference, rel. error fwd / grad / grad2 ({r["cases"]} cases)',
                          f'{r["forward"]:.1e} / {r["grad"]:.1e} / {r["grad2"]:.1e}', '', '', 'ok' if r['ok'] else 'FAIL'))
    if 'ops' in s and not ops.get('rows'):
        lines.append(line('ops', 'kernels vs reference', ops.get('failure') or '', '', '', status(ops)))
    if 'opbench' in s:
        bench = s['opbench']
        rows = bench.get('rows', [])
        lines.append(line('opbench', f'op times ({bench.get("dtype", "")}{", 256 px only" if bench.get("quick") else ""}): '
                          'table below', f'{len(rows)} cases ({bench.get("kernel_impl", "?")})',
                          plugins_text(bench.get('nvidia_plugins')) or bench.get('nvidia_error') or '', '', status(bench)))
    if 'racecheck' in s:
        rc = s['racecheck']
        lines.append(line('racecheck', 'compute-sanitizer --tool racecheck, 2 tiny layers fwd+grads', rc.get('summary', ''),
                          '', '', status(rc)))
    return lines


def run2_lines(s: dict) -> list[str]:
    lines = []
    for r in s.get('generate', {}).get('rows', []):
        ratio = f'{r["speedup"]:.2f}x (>= {GEN_SPEEDUP_TARGET}x), max diff {r["max_abs_diff"]:.1e}' \
            if 'speedup' in r else r.get('nvidia_error', '')
        ok = 'ok' if r.get('meets_speed_target', True) and r.get('identical_to_1_level', True) else 'below target'
        theirs = f'{fmt(r.get("nvidia_img_per_s"), ".1f")} ({r["nvidia_ops"]})' if 'nvidia_ops' in r else '-'
        lines.append(line('generate', f'{r["config"]} {r["res"]}px batch {r["batch"]} img/s ({r["precision"]}'
                          f'{", CUDA graph" if r.get("cuda_graph") else ""})', f'{r["ours_img_per_s"]:.1f}', theirs,
                          ratio, ok))
    if 'generate' in s and not s['generate'].get('rows'):
        lines.append(line('generate', 'img/s', '', '', '', status(s['generate'])))
    for r in s.get('train', {}).get('rows', []):
        o, n = r['ours'], r.get('nvidia', {})
        ratio = f'{r["ratio"]:.2f} (<= {TRAIN_RATIO_TARGET})' if 'ratio' in r else ''
        ok = ('ok' if r.get('meets_target', True) else 'below target') if o.get('sec_per_kimg') else status(o)
        theirs = (f'{fmt(n.get("sec_per_kimg"), ".2f")}, {fmt(n.get("peak_gpu_mem_gb"), ".1f")} GB, rc {n.get("rc")} '
                  f'({n.get("ops", "")})') if n else '-'
        lines.append(line('train', f'{r["config"]} batch {r.get("batch", 32)} s/kimg, peak memory', f'{fmt(o.get("sec_per_kimg"), ".2f")}, {fmt(o.get("peak_gpu_mem_gb"), ".1f")} GB',
                          theirs, ratio, ok))
    if 'train' in s and not s['train'].get('rows'):
        lines.append(line('train', 's/kimg', '', '', '', status(s['train'])))
    if 'pytest' in s:
        lines.append(line('pytest', '-m gpu', s['pytest'].get('summary', ''), '', '', status(s['pytest'])))
    if 'e2e' in s:
        e2e = s['e2e']
        parts = ', '.join(f'{k} {fmt(e2e[k].get("seconds"), ".0f")} s (rc {e2e[k].get("rc")})'
                          for k in ('train', 'gen_images', 'invert') if k in e2e)
        lines.append(line('e2e', 'train.py -> gen_images.py -> invert.py', parts, '', '', status(e2e)))
    return lines


def table(result: dict) -> str:
    env = result['environment']
    device = f'sm_{env["capability"].replace(".", "")}' if env.get('capability') else 'CPU'
    runs = ' and '.join(map(str, result['runs'])) if 'runs' in result else result['run']
    lines = [f'# GPU check{" REHEARSAL" if env.get("profile") == "rehearsal" else ""}, run {runs}: {env["gpu"]} '
             f'({device}), torch {env["torch"]}, CUDA {env["cuda"]}, {env["date"]}, {result["seconds"]:.0f} s; '
             f'ops: {result["ops_backend"]}; NVIDIA: {env["nvidia_repo"] or "not compared"}', '',
             '| step | check | ours | NVIDIA | ratio / target | status |', '|---|---|---|---|---|---|']
    lines += run1_lines(result['steps'], result.get('nvidia_build') or {}) + run2_lines(result['steps'])
    text = '\n'.join(lines) + '\n'
    if result['steps'].get('opbench', {}).get('table'):
        text += '\n## Op times (ms per call; ratios < 1: faster than NVIDIA)\n\n' + result['steps']['opbench']['table'] + '\n'
    return text


def write_outputs(out: str, work: str, result: dict) -> None:
    """gpu_check.md, gpu_check.json and gpu_check_logs.tar (the logs and step outputs in `work`)."""
    with open(os.path.join(out, 'gpu_check.json'), 'w') as f:
        json.dump(result, f, indent=1, default=str)
    with open(os.path.join(out, 'gpu_check.md'), 'w') as f:
        f.write(table(result))
    with tarfile.open(os.path.join(out, 'gpu_check_logs.tar'), 'w') as tar:
        for path in sorted(glob.glob(os.path.join(work, '*.log')) + glob.glob(os.path.join(work, '*.json*'))):
            tar.add(path, arcname=os.path.basename(path))
        for path in sorted(glob.glob(os.path.join(work, '*', '*', 'log.txt'))):   # the training runs' own logs
            tar.add(path, arcname=os.path.relpath(path, work))
        info = tarfile.TarInfo('result.json')
        data = json.dumps(result, indent=1, default=str).encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='GPU acceptance of the CUDA ops (see benchmarks/gpu_check.sh)')
    parser.add_argument('--run', default='1,2', choices=['1', '2', '1,2'],
                        help='1: ops; 2: networks; 1,2: both in one command (default)')
    parser.add_argument('--rehearse', action='store_true',
                        help='every step on the CPU at tiny shapes, the reference ops standing in for the kernels')
    parser.add_argument('--steps', default=None, help='only these steps of the runs (comma list; e.g. to rerun one)')
    parser.add_argument('--out', required=True, help='folder for gpu_check.md, gpu_check.json, gpu_check_logs.tar')
    parser.add_argument('--nvidia-repo', default=os.environ.get('SG3C_NVIDIA_REPO'),
                        help='NVlabs/stylegan3 checkout to compare with (default: $SG3C_NVIDIA_REPO)')
    parser.add_argument('--nvidia-python', default=os.environ.get('SG3C_NVIDIA_PYTHON') or sys.executable,
                        help="interpreter for NVIDIA's code (default: $SG3C_NVIDIA_PYTHON, else this one)")
    parser.add_argument('--budget', type=float, default=None,
                        help='seconds for the whole command (default: the profile\'s, e.g. 225 / 340 / 525 on a GPU)')
    parser.add_argument('--train-configs', default=None,
                        help='run 2: configs to train, in order of priority (default: stylegan3-t,stylegan3-r)')
    return parser.parse_args()


def run_budgets(profile: Profile, runs: tuple[int, ...], total: Optional[float]) -> list[float]:
    """Seconds for each run of the command. Both in one command: run 1 its share, run 2 the rest of the total."""
    if len(runs) == 1:
        return [total or profile.budgets[runs[0]]]
    first, whole = profile.budgets[runs]
    whole = total or whole
    return [min(first, whole * first / profile.budgets[runs][1]), whole]


def run_steps(runs: tuple[int, ...], only: Optional[str]) -> list[tuple[int, str]]:
    """(run, step) in order; the build once, however many runs."""
    steps, seen = [], set()
    for r in runs:
        for name in RUNS[r]:
            if name not in seen and (only is None or name in only.split(',')):
                seen.add(name)
                steps.append((r, name))
    return steps


def our_env(profile: Profile) -> dict:
    """Our steps' environment: the kernels forced (a silent fallback to the reference would measure the wrong
    thing), built for this device's architecture alone (a build for every architecture takes minutes)."""
    env = dict(os.environ, SG3C_OPS=profile.impl, PYTHONUNBUFFERED='1')
    if profile.device == 'cuda':
        import torch
        env['TORCH_CUDA_ARCH_LIST'] = '.'.join(map(str, torch.cuda.get_device_capability(0)))
    return env


def main() -> int:
    args = parse_args()
    profile = REHEARSAL if args.rehearse else GPU
    if profile.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            print('gpu_check: needs CUDA (--rehearse runs every step on the CPU)', file=sys.stderr)
            return 1
    runs = tuple(int(r) for r in args.run.split(','))
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f'sg3c-gpu-check-{"-".join(map(str, runs))}-')
    start = time.monotonic()
    deadlines = [start + b for b in run_budgets(profile, runs, args.budget)]
    nvidia = None
    repo = args.nvidia_repo
    if repo and not os.path.isfile(os.path.join(repo, 'training', 'networks_stylegan3.py')):
        print(f'gpu_check: {repo} is not an NVlabs/stylegan3 checkout; comparing nothing', file=sys.stderr)
    elif repo:
        nvidia = Nvidia(os.path.abspath(repo), args.nvidia_python, work, profile.device)
        nvidia.start_build()   # from the first second: it takes minutes
    check = Check(profile, work, our_env(profile), nvidia)
    configs = tuple(c for c in (args.train_configs or ','.join(profile.train_configs)).split(',') if c)
    result: dict = {'runs': list(runs), 'environment': environment(nvidia, profile), 'steps': {}, 'seconds': 0.0,
                    'ops_backend': profile.impl, 'arch_list': check.env.get('TORCH_CUDA_ARCH_LIST'),
                    'budgets_s': [round(d - start) for d in deadlines], 'nvidia_compat': nvidia.compat if nvidia else None}
    steps = {'build': step_build, 'ops': step_ops, 'opbench': step_opbench, 'racecheck': step_racecheck,
             'generate': step_generate, 'train': lambda c, b: step_train(c, b, configs), 'pytest': step_pytest,
             'e2e': step_e2e}
    try:
        for r, name in run_steps(runs, args.steps):
            budget = Budget(deadlines[runs.index(r)] - time.monotonic())
            print(f'gpu_check: run {r} step {name} ({budget.left():.0f} s of budget left)', flush=True)
            result['steps'][name] = steps[name](check, budget)
            if name == 'build' and not result['steps'][name].get('ok') and profile.impl != 'ref':
                # Still measure the rest, on the reference ops, and say so.
                check.env['SG3C_OPS'] = result['ops_backend'] = 'ref'
            result['seconds'] = time.monotonic() - start
            result['nvidia_build'] = nvidia.wait_build(0) if nvidia else None
            write_outputs(out, work, result)   # after every step: a kill keeps the rest
    finally:
        if nvidia is not None:
            nvidia.stop()
            if os.path.isfile(nvidia.build_log):
                result['nvidia_build_log_tail'] = tail(nvidia.build_log, 5)
        result['seconds'] = time.monotonic() - start
        write_outputs(out, work, result)
        shutil.rmtree(work, ignore_errors=True)
    print(table(result))
    return 0 if all(r.get('ok') for r in result['steps'].values()) else 1


if __name__ == '__main__':
    sys.exit(main())
