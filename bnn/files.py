"""Atomic files: everything is written under a temporary name and renamed into place.

So a process killed at any moment, or a disk that fills up, leaves either the old file or the
new one under the final name, never half of one. One naming scheme for the temporary files,
``.<stem>.partial<suffix>`` beside the target (the suffix is kept because Keras picks the
format of ``model.save`` from it), lets readers and clean-ups recognise debris.
"""

import errno
import json
import math
import os
import shutil
from pathlib import Path


class AtomicWriteError(OSError):
    """Writing ``path`` failed; the temporary file is removed and ``path`` is unchanged."""

    def __init__(self, path, cause):
        reason = cause.strerror or str(cause) or type(cause).__name__
        if cause.errno == errno.ENOSPC:
            reason = "no space left on the device"
        super().__init__(cause.errno, f"could not write {path}: {reason}")
        self.path = Path(path)


def partial_path(path):
    """The temporary name under which ``path`` is written: ``.<stem>.partial<suffix>``."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def atomic_write(path, write):
    """Call ``write(tmp)`` to write a temporary file, then rename it to ``path``.

    Raises
    ------
    AtomicWriteError
        If writing or renaming fails (``OSError``); the temporary file is removed first. Any
        other exception (a ``KeyboardInterrupt`` in the middle of the write) also removes the
        temporary file, and propagates unchanged.
    """
    path = Path(path)
    tmp = partial_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise AtomicWriteError(path, e) from e
        raise


def is_partial(path):
    """Whether ``path`` is named as a temporary file of :func:`atomic_write` (debris of a kill)."""
    name = Path(path).name
    return name.startswith(".") and ".partial" in name


def remove_partials(folder):
    """Delete every temporary file of :func:`atomic_write` under ``folder``; return their paths.

    Only for a folder no other process is writing into (a locked run directory): a kill in the
    middle of a write leaves them behind.
    """
    removed = [p for p in Path(folder).rglob(".*.partial*") if is_partial(p) and p.is_file()]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def _finite_or_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def atomic_write_json(obj, path):
    """Write ``obj`` as strict JSON (NaN and infinities become ``null``), atomically."""
    text = json.dumps(_finite_or_none(obj), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_link(source, path):
    """Make ``path`` the same file as ``source`` (a hard link, or a copy where links fail)."""
    path = Path(path)
    # rename() of a hard link onto another link of the same file does nothing and leaves the
    # temporary name in place (POSIX), so a path that already is the source is left alone.
    if path.exists() and os.path.samefile(source, path):
        return

    def link(tmp):
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    atomic_write(path, link)
