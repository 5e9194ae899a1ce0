"""Run directories: where a training run keeps its config, checkpoints, logs and results.

Layout of a run directory::

    config.json            the RunConfig, so loading a run needs only its path
    log.csv                one row per epoch (loss, accuracy, val_*, learning_rate)
    tensorboard/           the same curves for TensorBoard
    checkpoints/epoch-NNNN.keras   every --ckpt_n epochs and at the last epoch, with the
                           optimizer state (resume starts from the newest one)
    best.keras, best.json  the weights of the best validation epoch, and that epoch
    checkpoints/epoch-NNNN.best.{keras,json}   best.keras and best.json as they were when
                           that checkpoint was written (hard links), so a resume can roll back
    final.keras            the model after the last epoch
    results.json           test accuracy of the best and final models
    .lock                  the process training into the directory (an OS lock; it dies with it)

Every file is written under a temporary name and renamed into place (``bnn.files``), so a run
killed at any moment leaves no half-written file under a final name.
"""

import json
import os
import re
from pathlib import Path

import keras

from bnn.config import RunConfig
from bnn.errors import BnnError, RunIOError
from bnn.files import AtomicWriteError, atomic_write
from bnn.files import atomic_link as _atomic_link
from bnn.files import atomic_write_json as _atomic_write_json

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG, LOG, BEST, BEST_INFO, FINAL, RESULTS = (
    "config.json", "log.csv", "best.keras", "best.json", "final.keras", "results.json")
CKPT_DIR, TB_DIR, LOCK = "checkpoints", "tensorboard", ".lock"
_CKPT_RE = re.compile(r"^epoch-(\d+)\.keras$")


def default_run_dir(config):
    """``<repo>/runs/<data set>-<mode>[-debug]``, e.g. ``runs/MNIST-binary``."""
    return REPO_ROOT / "runs" / f"{config.data_set}-{config.mode}{'-debug' if config.debug else ''}"


def run_dir_of(config):
    """The run directory of ``config``: ``--run_dir``, or :func:`default_run_dir`."""
    return Path(config.run_dir) if config.run_dir else default_run_dir(config)


def check_run_dir(run_dir):
    """Refuse, before anything is created, a run directory that cannot be made or written.

    Raises
    ------
    BnnError
        If ``run_dir`` is a file, lies under a file, or its nearest existing folder is not
        writable.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise BnnError(f"--run_dir {run_dir} is a file, not a directory: pass --run_dir NEW_DIR")
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BnnError(f"--run_dir {run_dir} cannot be made: {existing} is a file; pass --run_dir NEW_DIR")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BnnError(f"--run_dir {run_dir} is not writable ({existing} is read-only or not yours): "
                       "pass --run_dir NEW_DIR")


def prepare_run_dir(config):
    """Create and lock the run directory, or check that an existing one holds this same run.

    The directory stays locked (an OS lock held by this process) until
    :func:`release_run_dir`, so a second process cannot train into it at the same time.

    Returns
    -------
    Path
        The run directory, with ``config.json`` written.

    Raises
    ------
    BnnError
        If the directory holds a run made with another configuration, files that are not a
        run's, or is in use by another process: nothing in it is touched.
    """
    run_dir = run_dir_of(config)
    check_run_dir(run_dir)
    if run_dir.exists() and not (run_dir / CONFIG).exists() and any(
            p.name != LOCK for p in run_dir.iterdir()):
        raise BnnError(f"{run_dir} exists and is not a run directory (no {CONFIG}); "
                       "pass --run_dir NEW_DIR")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BnnError(f"cannot create run directory {run_dir}: {e.strerror or e}; "
                       "pass --run_dir NEW_DIR") from e
    _lock(run_dir)
    try:
        # A run that never finished an epoch holds nothing to protect: it may take the new config.
        started = checkpoints(run_dir) or (run_dir / BEST).exists() or (run_dir / LOG).exists()
        if (run_dir / CONFIG).exists() and started:
            diff = RunConfig.load(run_dir / CONFIG).differences(config)
            if diff:
                shown = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in diff.items())
                raise BnnError(f"{run_dir} holds a run with another configuration ({shown}); "
                               "pass --run_dir NEW_DIR to start a new run")
        try:
            (run_dir / CKPT_DIR).mkdir(exist_ok=True)
            config.save(run_dir / CONFIG)
        except OSError as e:
            raise BnnError(f"cannot write into run directory {run_dir}: {e.strerror or e}; "
                           "pass --run_dir NEW_DIR") from e
    except BaseException:
        release_run_dir(run_dir)
        raise
    return run_dir


_LOCKS = {}  # run directory -> file descriptor holding its lock


def _lock(run_dir):
    """Take the OS lock of ``run_dir`` (``fcntl.flock``: released when the process dies)."""
    import fcntl

    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise BnnError(f"cannot write into run directory {run_dir}: {e.strerror or e}; "
                       "pass --run_dir NEW_DIR") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise BnnError(f"run directory {run_dir} in use by process {pid}: wait for it to end "
                       "(or stop it), or pass --run_dir NEW_DIR") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _LOCKS[run_dir.resolve()] = fd


def release_run_dir(run_dir):
    """Release the lock :func:`prepare_run_dir` took on ``run_dir`` (no-op if none is held)."""
    fd = _LOCKS.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


def _run_io(write, *args):
    try:
        write(*args)
    except AtomicWriteError as e:
        raise RunIOError(f"{e.strerror}; the files already there are intact: make room and run "
                         "the same command again to resume") from e


def atomic_save(model, path):
    """``model.save(path)`` through a temporary file renamed into place.

    Raises
    ------
    RunIOError
        If the disk is full or unwritable; the temporary file is removed, ``path`` unchanged.
    """
    _run_io(atomic_write, path, model.save)


def atomic_link(source, path):
    """Make ``path`` the same file as ``source`` (a hard link, or a copy where links fail)."""
    _run_io(_atomic_link, source, path)


def atomic_write_json(obj, path):
    """Write ``obj`` as strict JSON (NaN becomes null) through a temporary file renamed into place."""
    _run_io(_atomic_write_json, obj, path)


def read_json(path, default=None):
    """The JSON in ``path``, or ``default`` if there is no such file."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default


def checkpoints(run_dir):
    """The complete periodic checkpoints of a run, oldest first.

    Returns
    -------
    list of (int, Path)
        ``(epoch, path)``: ``epoch`` epochs were completed when ``path`` was written.
    """
    found = []
    for p in (Path(run_dir) / CKPT_DIR).glob("epoch-*.keras"):
        m = _CKPT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def checkpoint_path(run_dir, epoch):
    return Path(run_dir) / CKPT_DIR / f"epoch-{epoch:04d}.keras"


def best_snapshot_paths(run_dir, epoch):
    """Where ``best.keras`` and ``best.json`` are kept as they were at the checkpoint of ``epoch``."""
    folder = Path(run_dir) / CKPT_DIR
    return folder / f"epoch-{epoch:04d}.best.keras", folder / f"epoch-{epoch:04d}.best.json"


def load_model_file(path):
    """Load a ``.keras`` file written by this package, with a one-line error if it cannot be."""
    import bnn.layers  # noqa: F401  (registers the custom layers for deserialization)
    import bnn.losses  # noqa: F401

    try:
        return keras.models.load_model(path)
    except (OSError, ValueError, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BnnError(f"could not load model {path}: {reason}") from e
    except TypeError as e:  # an object Keras cannot rebuild: its message runs to dozens of lines
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", str(e))
        what = f"it uses {unknown.group(1)!r}, which neither bnn nor Keras defines" if unknown else \
            " ".join(str(e).split())[:200]
        raise BnnError(f"could not load model {path}: {what}: give a .keras file written by bnn") from e


def resolve_model_path(run_dir, which="best"):
    """The path of a run's ``'best'`` or ``'final'`` model, or of the checkpoint at epoch ``which``."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise BnnError(f"{run_dir} is not a run directory (no {CONFIG}): train one with "
                       f"python run_bnn.py --run_dir {run_dir}")
    if isinstance(which, int):
        path = checkpoint_path(run_dir, which)
    elif which in ("best", "final"):
        path = run_dir / (BEST if which == "best" else FINAL)
        if which == "best" and not path.exists():
            path = run_dir / FINAL  # a run without a validation set has no separate best model
    else:
        raise BnnError(f"which must be 'best', 'final' or an epoch number, got {which!r}")
    if not path.exists():
        have = [e for e, _ in checkpoints(run_dir)]
        raise BnnError(f"{run_dir} has no {path.name} (checkpoints at epochs {have or 'none'}): "
                       "finish or resume the run with python run_bnn.py and the same flags")
    return path


def load_run(run_dir, which="best"):
    """Load a trained network and its configuration from a run directory.

    Parameters
    ----------
    run_dir : str or Path
        A directory written by ``run_bnn.py``.
    which : 'best', 'final' or int
        The best-validation model, the last one, or the checkpoint after that many epochs.

    Returns
    -------
    config : RunConfig
    model : keras.Model
    """
    path = resolve_model_path(run_dir, which)
    return RunConfig.load(Path(run_dir) / CONFIG), load_model_file(path)
