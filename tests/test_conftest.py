"""The suite itself: its skip reasons name no absolute path of the machine that runs it, and its test modules
share code through tests/helpers/ and conftest.py only, never by importing one another."""
import ast
import os
import pathlib
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_missing_fixtures_skip_reason_has_no_absolute_path(tmp_path):
    checkout = tmp_path / 'checkout'
    (checkout / 'tests').mkdir(parents=True)
    shutil.copy(os.path.join(HERE, 'conftest.py'), checkout / 'tests' / 'conftest.py')
    (checkout / 'tests' / 'test_uses_fixtures.py').write_text('def test_it(fixtures_dir):\n    pass\n')
    env = {k: v for k, v in os.environ.items() if k != 'SG3C_FIXTURES'}
    for extra in ({}, {'SG3C_FIXTURES': str(tmp_path / 'nowhere')}):
        r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider', 'tests'],
                           cwd=checkout, env={**env, **extra}, capture_output=True, text=True, timeout=300)
        skipped = [line for line in r.stdout.splitlines() if line.startswith('SKIPPED')]
        assert len(skipped) == 1 and 'fixtures not found' in skipped[0], r.stdout
        reason = skipped[0].split(':', 2)[-1]
        assert not [word for word in reason.split() if os.path.isabs(word.strip('()'))], reason


def test_nvidia_reference_skip_names_the_variable_to_set_not_a_path():
    # It named the folder where one developer's machine keeps NVIDIA's code, instead of the variable to set.
    env = {k: v for k, v in os.environ.items() if k not in ('SG3C_NVIDIA_REPO', 'SG3C_CUDA_PYTHON')}
    r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider', 'tests/test_augment.py',
                        '-k', 'nvidia'], cwd=os.path.dirname(HERE), env=env, capture_output=True, text=True, timeout=600)
    skipped = [line for line in r.stdout.splitlines() if line.startswith('SKIPPED')]
    assert skipped, r.stdout
    for line in skipped:
        reason = line.split(':', 2)[-1]
        assert not [w for w in reason.split() if os.path.isabs(w.strip('()\'",'))], line
        assert 'SG3C_NVIDIA_REPO' in reason, line


def imported_test_modules(tests: pathlib.Path) -> list[str]:
    """'file: name' for each import (read with ast, nothing run) of a test module or conftest in `tests`."""
    forbidden = {p.stem for p in tests.glob('test_*.py')} | {'conftest'}
    found = []
    for path in sorted(tests.rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ''] + [alias.name for alias in node.names]
            elif isinstance(node, ast.Call) and getattr(node.func, 'attr', getattr(node.func, 'id', '')) in (
                    'import_module', '__import__') and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
            else:
                continue
            parts = {part for name in names for part in name.split('.')}
            found += [f'{path.relative_to(tests)}: {name}' for name in sorted(parts & forbidden)]
    return found


def test_no_test_module_imports_another():
    """A test module used as a library runs its own module-level setup (and fixtures) in the importer and ties
    one file's tests to another's internals: shared builders belong in tests/helpers/ or conftest.py."""
    assert imported_test_modules(pathlib.Path(HERE)) == []
