"""Exceptions. Every error a user can cause is an :class:`LlmzipError`; the CLI prints its
message as one line and exits 1 (2 for a :class:`UsageError`). Anything else is a bug."""


class LlmzipError(Exception):
    """An error with a message fit to show the user as one line."""


class ModelError(LlmzipError):
    """The model cannot be found, loaded or used."""


class FormatError(LlmzipError):
    """The input is not an llmzip container, or it is corrupt or truncated."""


class ChecksumError(FormatError):
    """Decoded data does not match the checksum stored with it."""


class MismatchError(LlmzipError):
    """The file was made with another model or numeric environment than the one at hand."""


class UsageError(LlmzipError):
    """Flags that do not fit together (exit status 2, like click's usage errors)."""
