"""Exceptions for user mistakes: each message names the input and what is wrong."""

__all__ = ["MolsampError", "UnknownSystemError", "SystemFileError", "InputError"]


class MolsampError(Exception):
    """Base class of every error caused by a user's input; the CLI prints it in one line and exits 2."""


class UnknownSystemError(MolsampError, KeyError):
    """A system name that is neither built in nor an existing YAML file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class SystemFileError(MolsampError, ValueError):
    """A malformed system YAML file."""


class InputError(MolsampError, ValueError):
    """Bad positions, paths or options passed to a molsamp function."""
