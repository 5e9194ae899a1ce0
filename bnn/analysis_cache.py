"""A cache of the geometry report's slow steps in the run directory, keyed by everything they depend on.

``gen_plots.ipynb`` and ``python -m bnn.report`` spend most of their time on two steps: the pass of
the test images through the network (`bnn.network_geometry.network_geometry`) and the
binarization-pattern experiment. Their results are stored in the run directory::

    analysis_cache/geometry-<which>.npz    per-layer tensors, dot products and numbers
    analysis_cache/patterns-<which>.npz    the accuracies of the pattern experiment

so that running the notebook again on the same run (to adjust a figure) reads them back instead of
recomputing. Each file holds a key: the digest of the model file, of the images used, of the run's
config, of the analysis code (``bnn/*.py`` but the figure-drawing modules), the Keras backend and
the step's parameters (``n_points``, ``seed``, ...). A file whose key differs from the wanted one is
recomputed and replaced, and a line says which part changed; a file that cannot be read is ignored
with one line saying so. Delete the folder to force a recomputation.

The format is ``.npz`` read with ``allow_pickle=False``: the arrays, and one JSON document holding
everything else (numbers, strings, the nesting). Nothing is unpickled, so a cache file can at worst
be wrong data, never code. Files are written under a temporary name and renamed into place
(`bnn.files.atomic_write`), so an interrupted write leaves no half file under the final name.
"""

import dataclasses
import functools
import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from bnn.files import atomic_write

#: Folder of the cache inside a run directory.
CACHE_DIR = "analysis_cache"
#: Version of the file layout; a file of another version counts as made with another key.
FORMAT = 1
#: Modules of ``bnn`` whose changes leave the cached numbers valid: they only draw or print them.
PRESENTATION_MODULES = ("plotting.py", "report.py", "analysis_cache.py", "cli.py")
_META = "__meta__"  # the npz entry holding the JSON document


# --------------------------------------------------------------------------------------------------
# Digests: what a cached result depends on
# --------------------------------------------------------------------------------------------------


def file_digest(path, chunk=1 << 22):
    """SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def array_digest(*arrays):
    """SHA-256 (hex) of arrays' dtypes, shapes and values."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest():
    """SHA-256 (hex) of the ``bnn`` modules that compute the cached numbers.

    Every ``bnn/*.py`` but `PRESENTATION_MODULES`: editing a figure leaves the cache valid, editing
    the analysis (or the layers it runs) recomputes it.
    """
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name not in PRESENTATION_MODULES:
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Encoding: nested values as one JSON document and a set of arrays
# --------------------------------------------------------------------------------------------------


def _layer_types():
    from bnn.network_geometry import LayerGeometry

    return {"LayerGeometry": LayerGeometry}


def _ternary_int8(a):
    """``a`` as int8 if it is a float array holding only -1, 0 and 1 (quantized weights), else None."""
    if a.dtype.kind != "f" or a.size == 0 or not (a.min() >= -1 and a.max() <= 1):  # NaN fails too
        return None
    small = a.astype(np.int8)
    return small if np.array_equal(small, a) else None


def _encode(obj, arrays, types):
    """``obj`` with its arrays moved into ``arrays`` (name -> array), as JSON-ready values."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"cannot cache an array of Python objects (dtype {obj.dtype})")
        name = f"a{len(arrays)}"
        small = _ternary_int8(obj)  # quantized kernels: a quarter of the bytes, values unchanged
        arrays[name] = obj if small is None else small
        return {"__array__": name, "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_encode(v, arrays, types) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"cannot cache a dict with keys that are not strings: {list(obj)[:3]}")
        return {"__dict__": {k: _encode(v, arrays, types) for k, v in obj.items()}}
    quantizers = _quantizers_module()
    if quantizers is not None and isinstance(obj, quantizers.Quantizer):
        return {"__quantizer__": quantizers.serialize(obj)}  # its Keras config: plain JSON
    name = type(obj).__name__
    if dataclasses.is_dataclass(obj) and types.get(name) is type(obj):
        return {"__dataclass__": name,
                "fields": {f.name: _encode(getattr(obj, f.name), arrays, types) for f in dataclasses.fields(obj)}}
    raise TypeError(f"cannot cache a value of type {name}")


def _quantizers_module():
    """``bnn.quantizers`` if it is loaded (a value holding a quantizer was made with it), else None."""
    import sys

    return sys.modules.get("bnn.quantizers")


def _decode(obj, arrays, types):
    """The inverse of `_encode`."""
    if isinstance(obj, list):
        return [_decode(v, arrays, types) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        return arrays[obj["__array__"]].astype(np.dtype(obj["dtype"]), copy=False)
    if "__dict__" in obj:
        return {k: _decode(v, arrays, types) for k, v in obj["__dict__"].items()}
    if "__quantizer__" in obj:
        from bnn.quantizers import get

        return get(obj["__quantizer__"])
    if "__dataclass__" in obj:
        return types[obj["__dataclass__"]](**{k: _decode(v, arrays, types) for k, v in obj["fields"].items()})
    raise ValueError(f"unknown entry {sorted(obj)[:3]}")


def write(path, key, value):
    """Store ``value`` (nested dicts, lists, numbers, strings, arrays, `LayerGeometry`) under ``key``.

    Written to a temporary file renamed into place. Raises OSError (`bnn.files.AtomicWriteError`)
    if the disk is full or the folder unwritable, TypeError for a value that cannot be stored.
    """
    arrays = {}
    document = {"key": key, "value": _encode(value, arrays, _layer_types())}
    arrays[_META] = np.array(json.dumps(document))  # a unicode array: loads without pickle

    def save(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, save)


def read(path):
    """The (key, value) stored in ``path`` by `write`.

    Raises
    ------
    OSError
        The file cannot be opened (FileNotFoundError where there is none).
    ValueError
        The file is damaged or not a cache file (the message says how).
    """
    with open(path, "rb") as f:
        try:
            with np.load(f, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            document = json.loads(str(arrays.pop(_META)[()]))
            key = document["key"]
            if key.get("format") != FORMAT:  # another layout: not decoded, the keys differ
                return key, None
            return key, _decode(document["value"], arrays, _layer_types())
        except (OSError, EOFError, zipfile.BadZipFile, AttributeError, KeyError, IndexError, TypeError,
                ValueError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(reason) from e


# --------------------------------------------------------------------------------------------------
# Get or compute
# --------------------------------------------------------------------------------------------------


def cache_path(run_dir, step, which):
    """``<run_dir>/analysis_cache/<step>-<which>.npz``: one file per step and model of the run."""
    return Path(run_dir) / CACHE_DIR / f"{step}-{which}.npz"


def analysis_key(run_dir, which, images, **params):
    """The key of a step of the report on a run: what its result depends on.

    Parameters
    ----------
    run_dir : Path
    which : 'best', 'final' or int
        The run's model (`bnn.runs.resolve_model_path`).
    images : sequence of arrays
        The inputs of the step (e.g. the test images and labels).
    **params : JSON values
        The step's parameters (``n_points``, ``seed``, ...).

    Returns
    -------
    dict
        ``format``, ``model`` (digest of the model file), ``config`` (of ``config.json``), ``images``,
        ``code`` (`code_digest`), ``backend`` (Keras's) and ``params``' entries.
    """
    from bnn import runs

    return {"format": FORMAT, "model": file_digest(runs.resolve_model_path(run_dir, which)),
            "config": file_digest(Path(run_dir) / runs.CONFIG), "images": array_digest(*images),
            "code": code_digest(), "backend": keras_backend(), **params}


def keras_backend():
    """The name of the backend Keras runs on (or will, once imported), read the way Keras reads it
    (``KERAS_BACKEND``, else ``keras.json`` in ``$KERAS_HOME`` or ``~/.keras``), so that a cache hit
    need not import Keras and its backend (seconds)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def _differences(stored, wanted):
    return sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))


def cached(path, key, compute, print_fn=print):
    """``compute()``, or the value stored in ``path`` under the same ``key``.

    Parameters
    ----------
    path : Path
        The cache file (`cache_path`).
    key : dict of str -> JSON value
        Everything the value depends on (`analysis_key`), ``format`` among it; compared entry by
        entry with the stored key.
    compute : callable
        Makes the value when the file is missing, damaged or holds another key; the value is then
        written to ``path`` (a failure to write costs one line, not the result).
    print_fn : callable
        Gets one line when the cache is read, ignored (damaged, or made for another key), or
        cannot be written.

    Returns
    -------
    value, hit : the value, and whether it came from the cache
    """
    key = json.loads(json.dumps(key))  # the form it takes once stored (tuples become lists)
    try:
        stored_key, value = read(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except ValueError as e:
        print_fn(f"ignoring the damaged analysis cache {path} ({e}): recomputing")
    except OSError as e:
        print_fn(f"could not read the analysis cache {path} ({e.strerror or e}): recomputing")
    else:
        if stored_key == key:
            print_fn(f"read from the analysis cache {path} (delete it to recompute)")
            return value, True
        print_fn(f"the analysis cache {path} was made for another {', '.join(_differences(stored_key, key))}: "
                 "recomputing")
    value = compute()
    try:
        write(path, key, value)
    except OSError as e:
        print_fn(f"could not write the analysis cache ({e}): the next run computes this again")
    return value, False
