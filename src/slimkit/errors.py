"""Errors a user can cause; the CLI prints them as one line, never a traceback."""


class SlimkitError(Exception):
    """Base of slimkit's own errors."""


class UserError(SlimkitError, ValueError):
    """Bad input from the user: a wrong ratio, an unknown name, an unreadable file."""


class FormatError(UserError):
    """A file that is corrupt, truncated or not of the expected format; names the file and the
    field at fault."""


class MissingFileError(UserError, FileNotFoundError):
    """An input file that does not exist (also a FileNotFoundError, for older callers)."""
