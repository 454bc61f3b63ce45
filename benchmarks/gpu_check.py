#!/usr/bin/env python3
"""The GPU acceptance of issue 13 in one run (called by benchmarks/gpu_check.sh; see there for usage).

Steps, in the order they run (correctness before speed, so that a short budget still answers it):
  1. ops        build the CUDA ops and compare them with the reference ops (benchmarks/op_compare.py:
                forward, gradients, gradients of gradients, float32 and float16, random geometries);
  2. pytest     every test marked gpu;
  5. e2e        a short train.py --gpus=1 run (--metrics=none), then gen_images.py and
                invert.py --method=project --perceptual=none on its snapshot, on CUDA;
  3. generate   img/s for stylegan2, stylegan3-t, stylegan3-r at 256 and 1024, batch 1 and 32, float16 where
                NVIDIA uses it, side by side with NVIDIA's code on the same weights when a checkout is given;
  4. train      s/kimg and peak GPU memory per config at 256, default widths, batch 32, over a few ticks;
                NVIDIA's train.py on the same data (for stylegan3-t and -r) when a checkout is given.
Every step runs in its own process under a time limit drawn from one overall budget; a step (or an
NVIDIA side) that the budget no longer allows is reported as skipped. Writes gpu_check.md (the table),
gpu_check.json (everything) and a log per step into the output folder.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from networks.snapshot import find_latest_snapshot   # noqa: E402

MIN_STEP_S = 5                # a step given less time than this is skipped
CONFIGS = ('stylegan2', 'stylegan3-t', 'stylegan3-r')
# Targets of issue 13.
TRAIN_RATIO_TARGET = 0.7      # our s/kimg over NVIDIA's, at most (stylegan3-t/-r)
GEN_SPEEDUP_TARGET = 1.5      # our img/s over NVIDIA's, at least
IMAGE_LEVEL = 2 / 255         # one 8-bit level of an image in [-1, 1]


PLANNED_BUDGET_S = 450       # the steps' caps and reserves are sized for this


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        # A shorter budget shrinks the reserves for later steps in proportion, so that the first steps
        # (correctness: the kernel build alone takes minutes) are not the ones starved.
        self.scale = min(1.0, seconds / PLANNED_BUDGET_S)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def limit(self, cap: float, keep: float = 0) -> float:
        """Seconds a step may take: at most `cap`, leaving `keep` (scaled to the budget) for the steps after it."""
        return max(0.0, min(cap, self.left() - keep * self.scale))


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


def environment(nvidia_repo: Optional[str]) -> dict:
    import torch
    props = torch.cuda.get_device_properties(0)
    return {'gpu': props.name, 'gpu_memory_gb': round(props.total_memory / 2 ** 30, 1),
            'capability': '.'.join(map(str, torch.cuda.get_device_capability(0))), 'torch': torch.__version__,
            'cuda': torch.version.cuda, 'python': platform.python_version(), 'nvidia_repo': nvidia_repo}


# ------------------------------------------------------------------ steps

def step_ops(out: str, budget: Budget, env: dict) -> dict:
    path = os.path.join(out, 'op_compare.json')
    res = run([sys.executable, 'benchmarks/op_compare.py', '--cases=30', f'--json={path}'],
              os.path.join(out, 'step1_ops.log'), budget.limit(300, keep=240), env)
    if os.path.isfile(path):
        with open(path) as f:
            res.update(json.load(f))
    res['ok'] = res.get('rc') == 0
    return res


def step_pytest(out: str, budget: Budget, env: dict) -> dict:
    log = os.path.join(out, 'step2_pytest.log')
    res = run([sys.executable, '-m', 'pytest', '-q', '-m', 'gpu', '-p', 'no:cacheprovider', 'tests'], log,
              budget.limit(120, keep=200), env)
    res['summary'] = tail(log, 1)
    res['ok'] = res.get('rc') == 0
    return res


def step_e2e(out: str, budget: Budget, env: dict) -> dict:
    work = os.path.join(out, 'e2e')
    log = os.path.join(out, 'step5_e2e.log')
    limit = budget.limit(180, keep=150)
    stop = time.monotonic() + limit
    res: dict = {}
    res['train'] = run([sys.executable, 'train.py', f'--outdir={work}/train', '--cfg=stylegan3-t',
                        '--data=synthetic:garments?n=64&resolution=64', '--gpus=1', '--batch=8', '--gamma=0.5',
                        '--cbase=8192', '--cmax=128', '--kimg=0.032', '--tick=0.016', '--snap=1', '--metrics=none'],
                       log, stop - time.monotonic(), env)
    snapshot = find_latest_snapshot(os.path.join(work, 'train')) if os.path.isdir(os.path.join(work, 'train')) else None
    res['snapshot'] = snapshot and os.path.relpath(snapshot, out)
    if snapshot:
        res['gen_images'] = run([sys.executable, 'gen_images.py', f'--network={snapshot}', '--seeds=0-3',
                                 f'--outdir={work}/images', '--device=cuda'], log, stop - time.monotonic(), env)
        images = sorted(glob.glob(os.path.join(work, 'images', '*.png')))
        res['images'] = len(images)
        if images:
            res['invert'] = run([sys.executable, 'invert.py', '--method=project', '--perceptual=none',
                                 f'--network={snapshot}', f'--target={images[0]}', f'--outdir={work}/invert',
                                 '--steps=50', '--device=cuda'], log, stop - time.monotonic(), env)
            res['inverted_files'] = len(glob.glob(os.path.join(work, 'invert', '**', '*.*'), recursive=True))
    res['ok'] = all(res.get(k, {}).get('rc') == 0 for k in ('train', 'gen_images', 'invert')) \
        and res.get('images', 0) == 4 and res.get('inverted_files', 0) > 0
    return res


def step_generate(out: str, budget: Budget, env: dict, nvidia_repo: Optional[str]) -> dict:
    res: dict = {'runs': {}, 'rows': []}
    for i, size in enumerate((256, 1024)):
        path = os.path.join(out, f'generate_{size}.jsonl')
        cmd = [sys.executable, 'benchmarks/generate.py', f'--configs={",".join(CONFIGS)}', f'--res={size}',
               '--batch=1,32', '--repeats=3', '--precision=mixed', '--device=cuda',
               f'--compare-nvidia={nvidia_repo or "none"}', f'--json-out={path}']
        share = budget.limit(240 if nvidia_repo else 120, keep=120) / (2 - i)
        res['runs'][size] = run(cmd, os.path.join(out, 'step3_generate.log'), share, env)
        if os.path.isfile(path):
            with open(path) as f:
                res['rows'] += [json.loads(line) for line in f if line.strip()]
    for row in res['rows']:
        if 'speedup' in row:
            row['meets_speed_target'] = row['speedup'] >= GEN_SPEEDUP_TARGET
            row['identical_to_1_level'] = row['max_abs_diff'] <= IMAGE_LEVEL
    res['ok'] = all(r.get('rc') == 0 for r in res['runs'].values()) and len(res['rows']) == 2 * 2 * len(CONFIGS)
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


def step_train(out: str, budget: Budget, env: dict, nvidia_repo: Optional[str]) -> dict:
    log = os.path.join(out, 'step4_train.log')
    work = tempfile.mkdtemp(prefix='sg3c-gpu-check-')
    data = os.path.join(work, 'garments256.zip')
    res: dict = {'rows': []}
    res['dataset'] = run([sys.executable, 'dataset_tool.py', '--source=synthetic:garments?n=512&resolution=256',
                          f'--dest={data}'], log, budget.limit(60), env)
    if res['dataset'].get('rc') != 0:
        res['ok'] = False
        return res
    common = ['--gpus=1', '--batch=32', '--gamma=1', '--metrics=none', f'--data={data}']
    for i, cfg in enumerate(CONFIGS):
        outdir = os.path.join(work, f'ours-{cfg}')
        # tick 0 is the first step (start-up); the last tick's s/kimg is the measurement
        r = run([sys.executable, 'train.py', f'--outdir={outdir}', f'--cfg={cfg}', *common, '--kimg=0.512',
                 '--tick=0.256', '--snap=1000'], log, budget.limit(150, keep=20) / (len(CONFIGS) - i), env)
        res['rows'].append({'config': cfg, 'ours': {**r, **last_tick(outdir)}})
    if nvidia_repo:
        nv_env = {k: v for k, v in env.items() if k != 'PYTHONPATH'}
        for row in res['rows']:
            if row['config'] == 'stylegan2':
                continue   # the targets concern stylegan3-t and -r; the budget goes there
            outdir = os.path.join(work, f'nvidia-{row["config"]}')
            # NVIDIA's ticks are whole kimg: tick 0 (first step) and tick 1 (1 kimg later)
            r = run([sys.executable, os.path.join(nvidia_repo, 'train.py'), f'--outdir={outdir}',
                     f'--cfg={row["config"]}', *common, '--kimg=1', '--tick=1', '--snap=1000'], log,
                    budget.limit(200), nv_env, cwd=nvidia_repo)
            row['nvidia'] = {**r, **last_tick(outdir)}
            ours, theirs = row['ours'].get('sec_per_kimg'), row['nvidia'].get('sec_per_kimg')
            if ours and theirs:
                row['ratio'] = ours / theirs
                row['meets_target'] = row['ratio'] <= TRAIN_RATIO_TARGET
    res['ok'] = all(r['ours'].get('rc') == 0 and r['ours'].get('sec_per_kimg') for r in res['rows'])
    res['workdir'] = work
    return res


# ------------------------------------------------------------------ report

def fmt(value, spec: str = '.3g', none: str = '-') -> str:
    return none if value is None else format(value, spec)


def status(res: dict) -> str:
    if res.get('skipped'):
        return 'skipped'
    return 'ok' if res.get('ok') else 'FAIL'


def table(result: dict) -> str:
    env = result['environment']
    lines = [f'# GPU check: {env["gpu"]} (sm_{env["capability"].replace(".", "")}), torch {env["torch"]}, '
             f'CUDA {env["cuda"]}, {result["seconds"]:.0f} s; ops: {result["ops_backend"]}; '
             f'NVIDIA: {env["nvidia_repo"] or "not compared"}', '',
             '| step | check | ours | NVIDIA | ratio / target | status |', '|---|---|---|---|---|---|']
    s = result['steps']
    ops = s.get('ops', {})
    lines.append(f'| 1 | CUDA ops build+load (s) | {fmt(ops.get("build_or_load_s"))} | | | '
                 f'{"ok" if ops.get("rows") else "FAIL: " + str(ops.get("failure") or tail_note(ops))} |')
    for r in ops.get('rows', []):
        lines.append(f'| 1 | {r["op"]} {r["dtype"]} vs reference, max rel. error fwd / grad / grad2 ({r["cases"]} cases) '
                     f'| {r["forward"]:.1e} / {r["grad"]:.1e} / {r["grad2"]:.1e} | | | {"ok" if r["ok"] else "FAIL"} |')
    pt = s.get('pytest', {})
    lines.append(f'| 2 | pytest -m gpu | {pt.get("summary", "")} | | | {status(pt)} |')
    for num, title, name, line in (('3', 'generation speed', 'generate', generate_line),
                                   ('4', 'training speed', 'train', train_line)):
        res = s.get(name, {})
        lines += [line(r) for r in res.get('rows', [])] or [f'| {num} | {title} | | | | {status(res)} |']
    e2e = s.get('e2e', {})
    parts = ', '.join(f'{k} {fmt(e2e[k].get("seconds"), ".0f")} s (rc {e2e[k].get("rc")})'
                      for k in ('train', 'gen_images', 'invert') if k in e2e)
    lines.append(f'| 5 | train.py -> gen_images.py -> invert.py on CUDA | {parts} | | | {status(e2e)} |')
    return '\n'.join(lines) + '\n'


def generate_line(r: dict) -> str:
    ratio = f'{r["speedup"]:.2f}x (>= {GEN_SPEEDUP_TARGET}x), max diff {r["max_abs_diff"]:.1e}' \
        if 'speedup' in r else r.get('nvidia_error', '')
    ok = r.get('meets_speed_target', True) and r.get('identical_to_1_level', True)
    return (f'| 3 | generate {r["config"]} {r["res"]}px batch {r["batch"]} (img/s, {r["precision"]}) | '
            f'{r["ours_img_per_s"]:.1f} | {fmt(r.get("nvidia_img_per_s"), ".1f")} | {ratio} | '
            f'{"ok" if ok else "below target"} |')


def train_line(r: dict) -> str:
    o, n = r['ours'], r.get('nvidia', {})
    ratio = f'{r["ratio"]:.2f} (<= {TRAIN_RATIO_TARGET})' if 'ratio' in r else ''
    if not o.get('sec_per_kimg'):
        ok = status(o)
    else:
        ok = 'ok' if r.get('meets_target', True) else 'below target'
    theirs = f'{fmt(n.get("sec_per_kimg"), ".2f")}, {fmt(n.get("peak_gpu_mem_gb"), ".1f")} GB' if n else '-'
    return (f'| 4 | train {r["config"]} 256px batch 32 (s/kimg, peak GB) | {fmt(o.get("sec_per_kimg"), ".2f")}, '
            f'{fmt(o.get("peak_gpu_mem_gb"), ".1f")} GB | {theirs} | {ratio} | {ok} |')


def tail_note(res: dict) -> str:
    return 'timed out' if res.get('timed_out') else (res.get('skipped') or f'rc {res.get("rc")}')


def main() -> int:
    parser = argparse.ArgumentParser(description='GPU acceptance of issue 13 (see benchmarks/gpu_check.sh)')
    parser.add_argument('--out', required=True, help='folder for gpu_check.md, gpu_check.json and the logs')
    parser.add_argument('--nvidia-repo', default=os.environ.get('SG3C_NVIDIA_REPO'),
                        help='NVlabs/stylegan3 checkout for the side-by-side runs (default: $SG3C_NVIDIA_REPO)')
    parser.add_argument('--budget', type=float, default=PLANNED_BUDGET_S, help=f'seconds for all steps together (default {PLANNED_BUDGET_S})')
    parser.add_argument('--steps', default='ops,pytest,e2e,generate,train', help='comma list of steps to run')
    args = parser.parse_args()
    import torch
    if not torch.cuda.is_available():
        print('gpu_check: needs CUDA', file=sys.stderr)
        return 1
    nvidia_repo = args.nvidia_repo
    if nvidia_repo and not os.path.isfile(os.path.join(nvidia_repo, 'training', 'networks_stylegan3.py')):
        print(f'gpu_check: {nvidia_repo} is not an NVlabs/stylegan3 checkout; comparing nothing', file=sys.stderr)
        nvidia_repo = None
    nvidia_repo = nvidia_repo and os.path.abspath(nvidia_repo)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    # Acceptance measures the kernels: a silent fallback to the reference ops would measure the wrong thing.
    env = dict(os.environ, SG3C_OPS='cuda', PYTHONUNBUFFERED='1')
    budget = Budget(args.budget)
    start = time.monotonic()
    result: dict = {'environment': environment(nvidia_repo), 'budget_s': args.budget, 'steps': {}, 'seconds': 0.0,
                    'ops_backend': 'cuda'}
    wanted = [s.strip() for s in args.steps.split(',') if s.strip()]
    steps = {'ops': lambda: step_ops(out, budget, env), 'pytest': lambda: step_pytest(out, budget, env),
             'e2e': lambda: step_e2e(out, budget, env),
             'generate': lambda: step_generate(out, budget, env, nvidia_repo),
             'train': lambda: step_train(out, budget, env, nvidia_repo)}
    for name in wanted:
        print(f'gpu_check: step {name} ({budget.left():.0f} s of budget left)', flush=True)
        result['steps'][name] = steps[name]()
        if name == 'ops' and not result['steps'][name].get('ok'):
            # Still measure the rest, on the reference ops, and say so.
            env['SG3C_OPS'] = result['ops_backend'] = 'ref'
        result['seconds'] = time.monotonic() - start
        with open(os.path.join(out, 'gpu_check.json'), 'w') as f:   # after every step: a kill keeps the rest
            json.dump(result, f, indent=1, default=str)
    report = table(result)
    with open(os.path.join(out, 'gpu_check.md'), 'w') as f:
        f.write(report)
    print(report)
    return 0 if all(r.get('ok') for r in result['steps'].values()) else 1


if __name__ == '__main__':
    sys.exit(main())
