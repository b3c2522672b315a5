"""The one error type of the soundnet library."""


class SoundnetError(Exception):
    """A problem with the user's input, files or configuration.

    The message is one line that names the file (and line, for tables) and the
    problem; the command line prints it as is, without a traceback.
    """


class UsageError(SoundnetError):
    """Options that cannot work together (the command line exits 2, as for a bad option)."""
