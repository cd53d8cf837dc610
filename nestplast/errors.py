"""The errors a user can act on. Each concept raises its own subclass of :class:`UserError`; the
command lines (:mod:`nestplast.cli`) print them as one line ``error: ...`` with exit code 2 and no
traceback. Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (a file, an argument, a name): the message says what and where."""


class UsageError(UserError):
    """Bad command-line arguments."""


class UnknownNameError(UserError, KeyError):
    """An unknown name (rule, neuron, parameter); the message lists the available ones.
    Also a ``KeyError``, as a failed look-up."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])
