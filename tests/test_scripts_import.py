"""Every script (top level, benchmarks/, pretrained/) imports: a moved or renamed library function must not
leave a script that only fails when somebody runs it."""
import importlib.util
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TOP_LEVEL_MODULES = {'studio.py'}   # the app's model beside app.py: imported, not run
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
    assert hasattr(module, 'main') or path.name in TOP_LEVEL_MODULES
