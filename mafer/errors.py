"""The one exception type for problems the user can fix (bad paths, bad files, bad options)."""


class MaferError(Exception):
    """An expected, user-fixable problem.

    The message must name the file (and line, where there is one) and say what was
    expected. The CLI prints it without a traceback and exits with status 2.
    """


class MaferWarning(UserWarning):
    """Something the user should know about a result that is not an error (the CLI prints it as one line)."""
