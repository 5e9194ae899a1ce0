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
killed at any moment leaves no half-written file under a final name. A file damaged by other
means (a disk error, an editor, a copy cut short) is found by :func:`inspect_run` before a
resumed run changes anything; what can be rebuilt from intact files is, the rest is refused in
one line (see ``docs/reliability.md``).
"""

import csv
import dataclasses
import json
import os
import re
import zipfile
from pathlib import Path

from bnn import cli
from bnn.config import DEBUG_SIZES, RunConfig
from bnn.errors import BnnError, RunIOError
from bnn.files import AtomicWriteError, atomic_write
from bnn.geometry_log import COLUMNS as GEOMETRY_COLUMNS, FILE as GEOMETRY_LOG
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
    existing = cli.nearest_existing(run_dir)
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
        if started:
            inspect_run(run_dir)  # every damaged file is refused before anything is written
        if (run_dir / CONFIG).exists() and started:
            diff = read_config(run_dir).differences(config)
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


class DamagedRunError(BnnError):
    """A file of a run directory is damaged and the run cannot be rebuilt from its intact files."""


def _json_damage(path):
    """``(value, None)`` for a file of JSON text, else ``(None, why not)``."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8")), None
    except UnicodeDecodeError:
        return None, "not text"
    except json.JSONDecodeError:
        return None, "empty" if not Path(path).read_bytes().strip() else "not valid JSON"


def config_damage(path):
    """Why ``config.json`` at ``path`` cannot be read as a :class:`RunConfig`, or None if it can."""
    d, why = _json_damage(path)
    if why:
        return why
    if not isinstance(d, dict):
        return f"a JSON {type(d).__name__}, not an object of flags"
    try:
        RunConfig.from_dict(d)
    except (BnnError, TypeError, ValueError, AttributeError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def read_config(run_dir):
    """The :class:`RunConfig` of a run directory.

    Raises
    ------
    BnnError
        If there is no ``config.json``; :class:`DamagedRunError` if it is not a readable config.
    """
    path = Path(run_dir) / CONFIG
    if not path.exists():
        return RunConfig.load(path)  # its one-line "does not exist" error
    why = config_damage(path)
    if why:
        raise DamagedRunError(f"{path} is damaged ({why}): it holds the run's flags; restore it "
                              "from a copy, or pass --run_dir NEW_DIR to start a new run")
    return RunConfig.load(path)


def best_info_damage(path):
    """Why ``best.json`` at ``path`` is not ``{"epoch": int >= 1, "val_accuracy": number}``, or None."""
    d, why = _json_damage(path)
    if why:
        return why
    if not (isinstance(d, dict) and type(d.get("epoch")) is int and d["epoch"] >= 1
            and (d.get("val_accuracy") is None or type(d.get("val_accuracy")) in (int, float))):
        return 'not {"epoch": N, "val_accuracy": A}'
    return None


def keras_file_damage(path):
    """Why ``path`` is not a complete ``.keras`` archive, or None if it is.

    Checks the zip structure and the CRC of every member (a truncated or overwritten file fails
    both), and that the members of a Keras model are there; it does not build the model.
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad, names = z.testzip(), set(z.namelist())
    except FileNotFoundError:
        return "missing"
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile):
        return "not a complete .keras archive: truncated or overwritten"
    if bad is not None:
        return f"its member {bad} is corrupt"
    if not {"config.json", "model.weights.h5"} <= names:
        return "a zip archive without a Keras model in it"
    return None


def read_csv_log(path, columns=None):
    """The rows of ``log.csv`` or ``geometry.csv``, and why the file is damaged (or None).

    A last line without its line end is a row a kill cut short: it is left out, not an error.

    Parameters
    ----------
    path : Path
    columns : tuple of str or None
        The header the file must have (None: any header whose first column is ``epoch``).

    Returns
    -------
    header : list of str
    rows : list of list of str
        The complete rows, in file order.
    damage : str or None
        E.g. ``"line 3 is not a row of the log"``.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return [], [], "not text"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    try:
        table = list(csv.reader(lines))
    except csv.Error as e:
        return [], [], f"not CSV ({e})"
    if not table:
        return [], [], None
    header, rows = table[0], table[1:]
    if (columns is not None and tuple(header) != tuple(columns)) or (
            columns is None and (not header or header[0] != "epoch"
                                 or not all(re.fullmatch(r"\w+", h) for h in header))):
        return [], [], "line 1 is not its header"
    previous = None
    for i, row in enumerate(rows, start=2):
        if len(row) != len(header) or not re.fullmatch(r"\d+", row[0]) or not all(
                _is_number(v) for k, v in zip(header, row) if k not in ("epoch", "layer")):
            return [], [], f"line {i} is not a row of it"
        epoch = int(row[0])
        # log.csv: one row per epoch; geometry.csv: one row per layer and epoch
        if previous is not None and not (epoch == previous + 1 or (columns and epoch == previous)):
            return [], [], f"line {i} holds epoch {epoch} after epoch {previous}"
        previous = epoch
    return header, rows, None


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return text == ""
    return True


@dataclasses.dataclass
class ResumePlan:
    """What :func:`inspect_run` found: where to resume from, and what to rebuild first.

    Attributes
    ----------
    checkpoint : (int, Path) or None
        The newest intact checkpoint (None: start from the beginning).
    damaged_checkpoints : list of (int, Path)
        Newer checkpoints that are damaged (or whose best-model twins are): removed before
        resuming, since the epochs after ``checkpoint`` run again.
    best_from : (Path, Path) or None
        The ``epoch-N.best.{keras,json}`` twins of ``checkpoint`` that best.keras and best.json
        are made again from (None: the run had no best model yet at ``checkpoint``).
    twins_from_best : bool
        The twins of ``checkpoint`` are damaged but best.* intact and no newer: rebuild the
        twins from them.
    notes : list of str
        One line per damaged file that is rebuilt, saying how.
    """

    checkpoint: tuple = None
    damaged_checkpoints: list = dataclasses.field(default_factory=list)
    best_from: tuple = None
    twins_from_best: bool = False
    notes: list = dataclasses.field(default_factory=list)

    @property
    def epoch(self):
        return self.checkpoint[0] if self.checkpoint else 0


def _best_state(run_dir):
    """``(best.json's content or None, why best.json is unusable, why best.keras is)``.

    A reason is ``"missing"`` for an absent file, or why the file is damaged; None if it is fine.
    """
    info_path, model_path = Path(run_dir) / BEST_INFO, Path(run_dir) / BEST
    info_why = best_info_damage(info_path) if info_path.exists() else "missing"
    model_why = keras_file_damage(model_path) if model_path.exists() else "missing"
    return (None if info_why else read_json(info_path)), info_why, model_why


def _state(why):
    return "missing" if why == "missing" else f"damaged ({why})"


def _twins_damage(run_dir, epoch):
    """``(twins, why they cannot be used or None)``; twins None when the checkpoint has none."""
    twins = best_snapshot_paths(run_dir, epoch)
    present = [p.exists() for p in twins]
    if not any(present):
        return None, None
    if not all(present):
        return twins, f"{twins[present.index(False)].name} is missing"
    why = keras_file_damage(twins[0])
    if why:
        return twins, f"{twins[0].name} is damaged ({why})"
    why = best_info_damage(twins[1])
    if why:
        return twins, f"{twins[1].name} is damaged ({why})"
    return twins, None


def inspect_run(run_dir):
    """Check every file a resumed run reads, before anything in the run directory changes.

    Finds the newest checkpoint that is intact with its best-model twins, and what has to be
    rebuilt from them: a damaged or missing best.keras / best.json, newer damaged checkpoints.

    Returns
    -------
    ResumePlan

    Raises
    ------
    DamagedRunError
        Naming, in one line, every damaged file that cannot be rebuilt (config.json, log.csv,
        geometry.csv, or a best model without an intact copy), and what to do.
    """
    run_dir = Path(run_dir)
    fatal, plan = [], ResumePlan()
    if (run_dir / CONFIG).exists():
        why = config_damage(run_dir / CONFIG)
        if why:
            fatal.append(f"{CONFIG} is damaged ({why}): it holds the run's flags; restore it from "
                         "a copy, or pass --run_dir NEW_DIR to start a new run")
    info, info_why, model_why = _best_state(run_dir)
    has_best = (info_why, model_why) != ("missing", "missing")
    # Runs keep best-model twins with each checkpoint; a run written before they existed has none.
    uses_twins = any((run_dir / CKPT_DIR).glob("epoch-*.best.*"))
    for epoch, path in reversed(checkpoints(run_dir)):
        why = keras_file_damage(path)
        twins, twins_why = (None, None) if why else _twins_damage(run_dir, epoch)
        if not why and (twins_why or twins is None) and info and not model_why and info["epoch"] <= epoch:
            # No epoch after the checkpoint was a better one: best.* is what the twins held.
            if twins_why or uses_twins:
                lost = twins_why or f"epoch-{epoch:04d}.best.keras and .best.json are missing"
                plan.notes.append(f"{CKPT_DIR}/{lost}: rebuilt from {BEST} and {BEST_INFO}")
            plan.twins_from_best, twins_why = True, None
            twins = best_snapshot_paths(run_dir, epoch)
        if why or twins_why:
            plan.damaged_checkpoints.append((epoch, path, f"{CKPT_DIR}/{path.name} is damaged ({why})"
                                             if why else f"{CKPT_DIR}/{twins_why}"))
            continue
        plan.checkpoint, plan.best_from = (epoch, path), twins
        if twins is None and has_best and not uses_twins and (info_why or model_why):
            fatal.append(f"{BEST_INFO if info_why else BEST} is {_state(info_why or model_why)} "
                         "and no checkpoint keeps a copy: restore it, or delete best.keras and "
                         "best.json to resume (the best model is then chosen among the epochs "
                         "still to run)")
        break
    if plan.damaged_checkpoints:
        reasons = "; ".join(r for _, _, r in plan.damaged_checkpoints)
        if plan.checkpoint is None:
            fatal.append(f"{reasons}: no checkpoint is left intact with its best-model copies to "
                         "resume from; restore the files named, or pass --run_dir NEW_DIR to start "
                         "a new run")
        else:
            plan.notes.append(f"{reasons}: resuming from the checkpoint of epoch {plan.epoch} "
                              "instead (the epochs after it run again)")
    if plan.best_from is not None:
        for name, why, twin in ((BEST_INFO, info_why, plan.best_from[1]),
                                (BEST, model_why, plan.best_from[0])):
            if why:
                plan.notes.append(f"{name} is {_state(why)}: rebuilt from {CKPT_DIR}/{twin.name}")
    config = None if fatal else read_json(run_dir / CONFIG)
    for name, columns in ((LOG, None), (GEOMETRY_LOG, GEOMETRY_COLUMNS)):
        expected = plan.epoch and config and not (name == GEOMETRY_LOG and config.get("no_geometry_log"))
        if expected and not (run_dir / name).exists():
            plan.notes.append(f"{name} is missing: the run goes on without the rows of its first "
                              f"{plan.epoch} epochs")
        if (run_dir / name).exists():
            _, rows, why = read_csv_log(run_dir / name, columns)
            # both logs get an epoch's rows before its checkpoint; runs written when geometry.csv
            # came after the checkpoint may end one epoch short of it, and still resume
            last = int(rows[-1][0]) if rows else None
            if not why and plan.epoch and (last is None or last < plan.epoch - 1):
                why = (f"it ends at epoch {last}" if rows else "it has no rows") + (
                    f", before the checkpoint of epoch {plan.epoch}")
            if why:
                fatal.append(f"{name} is damaged ({why}): restore it from a copy, or delete it to "
                             "resume without the rows of the epochs done")
    if fatal:
        raise DamagedRunError(f"{run_dir}: " + "; ".join(fatal))
    return plan


def rebuild_best(run_dir, plan):
    """Make best.keras and best.json those of ``plan.checkpoint`` (its twins), or remove them.

    Epochs after the checkpoint run again; a best model from one of them would otherwise survive
    while log.csv rolls back, and block the same epoch from being saved as best again.
    """
    run_dir = Path(run_dir)
    if plan.twins_from_best:
        for name, twin in zip((BEST, BEST_INFO), best_snapshot_paths(run_dir, plan.epoch)):
            twin.unlink(missing_ok=True)  # a link onto a damaged file of its own would keep it
            atomic_link(run_dir / name, twin)
    if plan.best_from is None:
        (run_dir / BEST).unlink(missing_ok=True)
        (run_dir / BEST_INFO).unlink(missing_ok=True)
        return
    for name, twin in zip((BEST, BEST_INFO), plan.best_from):
        atomic_link(twin, run_dir / name)


def drop_damaged_checkpoints(run_dir, plan):
    """Remove the damaged checkpoints of ``plan`` and their twins (the epochs run again)."""
    for epoch, path, _ in plan.damaged_checkpoints:
        path.unlink(missing_ok=True)
        for twin in best_snapshot_paths(run_dir, epoch):
            twin.unlink(missing_ok=True)


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


def load_dataset(config):
    """The train / validation / test arrays of ``config.data_set`` (a small slice with ``debug``).

    Parameters
    ----------
    config : RunConfig
        Its ``data_set``, ``data_dir``, ``val_fraction``, ``seed`` and ``debug`` are used.

    Returns
    -------
    Dataset
        ``(x_train, y_train, x_val, y_val, x_test, y_test)``, images NHWC float32 in [-1, 1],
        labels integer class indices.
    """
    from data.load_data import DataError, load_data

    try:
        d = load_data(config.data_set, config.data_dir, val_fraction=config.val_fraction,
                      seed=config.seed)
    except DataError as e:
        raise BnnError(str(e)) from e
    if config.debug:
        n = DEBUG_SIZES
        d = type(d)(d.x_train[:n["train"]], d.y_train[:n["train"]], d.x_val[:n["val"]],
                    d.y_val[:n["val"]], d.x_test[:n["test"]], d.y_test[:n["test"]])
    return d


def load_model_file(path):
    """Load a ``.keras`` file written by this package, with a one-line error if it cannot be."""
    # Keras (and its backend) loads here, not at import: reading a run's config, data and
    # cached analysis must not pay for it.
    import keras

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
        if which == "best" and not path.exists() and (run_dir / BEST_INFO).exists():
            raise BnnError(f"{run_dir} has {BEST_INFO} but no {BEST}: run the same run_bnn.py "
                           "command again to rebuild it from its checkpoint")
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
    return read_config(run_dir), load_model_file(path)
