"""Run directories: where a training run keeps its config, checkpoints, logs and results.

Layout of a run directory::

    config.json            the RunConfig, so loading a run needs only its path
    log.csv                one row per epoch (loss, accuracy, val_*, learning_rate)
    tensorboard/           the same curves for TensorBoard
    checkpoints/epoch-NNNN.keras   every --ckpt_n epochs and at the last epoch, with the
                           optimizer state (resume starts from the newest one)
    best.keras, best.json  the weights of the best validation epoch, and that epoch
    final.keras            the model after the last epoch
    results.json           test accuracy of the best and final models

Every file is written under a temporary name and renamed into place, so a run killed at any
moment leaves no half-written file under a final name.
"""

import json
import os
import re
import shutil
from pathlib import Path

import keras

from bnn.config import RunConfig
from bnn.errors import BnnError

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG, LOG, BEST, BEST_INFO, FINAL, RESULTS = (
    "config.json", "log.csv", "best.keras", "best.json", "final.keras", "results.json")
CKPT_DIR, TB_DIR = "checkpoints", "tensorboard"
_CKPT_RE = re.compile(r"^epoch-(\d+)\.keras$")


def default_run_dir(config):
    """``<repo>/runs/<data set>-<mode>[-debug]``, e.g. ``runs/MNIST-binary``."""
    return REPO_ROOT / "runs" / f"{config.data_set}-{config.mode}{'-debug' if config.debug else ''}"


def prepare_run_dir(config):
    """Create the run directory, or check that an existing one holds this same run.

    Returns
    -------
    Path
        The run directory, with ``config.json`` written.

    Raises
    ------
    BnnError
        If the directory holds a run made with another configuration, or files that are not
        a run's: nothing in it is touched.
    """
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    # A run that never finished an epoch holds nothing to protect: it may take the new config.
    started = checkpoints(run_dir) or (run_dir / BEST).exists() or (run_dir / LOG).exists()
    if (run_dir / CONFIG).exists() and started:
        diff = RunConfig.load(run_dir / CONFIG).differences(config)
        if diff:
            shown = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in diff.items())
            raise BnnError(f"{run_dir} holds a run with another configuration ({shown}); "
                           "pass --run_dir NEW_DIR to start a new run")
    elif run_dir.exists() and not (run_dir / CONFIG).exists() and any(run_dir.iterdir()):
        raise BnnError(f"{run_dir} exists and is not a run directory (no {CONFIG}); "
                       "pass --run_dir NEW_DIR")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CKPT_DIR).mkdir(exist_ok=True)
    config.save(run_dir / CONFIG)
    return run_dir


def atomic_save(model, path):
    """``model.save(path)`` through a temporary file renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial.keras")
    model.save(tmp)
    os.replace(tmp, path)


def atomic_link(source, path):
    """Make ``path`` the same file as ``source`` (a hard link, or a copy where links fail)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)


def atomic_write_json(obj, path):
    """Write ``obj`` as JSON through a temporary file renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


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


def load_model_file(path):
    """Load a ``.keras`` file written by this package, with a one-line error if it cannot be."""
    import bnn.layers  # noqa: F401  (registers the custom layers for deserialization)
    import bnn.losses  # noqa: F401

    try:
        return keras.models.load_model(path)
    except (OSError, ValueError, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BnnError(f"could not load model {path}: {reason}") from e


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
