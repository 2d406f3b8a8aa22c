"""Errors a person can act on.

Every exception the app shows to a visitor derives from :class:`PythiaError`; its
message is written for people (what was wrong, what is valid) and never contains
a stack trace or a file-system path of the server.
"""


class PythiaError(Exception):
    """Base class for errors whose message is safe and useful to show a user.

    ``param``: the argument that was refused, when one was (the API surfaces name it, e.g. OpenAI's ``param``).
    """

    param: str | None = None

    def naming(self, param: str | None) -> "PythiaError":
        """This error, saying which argument it is about (unless it already says)."""
        if self.param is None:
            self.param = param
        return self


class InvalidParameter(PythiaError, ValueError):
    """A sampling or request parameter is out of range or of the wrong type."""


class UnknownModel(PythiaError, KeyError):
    """The model name is not in the catalog."""

    def __str__(self) -> str:  # KeyError would repr() the message with quotes
        return str(self.args[0]) if self.args else ""


class InvalidRevision(PythiaError, ValueError):
    """The revision is not ``main`` or a Pythia training step."""


class ModelTooLarge(PythiaError, MemoryError):
    """The model cannot fit in the memory available for it."""


class ModelUnavailable(PythiaError, RuntimeError):
    """The model could not be downloaded, converted or loaded."""


class ServerBusy(PythiaError, RuntimeError):
    """Too many requests are waiting; the caller should try again later."""
