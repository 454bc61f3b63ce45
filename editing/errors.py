"""The one error type of the editing package: bad directions files, latents files, edit specs, layer ranges.
It is a UserError (scripts print it as one line) and a ValueError (what callers of the parsers expect)."""
from torch_utils.cli import UserError


class EditingError(UserError, ValueError):
    pass


class UnknownDirection(EditingError, KeyError):
    """A direction name that the directions file does not hold."""

    def __str__(self) -> str:   # KeyError would quote the message
        return str(self.args[0]) if self.args else ''
