"""The one error type of the soundnet library, and text safe to print."""


class SoundnetError(Exception):
    """A problem with the user's input, files or configuration.

    The message is one line that names the file (and line, for tables) and the
    problem; the command line prints it as is, without a traceback.
    """


class UsageError(SoundnetError):
    """Options that cannot work together (the command line exits 2, as for a bad option)."""


def printable(text: str) -> str:
    """``text`` with bytes that are not UTF-8 (a file name's, kept by Python as
    surrogates) written as ``\\xNN``, and tabs and line breaks as ``\\t``, ``\\n``,
    ``\\r``: one line that any UTF-8 output takes, and no name can forge another line."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
