"""The import graph of the tree, read with `ast` (nothing is imported): no cycles, and the packages in
layers that only import downwards. Imports inside functions count too: a deferred import is still a
dependency, only one that fails later. Imports under `if TYPE_CHECKING:` do not, as they never run."""
from __future__ import annotations

import ast
import pathlib
from typing import Iterator, Optional


REPO = pathlib.Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {'tests', '.git', '__pycache__'}


def project_modules(root: pathlib.Path = REPO) -> dict[str, pathlib.Path]:
    """Dotted name -> file, for every .py file of the project outside tests/ (packages by their __init__)."""
    modules = {}
    for path in sorted(root.rglob('*.py')):
        rel = path.relative_to(root)
        if SKIPPED_DIRS & set(rel.parts[:-1]) or any(part.startswith('.') for part in rel.parts):
            continue
        parts = list(rel.with_suffix('').parts)
        if parts[-1] == '__init__':
            parts.pop()
        elif len(parts) == 1 and (root / parts[0] / '__init__.py').exists():
            parts = [rel.name]   # a script beside the package it serves (app.py, app/): `import app` is the package
        if parts:
            modules['.'.join(parts)] = path
    return modules


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, 'test', None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == 'TYPE_CHECKING')
        or (isinstance(test, ast.Attribute) and test.attr == 'TYPE_CHECKING'))


def _import_nodes(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if _is_type_checking_block(child):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _import_nodes(child)


def imported_names(module: str, path: pathlib.Path) -> set[str]:
    """Every dotted name `module` imports, relative imports made absolute; `from a import b` gives both
    `a` and `a.b` (b may be a submodule or an attribute: the caller keeps what exists)."""
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    names = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding='utf-8'), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ''
        if node.level:
            anchor = package.split('.')[:len(package.split('.')) - (node.level - 1)] if package else []
            base = '.'.join(anchor + ([base] if base else []))
        names.add(base)
        names.update(f'{base}.{alias.name}' for alias in node.names if alias.name != '*')
    return {name for name in names if name}


def _resolve(name: str, modules: dict[str, pathlib.Path]) -> Optional[str]:
    """The deepest project module that `name` (a module or module.attribute) lives in."""
    while name:
        if name in modules:
            return name
        name = name.rpartition('.')[0]
    return None


def import_graph(modules: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    graph = {}
    for module, path in modules.items():
        targets = {_resolve(name, modules) for name in imported_names(module, path)}
        # `from pkg import sub` names pkg too; only the deepest module counts, and never the module itself.
        deepest = {t for t in targets if t and not any(o != t and o.startswith(t + '.') for o in targets if o)}
        graph[module] = deepest - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> Optional[list[str]]:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}   # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> Optional[list[str]]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_checker_sees_a_deferred_cycle_and_ignores_type_checking_imports(tmp_path):
    (tmp_path / 'pkg').mkdir()
    (tmp_path / 'pkg' / '__init__.py').write_text('')
    (tmp_path / 'pkg' / 'a.py').write_text('from .b import f\n')
    (tmp_path / 'pkg' / 'b.py').write_text('def f():\n    from pkg import a\n')
    (tmp_path / 'pkg' / 'c.py').write_text('from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import d\n')
    (tmp_path / 'pkg' / 'd.py').write_text('import pkg.c\n')
    graph = import_graph(project_modules(tmp_path))
    assert graph['pkg.a'] == {'pkg.b'} and graph['pkg.b'] == {'pkg.a'}
    assert graph['pkg.c'] == set() and graph['pkg.d'] == {'pkg.c'}
    assert find_cycle(graph) in (['pkg.a', 'pkg.b', 'pkg.a'], ['pkg.b', 'pkg.a', 'pkg.b'])
    (tmp_path / 'pkg' / 'b.py').write_text('def f():\n    pass\n')
    assert find_cycle(import_graph(project_modules(tmp_path))) is None


def test_the_tree_has_no_import_cycle():
    modules = project_modules()
    assert 'data.convert' in modules and 'networks.stylegan3' in modules
    cycle = find_cycle(import_graph(modules))
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


# Bottom to top. Everything else (the scripts, the app/ package that app.py serves, benchmarks/) is the top layer.
LAYERS = ('torch_utils', 'networks', 'data', 'training', 'metrics', 'generation', 'inversion', 'editing',
          'pretrained')
TOP = len(LAYERS)


def package_of(module: str) -> str:
    """The node of the package graph: a package by its name; a top-level module (script) by its own name."""
    return module.split('.')[0]


def layer_of(module: str) -> int:
    package = package_of(module)
    return LAYERS.index(package) if package in LAYERS else TOP


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f'{module} imports {target}' for module, targets in graph.items() for target in targets
                  if layer_of(target) > layer_of(module))


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(package_of(module), set()).update(package_of(t) for t in targets)
    return {package: targets - {package} for package, targets in packages.items()}


def test_the_layer_checker_sees_a_deferred_upward_import_and_a_cycle_of_scripts(tmp_path):
    for package in ('networks', 'pretrained'):
        (tmp_path / package).mkdir()
        (tmp_path / package / '__init__.py').write_text('')
    (tmp_path / 'networks' / 'snapshot.py').write_text('def resolve():\n    from pretrained import MODELS\n')
    (tmp_path / 'pretrained' / 'models.py').write_text('from networks.snapshot import resolve\n')
    (tmp_path / 'app.py').write_text('import studio\n')
    (tmp_path / 'studio.py').write_text('from pretrained.models import resolve\n')
    graph = import_graph(project_modules(tmp_path))
    assert upward_imports(graph) == ['networks.snapshot imports pretrained']
    assert find_cycle(package_graph(graph)) in (['networks', 'pretrained', 'networks'],
                                                ['pretrained', 'networks', 'pretrained'])
    (tmp_path / 'networks' / 'snapshot.py').write_text('def resolve():\n    pass\n')
    (tmp_path / 'studio.py').write_text('import app\n')
    graph = import_graph(project_modules(tmp_path))
    assert upward_imports(graph) == [] and find_cycle(package_graph(graph)) in (['app', 'studio', 'app'],
                                                                                ['studio', 'app', 'studio'])


def test_no_package_imports_a_higher_layer():
    """torch_utils, networks, data (training images), then training, metrics, generation, inversion, editing,
    then pretrained, then the scripts and the app: a package may import its own layer and those below it,
    lazily or not."""
    modules = project_modules()
    assert {package_of(m) for m in modules} >= set(LAYERS) | {'app', 'train'}
    assert {'app.py', 'app.page', 'app.studio'} <= set(modules)   # the entry script and its package, both seen
    offenders = upward_imports(import_graph(modules))
    assert not offenders, '; '.join(offenders)


def test_the_package_graph_has_no_cycle():
    cycle = find_cycle(package_graph(import_graph(project_modules())))
    assert cycle is None, 'package cycle: ' + ' -> '.join(cycle)
