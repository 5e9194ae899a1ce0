"""The one exception type for mistakes a user can fix."""


class BnnError(Exception):
    """A problem with the user's input or files, stated in one actionable line.

    Command-line entry points print the message (no traceback) and exit with status 2; IPython
    and Jupyter show it as that one line too (through ``_render_traceback_``).
    """

    def _render_traceback_(self):
        return [f"error: {self}"]
