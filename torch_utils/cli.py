"""What every command-line script shares: the user-facing error type, finite-number options, and the
entry point that turns a failure into one line and exit code 1.

This module imports neither torch nor numpy, so that light scripts (dataset_tool.py) stay light.
"""
from __future__ import annotations

import difflib
import math
import os
import sys
import traceback
from typing import Any, Callable, Optional

import click

from . import host_memory

DEBUG_ENV = 'SG3C_DEBUG'


class UserError(Exception):
    """A failure caused by the input or the environment, not by a bug: its message is the whole story,
    on one line, naming the file (or option) and the problem. Every error class of the toolkit that a
    user can trigger derives from it."""


class FiniteFloat(click.FloatRange):
    """A float option that refuses nan and +-inf (which would silently poison images and JSON stats)."""

    name = 'float'

    def _describe_range(self) -> str:
        return super()._describe_range() if self.min is not None or self.max is not None else 'finite'

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f'{value!r} is not a finite number', param, ctx)
        return number


def finite_float(min: Optional[float] = None, max: Optional[float] = None, **kwargs: Any) -> FiniteFloat:   # noqa: A002
    return FiniteFloat(min=min, max=max, **kwargs)


def parse_finite(text: str, what: str = 'value') -> float:
    """float(text), refusing non-finite numbers; for options that hold several numbers."""
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f'{what}: {text!r} is not a number') from None
    if not math.isfinite(number):
        raise ValueError(f'{what}: {text!r} is not a finite number')
    return number


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, '') not in ('', '0')


def describe(error: BaseException) -> str:
    """One line for an expected failure: OSErrors name their file, others carry their own message."""
    if isinstance(error, OSError) and error.strerror:
        where = error.filename if error.filename is not None else ''
        return f'{where}: {error.strerror}' if where else error.strerror
    text = str(error).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in '"\'':   # KeyError quotes its message
        text = text[1:-1]
    return ' '.join(text.split()) or type(error).__name__


EXPECTED: tuple[type[BaseException], ...] = (UserError, OSError)


def run(command: Callable[..., Any], expected: tuple[type[BaseException], ...] = ()) -> None:
    """Run a click command as a script. Expected failures (UserError, OSError, and `expected`) print
    `error: <one line>` and exit 1; with SG3C_DEBUG=1 (or --debug before the other options) the
    traceback is shown too. Anything else is a bug and keeps its traceback. Freed host memory is kept for
    reuse (host_memory.py): the scripts run networks whose large activations would otherwise come back from
    the kernel as fresh, page-faulting memory on every call."""
    host_memory.retain_freed_memory()
    if '--debug' in sys.argv[1:]:
        sys.argv.remove('--debug')
        os.environ[DEBUG_ENV] = '1'
    try:
        command(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo('Aborted!', err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except EXPECTED + expected as e:
        if debug_enabled():
            traceback.print_exc()
        click.echo(f'error: {describe(e)}', err=True)
        sys.exit(1)


def check_output_path(path: str, option: str, folder: bool = True) -> None:
    """Before any work: that a script can write `path` given as `option` (a folder it writes into, made if
    missing, or with `folder=False` a file): no part of it that exists is a file where a folder must be, and
    a file is not an existing folder. Otherwise one line naming the option and the file in the way."""
    path = os.fspath(path)
    if not folder and os.path.isdir(path):
        raise UserError(f'{option}={path} is a folder, not a file')
    here = os.path.normpath(path) if folder else os.path.dirname(os.path.normpath(path))
    while here and here != os.path.dirname(here):
        if os.path.lexists(here):
            if not os.path.isdir(here):
                where = f'{option}={path}' + ('' if here == os.path.normpath(path) else f': {here}')
                raise UserError(f'{where} is a file, not a folder')
            return
        here = os.path.dirname(here)


class Spellings(click.Option):
    """An option that also answers to other spellings (NVIDIA's, a seed project's) that --help does not list:
    the help shows its first name only."""

    def get_help_record(self, ctx: click.Context) -> Optional[tuple[str, str]]:
        names, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = names


class Parsed(click.ParamType):
    """A click type from a parsing function: its ValueError becomes a bad-parameter message naming the option."""

    def __init__(self, parser: Callable[[str], Any], metavar: str = 'TEXT'):
        self.parser = parser
        self.name = metavar

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return self.name

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parser(value)
        except ValueError as e:
            self.fail(describe(e), param, ctx)


def did_you_mean(word: str, candidates: Any) -> str:
    """' (did you mean X?)' for the candidate closest to a mistyped word, or '' when none is close."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f' (did you mean {close[0]}?)' if close else ''


def say(line: str) -> None:
    """Print a script's message: warnings and notes to stderr, results to stdout."""
    click.echo(line, err=line.startswith(('warning:', 'note:')))
