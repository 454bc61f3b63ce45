"""Every script (top level, benchmarks/, pretrained/) imports: a moved or renamed library function must not
leave a script that only fails when somebody runs it."""
import importlib.util
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# Imported, not run: the Chromium driver of the app's latency benchmark and tests; the SASS interpreter
# that kernel_cost.py runs.
NOT_SCRIPTS = {'browser.py', 'sass_trace.py'}
SCRIPTS = sorted(p for folder in (REPO, REPO / 'benchmarks', REPO / 'pretrained') for p in folder.glob('*.py')
                 if p.name != '__init__.py')


@pytest.mark.parametrize('path', SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_script_imports(path, monkeypatch):
    if path.name == 'app.py':
        pytest.importorskip('gradio')
    if path.parent.name == 'pretrained':   # a package: its scripts and modules import each other relatively
        importlib.import_module(f'pretrained.{path.stem}')
        return
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location(f'_script_{path.parent.name}_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    assert hasattr(module, 'main') or path.name in NOT_SCRIPTS


def test_a_benchmark_imported_by_another_leaves_the_packages_first():
    # app_latency.py imports generate.py, which once put benchmarks/ at the front of sys.path: the app's
    # `import inversion` then ran benchmarks/inversion.py and the latency benchmark died at its first model.
    import subprocess
    code = 'import app_latency, inversion, metrics; print(inversion.__file__); print(metrics.__file__)'
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO / 'benchmarks', capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [pathlib.Path(line).relative_to(REPO).as_posix() for line in result.stdout.split()] == \
        ['inversion/__init__.py', 'metrics/__init__.py']
