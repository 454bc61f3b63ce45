#!/usr/bin/env python3
"""The GPU acceptance of the CUDA ops (issue 24), as two runs that fit one lent GPU's 15 minutes
(called by benchmarks/gpu_check.sh; docs/cuda_ops.md says how a session runs them).

Run 1 (at most 4 minutes on one H200, build included):
  build     compile our kernels (and NVIDIA's plugins in the background from the first second);
  ops       our kernels against our reference ops (benchmarks/op_compare.py --layers): random geometries and
            the networks' own layer shapes, float32/float16, forward, gradient, gradient of gradient;
  opbench   op times at the StyleGAN3-T/-R 256/1024 layer shapes and StyleGAN2's resampling
            (benchmarks/op_bench.py): our kernel, our reference, NVIDIA's op, ratios.
Run 2 (at most 6 minutes; a fresh machine builds the kernels again first):
  generate  img/s of StyleGAN3-T/-R at 256 px, batch 1 (our side from a CUDA graph) and 32, float16 layers,
            side by side with NVIDIA's code on the same weights, and the largest pixel difference;
  train     s/kimg and peak memory at 256 px, batch 32, ours and NVIDIA's train.py on the same data with the
            same tick (1 kimg: 31 steps and the same R1 steps in the timed window): StyleGAN3-T first, then
            -R if time is left (--train-configs chooses);
  pytest    the tests marked gpu, if time is left;
  e2e       a short train.py --gpus=1 run, then gen_images.py and invert.py on its snapshot, if time is left.
Every step runs in its own process under a time limit drawn from the run's budget; what no longer fits
is reported as skipped. Writes exactly three files into the output folder: gpu_check.md (the table),
gpu_check.json (everything) and gpu_check_logs.tar (every step's log), refreshed after each step.
"""
from __future__ import annotations

import argparse
import glob
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nvidia_env import ENV_VAR as NVIDIA_PATH_VAR, compat_path, nvidia_env   # noqa: E402

sys.path.insert(0, REPO)
from networks.snapshot import find_latest_snapshot   # noqa: E402

MIN_STEP_S = 5                # a step given less time than this is skipped
RUNS = {1: ('build', 'ops', 'opbench'), 2: ('build', 'generate', 'train', 'pytest', 'e2e')}
BUDGETS = {1: 225, 2: 340}    # seconds; the lease allows 240 and 360 (python start-up and slack aside)
# Targets of issue 24.
TRAIN_RATIO_TARGET = 1.0      # our s/kimg over NVIDIA's, at most (goal 0.7)
GEN_SPEEDUP_TARGET = 1.0      # our img/s over NVIDIA's, at least (goal 1.5)
IMAGE_LEVEL = 2 / 255         # one 8-bit level of an image in [-1, 1]
TRAIN_CONFIGS = ('stylegan3-t', 'stylegan3-r')
TRAIN_RUN_CAP_S = 150         # one train.py run: start-up, tick 0, and the timed 1-kimg tick


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


def environment(nvidia: Optional['Nvidia']) -> dict:
    import torch
    props = torch.cuda.get_device_properties(0)
    return {'gpu': props.name, 'gpu_memory_gb': round(props.total_memory / 2 ** 30, 1),
            'capability': '.'.join(map(str, torch.cuda.get_device_capability(0))), 'torch': torch.__version__,
            'cuda': torch.version.cuda, 'python': platform.python_version(), 'date': time.strftime('%Y-%m-%d'),
            'nvidia_repo': nvidia.repo if nvidia else None}


class Nvidia:
    """NVIDIA's checkout, the interpreter for it, and its plugins compiling in the background."""

    def __init__(self, repo: str, python: str, work: str):
        self.repo, self.python, self.work = repo, python, work
        extra = compat_path(python, os.path.join(work, 'nvidia_compat'))
        self.env = nvidia_env(extra)
        self.env['PYTHONUNBUFFERED'] = '1'
        # (our benchmark scripts start NVIDIA's side themselves: they read the folders from here)
        self.bench_env = {NVIDIA_PATH_VAR: self.env.get('PYTHONPATH', '')}
        self.compat = extra
        self.build_log = os.path.join(work, 'nvidia_build.log')
        self.build: Optional[subprocess.Popen] = None

    def start_build(self) -> None:
        with open(self.build_log, 'w') as log:
            self.build = subprocess.Popen([sys.executable, 'benchmarks/op_bench.py', '--build-nvidia',
                                           f'--nvidia-repo={self.repo}', f'--nvidia-python={self.python}'],
                                          stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                          env=dict(os.environ, **self.bench_env), start_new_session=True)

    def wait_build(self, timeout: float) -> dict:
        """Until the plugins are built (or `timeout`); NVIDIA's runs would otherwise compile them in their
        timed windows."""
        if self.build is None:
            return {'rc': None}
        start = time.monotonic()
        try:
            rc = self.build.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            return {'rc': None, 'waiting': True, 'seconds': round(time.monotonic() - start, 1)}
        return {'rc': rc, 'seconds': round(time.monotonic() - start, 1)}

    def stop(self) -> None:
        if self.build is not None and self.build.poll() is None:
            os.killpg(self.build.pid, signal.SIGKILL)


# ------------------------------------------------------------------ steps

def step_build(work: str, budget: Budget, env: dict) -> dict:
    log = os.path.join(work, 'build.log')
    res = run([sys.executable, '-c', 'import time; t = time.time(); from torch_utils.ops import cuda_kernels; '
               'f = cuda_kernels.load(); print("build+load+self-test", round(time.time() - t, 1), "s:", f or "ok"); '
               'raise SystemExit(f is not None)'], log, budget.limit(150, keep=60), env)
    res['summary'] = tail(log, 1)
    res['ok'] = res.get('rc') == 0
    return res


def step_ops(work: str, budget: Budget, env: dict) -> dict:
    path = os.path.join(work, 'op_compare.json')
    res = run([sys.executable, 'benchmarks/op_compare.py', '--cases=20', '--layers', f'--json={path}'],
              os.path.join(work, 'ops.log'), budget.limit(90, keep=45), env)
    res.update(read_json(path))
    res['ok'] = res.get('rc') == 0
    return res


def step_opbench(work: str, budget: Budget, env: dict, nvidia: Optional[Nvidia]) -> dict:
    res: dict = {}
    if nvidia is not None:
        res['nvidia_build'] = nvidia.wait_build(budget.limit(60, keep=40))
    path = os.path.join(work, 'op_bench.json')
    quick = budget.left() < 100   # (the 256 px layers only)
    cmd = [sys.executable, 'benchmarks/op_bench.py', f'--json={path}'] + (['--quick'] if quick else [])
    if nvidia is not None:
        cmd += [f'--nvidia-repo={nvidia.repo}', f'--nvidia-python={nvidia.python}']
    res.update(run(cmd, os.path.join(work, 'opbench.log'), budget.limit(200),
                   dict(env, **(nvidia.bench_env if nvidia else {}))))
    res.update(read_json(path))
    res['quick'] = quick
    res['ok'] = res.get('rc') == 0
    return res


def step_generate(work: str, budget: Budget, env: dict, nvidia: Optional[Nvidia]) -> dict:
    res: dict = {}
    if nvidia is not None:
        res['nvidia_build'] = nvidia.wait_build(budget.limit(150, keep=180))
    path = os.path.join(work, 'generate.jsonl')
    cmd = [sys.executable, 'benchmarks/generate.py', '--configs=stylegan3-t,stylegan3-r', '--res=256', '--batch=1,32',
           '--repeats=5', '--precision=mixed', '--device=cuda', '--cuda-graph', f'--json-out={path}',
           f'--compare-nvidia={nvidia.repo if nvidia else "none"}']
    if nvidia is not None:
        cmd.append(f'--nvidia-python={nvidia.python}')
    res.update(run(cmd, os.path.join(work, 'generate.log'), budget.limit(120, keep=150),
                   dict(env, **(nvidia.bench_env if nvidia else {}))))
    rows = []
    if os.path.isfile(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        if 'speedup' in row:
            row['meets_speed_target'] = row['speedup'] >= GEN_SPEEDUP_TARGET
            row['identical_to_1_level'] = row['max_abs_diff'] <= IMAGE_LEVEL
    res['rows'] = rows
    res['ok'] = res.get('rc') == 0 and len(rows) == 4
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


def step_train(work: str, budget: Budget, env: dict, nvidia: Optional[Nvidia], configs: tuple[str, ...]) -> dict:
    """Both train.py's with --kimg=1 --tick=1 at batch 32: tick 0 is the first step, tick 1 the next 31
    (1 kimg, rounded up to whole batches), with D's R1 step at the 16th; its s/kimg is the measurement."""
    log = os.path.join(work, 'train.log')
    data = os.path.join(work, 'garments256.zip')
    res: dict = {'rows': []}
    res['dataset'] = run([sys.executable, 'dataset_tool.py', '--source=synthetic:garments?n=256&resolution=256',
                          f'--dest={data}'], log, budget.limit(40), env)
    if res['dataset'].get('rc') != 0:
        res['ok'] = False
        return res
    common = ['--gpus=1', '--batch=32', '--gamma=2', '--metrics=none', '--kimg=1', '--tick=1', '--snap=1000',
              f'--data={data}']
    for cfg in configs:   # in order of priority: each run gets what it needs while the budget lasts
        outdir = os.path.join(work, f'ours-{cfg}')
        r = run([sys.executable, 'train.py', f'--outdir={outdir}', f'--cfg={cfg}', *common], log,
                budget.limit(TRAIN_RUN_CAP_S, keep=10), env)
        row = {'config': cfg, 'ours': {**r, **last_tick(outdir)}}
        if nvidia is not None:
            nvidia.wait_build(budget.limit(60, keep=30))
            outdir = os.path.join(work, f'nvidia-{cfg}')
            r = run([nvidia.python, os.path.join(nvidia.repo, 'train.py'), f'--outdir={outdir}', f'--cfg={cfg}', *common],
                    log, budget.limit(TRAIN_RUN_CAP_S, keep=10), nvidia.env, cwd=nvidia.repo)
            row['nvidia'] = {**r, **last_tick(outdir)}
            ours, theirs = row['ours'].get('sec_per_kimg'), row['nvidia'].get('sec_per_kimg')
            if ours and theirs:
                row['ratio'] = ours / theirs
                row['meets_target'] = row['ratio'] <= TRAIN_RATIO_TARGET
        res['rows'].append(row)
    res['ok'] = all(r['ours'].get('rc') == 0 and r['ours'].get('sec_per_kimg') for r in res['rows'])
    return res


def step_pytest(work: str, budget: Budget, env: dict) -> dict:
    log = os.path.join(work, 'pytest.log')
    res = run([sys.executable, '-m', 'pytest', '-q', '-m', 'gpu', '-p', 'no:cacheprovider', 'tests'], log,
              budget.limit(120), env)
    res['summary'] = tail(log, 1)
    res['ok'] = res.get('rc') == 0
    return res


def step_e2e(work: str, budget: Budget, env: dict) -> dict:
    root = os.path.join(work, 'e2e')
    log = os.path.join(work, 'e2e.log')
    stop = time.monotonic() + budget.limit(120)
    res: dict = {}
    res['train'] = run([sys.executable, 'train.py', f'--outdir={root}/train', '--cfg=stylegan3-t',
                        '--data=synthetic:garments?n=64&resolution=64', '--gpus=1', '--batch=8', '--gamma=0.5',
                        '--cbase=8192', '--cmax=128', '--kimg=0.032', '--tick=0.016', '--snap=1', '--metrics=none'],
                       log, stop - time.monotonic(), env)
    snapshot = find_latest_snapshot(os.path.join(root, 'train')) if os.path.isdir(os.path.join(root, 'train')) else None
    if snapshot:
        res['gen_images'] = run([sys.executable, 'gen_images.py', f'--network={snapshot}', '--seeds=0-3',
                                 f'--outdir={root}/images', '--device=cuda'], log, stop - time.monotonic(), env)
        images = sorted(glob.glob(os.path.join(root, 'images', '*.png')))
        res['images'] = len(images)
        if images:
            res['invert'] = run([sys.executable, 'invert.py', '--method=project', '--perceptual=none',
                                 f'--network={snapshot}', f'--target={images[0]}', f'--outdir={root}/invert',
                                 '--steps=50', '--device=cuda'], log, stop - time.monotonic(), env)
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


def table(result: dict) -> str:
    env = result['environment']
    lines = [f'# GPU check, run {result["run"]}: {env["gpu"]} (sm_{env["capability"].replace(".", "")}), '
             f'torch {env["torch"]}, CUDA {env["cuda"]}, {env["date"]}, {result["seconds"]:.0f} s; '
             f'ops: {result["ops_backend"]}; NVIDIA: {env["nvidia_repo"] or "not compared"}', '',
             '| step | check | ours | NVIDIA | ratio / target | status |', '|---|---|---|---|---|---|']
    s = result['steps']
    if 'build' in s:
        lines.append(f'| build | CUDA ops build + load + self-test | {s["build"].get("summary", "")} | | | '
                     f'{status(s["build"])} |')
    ops = s.get('ops', {})
    for r in ops.get('rows', []):
        lines.append(f'| ops | {r["op"]} {r["dtype"]} vs reference, rel. error fwd / grad / grad2 ({r["cases"]} cases) '
                     f'| {r["forward"]:.1e} / {r["grad"]:.1e} / {r["grad2"]:.1e} | | | {"ok" if r["ok"] else "FAIL"} |')
    if 'ops' in s and not ops.get('rows'):
        lines.append(f'| ops | kernels vs reference | {ops.get("failure") or ""} | | | {status(ops)} |')
    if 'opbench' in s:
        bench = s['opbench']
        lines.append(f'| opbench | op times ({bench.get("dtype", "")}{", 256 px only" if bench.get("quick") else ""}): '
                     f'table below | | | | {status(bench)} |')
    for r in s.get('generate', {}).get('rows', []):
        ratio = f'{r["speedup"]:.2f}x (>= {GEN_SPEEDUP_TARGET}x), max diff {r["max_abs_diff"]:.1e}' \
            if 'speedup' in r else r.get('nvidia_error', '')
        ok = 'ok' if r.get('meets_speed_target', True) and r.get('identical_to_1_level', True) else 'below target'
        lines.append(f'| generate | {r["config"]} {r["res"]}px batch {r["batch"]} img/s ({r["precision"]}'
                     f'{", CUDA graph" if r.get("cuda_graph") else ""}) | {r["ours_img_per_s"]:.1f} | '
                     f'{fmt(r.get("nvidia_img_per_s"), ".1f")} | {ratio} | {ok} |')
    if 'generate' in s and not s['generate'].get('rows'):
        lines.append(f'| generate | img/s | | | | {status(s["generate"])} |')
    for r in s.get('train', {}).get('rows', []):
        o, n = r['ours'], r.get('nvidia', {})
        ratio = f'{r["ratio"]:.2f} (<= {TRAIN_RATIO_TARGET})' if 'ratio' in r else ''
        ok = ('ok' if r.get('meets_target', True) else 'below target') if o.get('sec_per_kimg') else status(o)
        theirs = f'{fmt(n.get("sec_per_kimg"), ".2f")}, {fmt(n.get("peak_gpu_mem_gb"), ".1f")} GB' if n else '-'
        lines.append(f'| train | {r["config"]} 256px batch 32 s/kimg, peak memory | {fmt(o.get("sec_per_kimg"), ".2f")}, '
                     f'{fmt(o.get("peak_gpu_mem_gb"), ".1f")} GB | {theirs} | {ratio} | {ok} |')
    if 'train' in s and not s['train'].get('rows'):
        lines.append(f'| train | s/kimg | | | | {status(s["train"])} |')
    if 'pytest' in s:
        lines.append(f'| pytest | -m gpu | {s["pytest"].get("summary", "")} | | | {status(s["pytest"])} |')
    if 'e2e' in s:
        e2e = s['e2e']
        parts = ', '.join(f'{k} {fmt(e2e[k].get("seconds"), ".0f")} s (rc {e2e[k].get("rc")})'
                          for k in ('train', 'gen_images', 'invert') if k in e2e)
        lines.append(f'| e2e | train.py -> gen_images.py -> invert.py on CUDA | {parts} | | | {status(e2e)} |')
    text = '\n'.join(lines) + '\n'
    if s.get('opbench', {}).get('table'):
        text += '\n## Op times (ms per call; ratios < 1: faster than NVIDIA)\n\n' + s['opbench']['table'] + '\n'
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


def main() -> int:
    parser = argparse.ArgumentParser(description='GPU acceptance of the CUDA ops (see benchmarks/gpu_check.sh)')
    parser.add_argument('--run', type=int, choices=sorted(RUNS), required=True, help='1: ops; 2: networks')
    parser.add_argument('--out', required=True, help='folder for gpu_check.md, gpu_check.json, gpu_check_logs.tar')
    parser.add_argument('--nvidia-repo', default=os.environ.get('SG3C_NVIDIA_REPO'),
                        help='NVlabs/stylegan3 checkout to compare with (default: $SG3C_NVIDIA_REPO)')
    parser.add_argument('--nvidia-python', default=os.environ.get('SG3C_NVIDIA_PYTHON') or sys.executable,
                        help="interpreter for NVIDIA's code (default: $SG3C_NVIDIA_PYTHON, else this one)")
    parser.add_argument('--budget', type=float, default=None, help='seconds for the whole run (default: 225 / 340)')
    parser.add_argument('--train-configs', default=','.join(TRAIN_CONFIGS),
                        help='run 2: configs to train, in order of priority (default: %(default)s)')
    args = parser.parse_args()
    import torch
    if not torch.cuda.is_available():
        print('gpu_check: needs CUDA', file=sys.stderr)
        return 1
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f'sg3c-gpu-check-{args.run}-')
    budget = Budget(args.budget or BUDGETS[args.run])
    start = time.monotonic()
    nvidia = None
    repo = args.nvidia_repo
    if repo and not os.path.isfile(os.path.join(repo, 'training', 'networks_stylegan3.py')):
        print(f'gpu_check: {repo} is not an NVlabs/stylegan3 checkout; comparing nothing', file=sys.stderr)
    elif repo:
        nvidia = Nvidia(os.path.abspath(repo), args.nvidia_python, work)
        nvidia.start_build()   # from the first second: it takes minutes
    # Acceptance measures the kernels: a silent fallback to the reference ops would measure the wrong thing.
    env = dict(os.environ, SG3C_OPS='cuda', PYTHONUNBUFFERED='1')
    result: dict = {'run': args.run, 'environment': environment(nvidia), 'budget_s': budget.left(), 'steps': {},
                    'seconds': 0.0, 'ops_backend': 'cuda',
                    'nvidia_compat': nvidia.compat if nvidia else None}
    steps = {'build': lambda: step_build(work, budget, env), 'ops': lambda: step_ops(work, budget, env),
             'opbench': lambda: step_opbench(work, budget, env, nvidia),
             'generate': lambda: step_generate(work, budget, env, nvidia),
             'train': lambda: step_train(work, budget, env, nvidia, tuple(c for c in args.train_configs.split(',') if c)),
             'pytest': lambda: step_pytest(work, budget, env), 'e2e': lambda: step_e2e(work, budget, env)}
    try:
        for name in RUNS[args.run]:
            print(f'gpu_check: run {args.run} step {name} ({budget.left():.0f} s of budget left)', flush=True)
            result['steps'][name] = steps[name]()
            if name == 'build' and not result['steps'][name].get('ok'):
                # Still measure the rest, on the reference ops, and say so.
                env['SG3C_OPS'] = result['ops_backend'] = 'ref'
            result['seconds'] = time.monotonic() - start
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
