"""Errors meant for the person using the tool, with what to do about them."""


class TLStudioError(Exception):
    """An error whose message is written for the user, never a traceback.

    Args:
        message: What was wrong, in plain words.
        hint: What to try next.
    """

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class DatasetError(TLStudioError):
    """The images given cannot be used as a training or test set."""


class WeightsError(TLStudioError):
    """No usable weights could be found or loaded for a backbone."""


class RunError(TLStudioError):
    """A run folder is missing, incomplete or unreadable."""


class UsageError(TLStudioError):
    """A command was given settings it cannot use: bad usage (exit code 2 on the CLI)."""
