"""What jepalab tells the user instead of a traceback.

A `UserError` is bad input or a missing piece on the user's side: a key, value, file, run
directory or install extra that cannot be used; its message names it and says what would
be valid. The command line prints the message and exits 2. Anything else that escapes is a
bug in jepalab: the command line shows its traceback and asks for a report.
Each error is also the built-in type a library caller would expect (ValueError, KeyError,
ModuleNotFoundError), so catching those keeps working.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input on the user's side; the message says what and what would be valid."""


class RunKindError(UserError, ValueError):
    """A run directory or file of another kind than the command needs (an image encoder
    given to `plan`, a world model given to `probe`, a file that is not jepalab's)."""


class MissingExtra(UserError, ModuleNotFoundError):
    """An optional dependency is not installed; the message names the pip extra."""


class DeviceError(UserError, RuntimeError):
    """The device asked for (train.device) is not there, or this torch build lacks it."""


class UnknownName(UserError, KeyError):
    """A name (environment, policy, planner) that is not one of the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""
