"""The one exception type for mistakes a user can fix."""


class BnnError(Exception):
    """A problem with the user's input or files, stated in one actionable line.

    Command-line entry points print the message (no traceback) and exit with status 2.
    """
