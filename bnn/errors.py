"""The exception types that end a command in one line, and the exit status each gives."""


class BnnError(Exception):
    """A problem with the user's input or files, stated in one actionable line.

    Command-line entry points print the message (no traceback) and exit with ``exit_status``
    (2: bad input); IPython and Jupyter show it as that one line too (through
    ``_render_traceback_``).
    """

    exit_status = 2

    def _render_traceback_(self):
        return [f"error: {self}"]


class RunIOError(BnnError):
    """Writing the run directory failed mid-run (disk full, device gone): not the user's input."""

    exit_status = 1


class TrainingDiverged(BnnError):
    """The loss became infinite or NaN; training stopped with the last finite checkpoint kept."""

    exit_status = 3
