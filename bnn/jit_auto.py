"""``--jit_compile auto``: the faster compiled form of the train step, found by timing both.

Whether XLA speeds a step up depends on the machine, not on a rule: on a CPU it has saved about
a fifth of the paper's conv step on one machine and cost 10-15% on another (docs/distributed.md).
So ``auto`` times a few steps of each form (XLA on, XLA off) on a throwaway copy of the network
at the start of a run, alternating the forms so that a machine's drift hits both alike, and
takes the faster (by its best step). The answer is remembered in the user's cache folder (``$BNN_CACHE_DIR``, else
``$XDG_CACHE_HOME/bnn``, else ``~/.cache/bnn``), keyed by everything a step's speed depends on
(:func:`cache_key`), so the next run of the same network on the same machine starts at once.

The form a run began with is stored in its run directory (:data:`RUN_FILE`), and a resumed run
keeps it whatever the cache says now, so resuming stays bit-identical (XLA and the op-by-op path
round differently). A run begun before forms were stored resumes with the rule of that time
(XLA on, but under ``tf.distribute``: :func:`bnn.accelerate.rule_jit_compile`).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import keras

from bnn.files import atomic_write_json

RUN_FILE = "jit_compile.json"
CACHE_FILE = "jit_compile.json"
# Timed steps per form after one untimed step (which compiles). Alternated: on off, off on, ...
ROUNDS = 4
# Fields of RunConfig that change the computation of a step (and so its speed).
NETWORK_FIELDS = ("data_set", "conv", "fc", "max_pool", "filter_size", "continuous", "levels",
                  "quantize_weights", "quantize_activations", "rotate_first_layer", "dropout_in",
                  "dropout_hidden", "bn_scale", "loss_mode", "batch_size", "dtype_policy",
                  "steps_per_execution")


def cache_dir():
    """The folder where measured answers are kept: ``$BNN_CACHE_DIR``, ``$XDG_CACHE_HOME/bnn``
    or ``~/.cache/bnn``."""
    if os.environ.get("BNN_CACHE_DIR"):
        return Path(os.environ["BNN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bnn"


def machine():
    """What the machine is, for the cache key: the accelerator's kind, else the CPU's model and
    a digest of its feature flags (AVX2 and AVX-512 machines get different answers)."""
    from bnn import accelerate

    found = accelerate.accelerators()
    if found:
        kinds = sorted({getattr(d, "device_kind", None) or getattr(d, "device_type", str(d)) for d in found})
        return f"{len(found)} x {', '.join(kinds)}"
    model, flags = platform.processor() or platform.machine(), ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = hashlib.sha1(" ".join(sorted(value.split())).encode()).hexdigest()[:12]
    return f"{model} ({os.cpu_count()} cores, flags {flags or 'unknown'})"


def cache_key(config, n_devices):
    """The key of a measured answer: machine, backend and versions, network and batch, devices."""
    from bnn import accelerate, cluster

    versions = {"keras": keras.__version__}
    for name in ("jax", "tensorflow"):
        if accelerate.backend() == name:
            versions[name] = __import__(name).__version__
    key = {"machine": machine(), "backend": accelerate.backend(), "versions": versions,
           "devices": n_devices, "processes": cluster.count(),
           **{f: getattr(config, f) for f in NETWORK_FIELDS}}
    return json.dumps(key, sort_keys=True)


def measure(make_model, batch, timer=time.perf_counter, rounds=ROUNDS):
    """Seconds per training step of each form: the best of ``rounds`` alternating timed steps.

    The best, not the median: on a shared machine other work only ever adds time to a step, so
    the fastest step is the one closest to the form's own cost.

    Parameters
    ----------
    make_model : callable
        ``make_model(jit_compile)`` returns a compiled throwaway copy of the run's network.
    batch : tuple
        ``(x, y)``, one training batch (this process's share of it).
    timer : callable
        Seconds, monotonic (a fake one in tests).

    Returns
    -------
    dict
        ``{'on': seconds, 'off': seconds}``.
    """
    models = {form: make_model(form == "on") for form in ("on", "off")}
    for model in models.values():
        model.train_on_batch(*batch)  # compiles (XLA) or traces: not timed
    times = {form: [] for form in models}
    for r in range(rounds):
        for form in (("on", "off") if r % 2 == 0 else ("off", "on")):
            start = timer()
            # float() waits for the step's result: JAX dispatches asynchronously
            float(models[form].train_on_batch(*batch, return_dict=True)["loss"])
            times[form].append(timer() - start)
    return {form: min(t) for form, t in times.items()}


@contextlib.contextmanager
def _locked(folder):
    """Hold an OS lock on ``folder``'s cache: processes measuring at once measure one by one, and
    the later ones find the first one's answer."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def choose(config, run_dir, make_model, batch, n_devices, timer=time.perf_counter, resuming=False,
           rule=True):
    """Whether ``auto`` compiles with XLA in this run, and how that was decided.

    In order: the form stored in ``run_dir`` (a resumed run keeps it); the rule of runs begun
    before forms were stored (``resuming`` without a stored form); XLA on where there is one
    compiled form (JAX, :func:`times_both_forms`); the answer cached for this machine and network;
    a measurement (:func:`measure`), then cached.

    Parameters
    ----------
    rule : bool
        What the old rule gives for this run (used only for a run begun before forms were stored).

    Returns
    -------
    dict
        ``{'jit_compile': bool, 'source': 'run directory' | 'rule' | 'jax' | 'cache' | 'measured',
        'seconds_per_step': {'on': s, 'off': s} (measured or cached)}``.
    """
    stored = _read_json(Path(run_dir) / RUN_FILE)
    if stored is not None and "jit_compile" in stored:
        return {**stored, "source": "run directory"}
    if resuming:
        return {"jit_compile": bool(rule), "source": "rule"}
    if not times_both_forms():
        return {"jit_compile": True, "source": "jax"}
    key = cache_key(config, n_devices)
    folder = cache_dir()
    try:
        with _locked(folder):
            cached = (_read_json(folder / CACHE_FILE) or {}).get(key)
            if cached is not None:
                return {**cached, "source": "cache"}
            seconds = measure(make_model, batch, timer)
            answer = {"jit_compile": seconds["on"] <= seconds["off"], "seconds_per_step": seconds}
            table = _read_json(folder / CACHE_FILE) or {}
            table[key] = answer
            atomic_write_json(table, folder / CACHE_FILE)
    except OSError:  # an unwritable cache folder: measure every time, but still choose
        seconds = measure(make_model, batch, timer)
        answer = {"jit_compile": seconds["on"] <= seconds["off"], "seconds_per_step": seconds}
    return {**answer, "source": "measured"}


def times_both_forms():
    """Whether there are two compiled forms to time. On JAX there is one: with ``jit_compile``
    off Keras runs each step op by op, a debugging mode many times slower (a layer per dispatch),
    so ``auto`` is XLA on there without a measurement."""
    return keras.backend.backend() != "jax"


def remember(run_dir, choice):
    """Store the run's form in ``run_dir`` (once: a resumed run keeps the first)."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        atomic_write_json({k: v for k, v in choice.items() if k != "source"}, path)


def describe(choice):
    """One line for the run's log: the form and why."""
    form = "XLA on" if choice["jit_compile"] else "XLA off"
    seconds = choice.get("seconds_per_step")
    timed = (f" ({seconds['on'] * 1000:.0f} ms per step with XLA, {seconds['off'] * 1000:.0f} ms "
             "without)") if seconds else ""
    why = {"run directory": "the form this run began with",
           "rule": "the form of runs begun before auto measured",
           "cache": f"measured before on this machine, {cache_dir() / CACHE_FILE}",
           "measured": f"measured now; remembered in {cache_dir() / CACHE_FILE}",
           "jax": "JAX's compiled form (off would run each step op by op)"}[choice["source"]]
    return f"--jit_compile auto: {form}{timed}: {why}"
