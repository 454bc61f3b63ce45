"""No function outside tests/ is longer than a reader takes in at once: 100 lines from its `def` to its
last line, docstring and comments included (nested functions count within their parent too)."""
from __future__ import annotations

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
MAX_LINES = 100


def long_functions(root: pathlib.Path, limit: int = MAX_LINES) -> list[str]:
    """'path:name (N lines)' of every function in the .py files under `root` (outside tests/) over `limit`."""
    found = []
    for path in sorted(root.rglob('*.py')):
        rel = path.relative_to(root)
        if rel.parts[0] == 'tests' or any(part.startswith('.') for part in rel.parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f'{rel}:{node.name} ({lines} lines)')
    return found


def test_the_counter_counts_from_def_to_the_last_line(tmp_path):
    body = ''.join(f'    x{i} = {i}\n' for i in range(99))
    (tmp_path / 'ok.py').write_text(f'def ok():\n{body}')                       # 100 lines
    nested = body.replace('    ', '        ')
    (tmp_path / 'long.py').write_text(f'def outer():\n    def inner():\n{nested}        pass\n')
    (tmp_path / 'tests').mkdir()
    (tmp_path / 'tests' / 'test_x.py').write_text(f'def test_long():\n{body}    pass\n')
    assert long_functions(tmp_path) == ['long.py:outer (102 lines)', 'long.py:inner (101 lines)']


def test_no_function_is_over_100_lines():
    found = long_functions(REPO)
    assert not found, ', '.join(found)
