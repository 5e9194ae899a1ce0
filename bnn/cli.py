"""The command-line conventions that every bnn entry point shares.

``run_bnn.py``, ``data/download_data.py``, ``python -m bnn.report``, ``python -m bnn.pack`` and
``python -m bnn.summary`` all build their parser with :class:`Parser` and run through
:func:`run`, so they behave alike:

* ``--help`` is instant: this module imports only the standard library, and entry points import
  TensorFlow, Keras or requests inside their ``main`` function, after parsing;
* the same names for the same things: ``--run_dir``, ``--data_dir``, ``--which``, ``--out_dir``;
* TensorFlow's C++ start-up lines (absl, oneDNN, CUDA probing) are held back
  (:func:`load_keras`), so a command's output starts with its own first line;
* usage errors and bad values are one line, ``error: ...``, with exit status 2;
* every other failure is one line too, with the exit status of its kind (:data:`EXIT_STATUS`);
* an output path that cannot be written is reported before any work is done
  (:func:`output_dir`, :func:`output_file`).

Exit status (the same for every entry point):

===  ==========================================================================================
0    success
1    an outside failure that retrying may fix: the network, a full disk, an I/O error
2    bad input: a usage error, a bad flag value, a missing or damaged file, an unwritable path
3    training diverged (the loss became infinite or NaN)
130  interrupted (Ctrl-C); a training run resumes when the same command is run again
===  ==========================================================================================
"""

import argparse
import contextlib
import errno
import math
import os
import re
import sys
import tempfile
from pathlib import Path

SEED_LIMIT = 2**32  # numpy, TensorFlow and JAX seeds are unsigned 32-bit integers

EXIT_OK = 0
EXIT_OUTSIDE = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130

EXIT_STATUS = {
    EXIT_OK: "success",
    EXIT_OUTSIDE: "an outside failure that retrying may fix (network, full disk, I/O error)",
    EXIT_BAD_INPUT: "bad input (usage, a flag's value, a missing or damaged file, an unwritable path)",
    EXIT_DIVERGED: "training diverged",
    EXIT_INTERRUPTED: "interrupted",
}

EPILOG = ("Exit status: 0 success; 1 an outside failure that retrying may fix (network, full "
          "disk); 2 bad input (usage, a flag's value, a missing or damaged file, an unwritable "
          "path); 3 training diverged; 130 interrupted. Errors are one line on stderr starting "
          "with 'error:'.")


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with bnn's conventions.

    Parameters
    ----------
    prog : str
        The program name as the user types it (``"run_bnn.py"``, ``"python -m bnn.report"``).
    description : str
        One line on what the program does.
    **kwargs
        Passed to ``argparse.ArgumentParser``; the epilog defaults to the exit-status table.
    """

    def __init__(self, prog, description, **kwargs):
        kwargs.setdefault("epilog", EPILOG)
        super().__init__(prog=prog, description=description, **kwargs)

    def error(self, message):
        # argparse prints the whole usage block before its message; one line is easier to read.
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def run(main, argv=None, interrupted="interrupted"):
    """Run ``main(argv)`` and turn every expected failure into one line and an exit status.

    Parameters
    ----------
    main : callable
        Takes ``argv`` and returns an exit status (or None for 0). Exceptions that carry an
        ``exit_status`` attribute (:class:`bnn.errors.BnnError` and its kin) are printed as
        ``error: <message>``; ``OSError`` is an outside failure (status 1) unless it says a path
        is missing, not writable or too long (status 2).
    argv : list of str, optional
        The arguments; ``sys.argv[1:]`` by default.
    interrupted : str
        The line printed on Ctrl-C (exit status 130).

    Returns
    -------
    int
        The exit status, for ``sys.exit``.
    """
    try:
        status = main(argv)
    except SystemExit as e:  # --help, or a usage error that Parser.error has printed
        return e.code if isinstance(e.code, int) else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - only expected kinds are caught below
        status = getattr(e, "exit_status", None)
        if status is None and isinstance(e, OSError):
            status = EXIT_BAD_INPUT if e.errno in _BAD_INPUT_ERRNOS else EXIT_OUTSIDE
        if status is None:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return status
    return EXIT_OK if status is None else status


_BAD_INPUT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG,
                     errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def _one_line(e):
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.strerror}: {e.filename}"
    return " ".join(str(e).split())


# Value checkers for ``add_argument(type=...)``: a bad value becomes argparse's one-line error,
# which quotes the flag and the value received.

def finite_float(low=None, high=None, low_open=False, high_open=False):
    """An argparse ``type``: a finite float in ``[low, high]`` (open ends where asked)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(
                f"expected a number {'>' if low_open else '>='} {low}, got {text!r}")
        if high is not None and (value >= high if high_open else value > high):
            raise argparse.ArgumentTypeError(
                f"expected a number {'<' if high_open else '<='} {high}, got {text!r}")
        return value
    parse.__name__ = "number"
    return parse


def bounded_int(low=None, high=None):
    """An argparse ``type``: an integer in ``[low, high]``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = (f">= {low}" if high is None else f"<= {high}" if low is None
                      else f"in [{low}, {high}]")
            raise argparse.ArgumentTypeError(f"expected an integer {bounds}, got {text!r}")
        return value
    parse.__name__ = "integer"
    return parse


def path_arg(text):
    """An argparse ``type``: a non-empty path no longer than the operating system allows."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    check_path_length(text)
    return text


def check_path_length(path):
    """Raise ``argparse.ArgumentTypeError`` if ``path`` or one of its parts is too long for the OS."""
    text = os.fspath(path)
    try:
        path_max = os.pathconf("/", "PC_PATH_MAX")
        name_max = os.pathconf("/", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not POSIX: Windows' classic limits
        path_max, name_max = 260, 255
    if len(os.fsencode(os.path.abspath(text))) >= path_max:
        raise argparse.ArgumentTypeError(
            f"path is {len(text)} characters long; this system allows {path_max - 1}")
    longest = max(Path(text).parts, key=lambda p: len(os.fsencode(p)), default="")
    if len(os.fsencode(longest)) > name_max:
        raise argparse.ArgumentTypeError(
            f"a name in the path is {len(longest)} characters long; this system allows {name_max}: "
            f"{longest[:40]}...")


class OutputPathError(OSError):
    """An output path that cannot be written: bad input (exit status 2)."""

    exit_status = EXIT_BAD_INPUT


def nearest_existing(path):
    """``path`` itself if it exists, else its nearest existing parent: what creating it would need."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def output_dir(path, flag="--out_dir", create=True):
    """Check that ``path`` can be a writable directory, before any work; create it if asked.

    Parameters
    ----------
    path : str or Path
        The directory.
    flag : str
        The option that named it, for the error message.
    create : bool
        Create it now. With False nothing is created: the nearest folder that exists must be
        writable, so a command that fails later leaves no empty directory behind.

    Returns
    -------
    Path
        The directory.

    Raises
    ------
    OutputPathError
        One line naming the path, what is wrong and the flag to change.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path} is a file, not a directory: give a directory")
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise OutputPathError(f"{flag} {path} cannot be made: {existing} is a file; give another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write to {flag} {path}: {existing} is not writable")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputPathError(f"cannot create {flag} {path}: {e.strerror}") from None
    return path


def output_file(path, flag="--out"):
    """Check that the file ``path`` can be written, before any work; nothing is created.

    Returns the path as a ``Path``; raises :class:`OutputPathError` otherwise. The caller
    creates the file's folder (``path.parent.mkdir(parents=True, exist_ok=True)``) when it writes.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} {path} is a directory: give a file name")
    output_dir(path.parent, flag=f"the folder of {flag}", create=False)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"cannot write {flag} {path}: permission denied")
    return path


def which_arg(text):
    """An argparse ``type`` for ``--which``: ``best``, ``final`` or a checkpoint's epoch (an int)."""
    if text in ("best", "final"):
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected best, final or a checkpoint's epoch (1, 2, ...), got {text!r}")


# TensorFlow's C++ libraries write these at start-up straight to file descriptor 2, below
# Python (absl's pre-initialisation notice, oneDNN, CPU features, CUDA probing on a machine
# without a GPU): TF_CPP_MIN_LOG_LEVEL does not hide them all.
_STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    r"|E\d{4} [\d:.]+ +\d+ (cuda|cudnn|cufft|cublas)\w*\.cc:\d+\] "
    r"|To enable the following instructions: ")


@contextlib.contextmanager
def quiet_startup():
    """Hold back TensorFlow's C++ start-up lines written while the block runs.

    File descriptor 2 goes to a temporary file meanwhile; afterwards every line that is not
    known start-up noise is written to stderr, so an unexpected message (an error while loading
    a library) still shows, in order. Set ``BNN_TF_LOGS=1`` to see everything as it comes.
    ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 (warnings and errors of TensorFlow's own logging only)
    for the rest of the process.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("BNN_TF_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if not _STARTUP_NOISE.match(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def load_keras():
    """Import Keras (and TensorFlow, when it is the backend) inside :func:`quiet_startup`.

    Entry points call this after parsing their arguments, before importing the modules that
    need Keras. TensorFlow probes for GPUs when its devices are first listed: that is done here
    too, while quiet.

    Returns
    -------
    module
        ``keras``.
    """
    with quiet_startup():
        import keras

        tf = sys.modules.get("tensorflow")
        if tf is not None:
            tf.config.list_physical_devices()
    return keras
