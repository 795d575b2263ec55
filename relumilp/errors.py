"""Errors raised for bad user input.

Every error a user can cause derives from :class:`RelumilpError`, a ``ValueError``, so API callers can
catch one type and the CLI can print a one-line message (no traceback) and exit with status 2.
"""


class RelumilpError(ValueError):
    """Base class of all user-facing errors: the message says what is wrong and what to do."""


class UnsupportedOperatorError(RelumilpError):
    """A layer, module or operator that relumilp cannot compile."""

    def __init__(self, what: str, supported, hint: str = ""):
        names = ", ".join(sorted(supported))
        message = f"unsupported {what}; supported: {names}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


class InvalidNetworkError(RelumilpError):
    """A network whose weights or shapes are inconsistent (NaN/inf weights, mismatched sizes)."""


class InvalidDomainError(RelumilpError):
    """An input domain that is empty, malformed or does not match the network's input size."""


class ModelFileError(RelumilpError):
    """A model or data file that is missing, unreadable or corrupt."""


class SolveError(RelumilpError):
    """A solve whose answer failed the forward-pass check, or whose problem is malformed."""
