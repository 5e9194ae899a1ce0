"""Training: ``train_and_evaluate(config)`` runs, checkpoints, resumes and tests one network.

The recipe of the paper (and of BinaryNet): Adam, gradients clipped to [-1, 1], the learning
rate decayed exponentially once per epoch from ``lr_start`` to ``lr_end``, latent weights
clipped to [-1, 1] after every step (the layers' constraint), and the weights of the best
validation epoch kept for the test.
"""

import contextlib
import csv
import math
import os
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from bnn import accelerate, cluster, jit_auto, runs
from bnn.errors import BnnError, RunIOError, TrainingDiverged
from bnn.files import atomic_write, remove_partials
from bnn.geometry_log import COLUMNS as GEOMETRY_COLUMNS, FILE as GEOMETRY_LOG, TB_SUBDIR as GEOMETRY_TB_SUBDIR
from bnn.geometry_log import flip_ratio, kernel_statistics
from bnn.losses import get_loss
from bnn.model import build_model


def learning_rate(config, epoch):
    """Learning rate of 0-based ``epoch``: ``lr_start * (lr_end / lr_start) ** (epoch / (epochs - 1))``."""
    if config.epochs == 1:
        return config.lr_start
    return config.lr_start * (config.lr_end / config.lr_start) ** (epoch / (config.epochs - 1))


def compile_model(model, config):
    """Compile with Adam, element-wise gradient clipping to [-1, 1] and the run's loss.

    XLA on or off and steps per execution are chosen by :func:`bnn.accelerate.apply`.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.lr_start, clipvalue=1.0),
        loss=get_loss(config.loss_mode),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return accelerate.apply(model, config)


def _weight_shapes(model):
    return [(w.path, tuple(w.shape)) for w in model.weights]


def load_initial_weights(model, param_file):
    """Copy the weights of ``param_file`` (a ``.keras`` file or a run directory) into ``model``."""
    path = Path(param_file)
    if path.is_dir():
        path = runs.resolve_model_path(path, "best")
    elif not path.exists():
        raise BnnError(f"--param_file {param_file} does not exist: give a .keras file or a run directory")
    source = runs.load_model_file(path)
    if _weight_shapes(source) != _weight_shapes(model):
        mine, theirs = dict(_weight_shapes(model)), dict(_weight_shapes(source))
        diff = [k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)]
        k = sorted(diff)[0]
        raise BnnError(f"--param_file {param_file} has another architecture: {k} is "
                       f"{theirs.get(k, 'missing')} there but {mine.get(k, 'missing')} here")
    model.set_weights(source.get_weights())


def check_quantized_weights_alive(model):
    """Refuse a fresh network in which a layer's ternarized weights are all zero.

    Such a layer outputs a constant, so batch norm passes no gradient back and it never learns.
    It happens when ``--threshold_weights`` (default ``--threshold``) exceeds every initial weight
    (Glorot: sqrt(6 / (fan_in + fan_out))).
    """
    for layer in model.layers:
        q = getattr(layer, "kernel_quantizer", None)
        if q is None:
            continue
        # The band the quantizer maps to 0 (None: it has none, as sign); relative thresholds
        # scale with the kernel's own std.
        threshold = q.zero_threshold(float(keras.ops.std(layer.kernel)))
        if threshold is not None:
            largest = float(keras.ops.max(keras.ops.abs(layer.kernel)))
            if largest <= threshold:
                raise BnnError(f"weight threshold {threshold} (--threshold_weights or --threshold) "
                               f"is above every initial weight "
                               f"of layer {layer.name} (largest {largest:.4f}), so all its weights "
                               f"ternarize to 0 and it cannot learn: use --threshold_weights below "
                               f"{largest:.4f}")


def quantized_layers(model):
    """The weight layers of ``model`` whose kernel is quantized, in order."""
    return [layer for layer in model.layers if getattr(layer, "quantize_weights", False)]


class GeometryLog(keras.callbacks.Callback):
    """Append one row per quantized weight layer to ``geometry.csv`` (`bnn.geometry_log`) after every epoch.

    Parameters
    ----------
    run_dir : path
        The run directory; the file is ``run_dir / bnn.geometry_log.FILE``.
    initial_epoch : int
        Epochs already done (``fit``'s ``initial_epoch``). A fresh run (0) also writes the
        epoch-0 row of the initialization; a resumed one starts from the row after its checkpoint
        (``train.py`` drops later rows before resuming).
    tensorboard_dir : path or None
        Also write the numbers as TensorBoard scalars under this folder (needs TensorFlow
        installed; skipped without it).
    """

    def __init__(self, run_dir, initial_epoch=0, tensorboard_dir=None):
        super().__init__()
        self.path = Path(run_dir) / GEOMETRY_LOG
        self.initial_epoch = initial_epoch
        self.tensorboard_dir = tensorboard_dir
        self.previous, self.writer = {}, None

    def on_train_begin(self, logs=None):
        # train.py calls fit once per epoch: the start of the run is the first call only.
        if self.previous:
            return
        if self.tensorboard_dir is not None:
            try:
                import tensorflow as tf
            except ImportError:
                pass
            else:
                self.writer = tf.summary.create_file_writer(str(Path(self.tensorboard_dir) / GEOMETRY_TB_SUBDIR))
        # Q(W) of the starting weights is what the first epoch's flips are counted against.
        rows = self._measure(self.initial_epoch)
        if self.initial_epoch == 0:
            self._write(rows)

    def on_epoch_end(self, epoch, logs=None):
        self._write(self._measure(epoch + 1))

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.flush()

    def _measure(self, epoch):
        rows = []
        for layer in quantized_layers(self.model):
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            quantized = keras.ops.convert_to_numpy(layer.quantized_kernel())
            codes = layer.kernel_quantizer.codes(quantized)
            stats = kernel_statistics(kernel, quantized)
            stats["flip_ratio"] = flip_ratio(self.previous.get(layer.name), codes)
            small = np.array_equal(codes, np.rint(codes)) and np.abs(codes).max(initial=0) <= 127
            # -1, 0, +1 (sign, ternary) kept as int8: a quarter of float32
            self.previous[layer.name] = codes.astype(np.int8 if small else np.float32)
            rows.append({"epoch": epoch, "layer": layer.name, **stats})
        return rows

    def _write(self, rows):
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, GEOMETRY_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows({k: ("" if isinstance(v, float) and np.isnan(v) else v)
                              for k, v in row.items()} for row in rows)
        if self.writer is not None:
            import tensorflow as tf

            with self.writer.as_default():
                for row in rows:
                    for key in GEOMETRY_COLUMNS[3:]:
                        if not np.isnan(row[key]):
                            tf.summary.scalar(f"{row['layer']}/{key}", row[key], step=row["epoch"])
            self.writer.flush()


class RunCheckpoint(keras.callbacks.Callback):
    """Keep the run directory current: best model, periodic checkpoints, final model.

    The best model is written before the checkpoint of the same epoch, so a checkpoint never
    refers to a best epoch that was not saved.
    """

    def __init__(self, run_dir, config, best_val):
        super().__init__()
        self.run_dir, self.config, self.best_val = Path(run_dir), config, best_val

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        val = (logs or {}).get("val_accuracy")
        if val is not None and val > self.best_val:
            self.best_val = float(val)
            runs.atomic_save(self.model, self.run_dir / runs.BEST)
            runs.atomic_write_json({"epoch": done, "val_accuracy": self.best_val},
                                   self.run_dir / runs.BEST_INFO)
        if done % self.config.ckpt_n == 0 or done == self.config.epochs:
            # best.keras as it is now, so that resuming from this checkpoint can roll it back
            for name, snapshot in zip((runs.BEST, runs.BEST_INFO),
                                      runs.best_snapshot_paths(self.run_dir, done)):
                if (self.run_dir / name).exists():
                    runs.atomic_link(self.run_dir / name, snapshot)
            runs.atomic_save(self.model, runs.checkpoint_path(self.run_dir, done))
            self._prune()
        if done == self.config.epochs:
            runs.atomic_link(runs.checkpoint_path(self.run_dir, done), self.run_dir / runs.FINAL)

    def _prune(self):
        keep = self.config.keep_ckpts
        if keep:
            for epoch, path in runs.checkpoints(self.run_dir)[:-keep]:
                path.unlink()
                for snapshot in runs.best_snapshot_paths(self.run_dir, epoch):
                    snapshot.unlink(missing_ok=True)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop at the first batch whose loss is infinite or NaN, before anything of it is saved.

    It must come before the callbacks that log and checkpoint, so the last checkpoint and the
    best model on disk stay the last finite ones.
    """

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            saved = runs.checkpoints(self.run_dir)
            kept = f"checkpoint of epoch {saved[-1][0]}" if saved else "no checkpoint yet"
            raise TrainingDiverged(
                f"the loss became {float(loss)} in epoch {self.epoch + 1}, batch {batch + 1}: "
                f"training stopped ({kept} and the best model are kept in {self.run_dir}); "
                "lower --lr_start or change the network, and pass --run_dir NEW_DIR")


class EpochSummary(keras.callbacks.Callback):
    """Print one line per epoch: losses, accuracies, learning rate, and the epoch's time with the
    part spent on validation (so a slow evaluation shows)."""

    def __init__(self, epochs, print_fn=print):
        super().__init__()
        self.epochs, self.print_fn = epochs, print_fn

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        self.validation = 0.0

    def on_test_begin(self, logs=None):
        self.test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation += time.perf_counter() - self.test_start

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                parts.append(f"{key} {logs[key]:.4f}")
        parts.append(f"lr {float(logs.get('learning_rate', np.nan)):.2e}")
        parts.append(f"{time.perf_counter() - self.start:.1f}s")
        if "val_loss" in logs:
            parts[-1] += f" (validation {self.validation:.1f}s)"
        self.print_fn("  ".join(parts))


def _truncate_log(path, epochs_done, columns=None):
    """Drop log rows of epochs after the checkpoint we resume from (they will be run again),
    and a last row that a kill cut short (``runs.inspect_run`` has checked the rest)."""
    if not path.exists():
        return
    header, rows, _ = runs.read_csv_log(path, columns)
    kept = [header] + [r for r in rows if int(r[0]) < epochs_done] if header else []

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)

    atomic_write(path, write)


def _roll_back_tensorboard(tb_dir, epochs_done, steps_done):
    """Drop TensorBoard events of epochs after the resumed checkpoint, so none shows twice.

    Keras writes ``epoch_*`` summaries at step = 0-based epoch and ``*_vs_iterations`` ones at
    step = optimizer iterations; the geometry log writes at step = epochs done (0 = the
    initialization), so its rows up to the checkpoint's epoch stay.
    """
    import tensorflow as tf

    for path in sorted(Path(tb_dir).rglob("*tfevents*")):
        geometry = GEOMETRY_TB_SUBDIR in path.relative_to(tb_dir).parts
        last_kept = epochs_done if geometry else epochs_done - 1
        records, dropped = [], 0
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                vs_steps = any(v.tag.endswith("_vs_iterations") for v in event.summary.value)
                if event.summary.value and event.step > (steps_done if vs_steps else last_kept):
                    dropped += 1
                else:
                    records.append(record.numpy())
        except tf.errors.DataLossError:
            dropped += 1  # the tail of a file cut short by a kill
        if dropped:
            def write(tmp, records=records):
                with tf.io.TFRecordWriter(str(tmp)) as w:
                    for r in records:
                        w.write(r)
            atomic_write(path, write)


def _seed_epoch(model, seed, epoch):
    """Make all randomness of 0-based ``epoch`` (shuffling, dropout) a function of (seed, epoch).

    The dropout layers' seed generators are not saved in checkpoints, so they are reset here;
    a run killed and resumed thus draws exactly the numbers of an uninterrupted one.

    Returns
    -------
    numpy.random.Generator
        The generator for the epoch's shuffling.
    """
    rng = np.random.default_rng([seed, epoch])
    keras.utils.set_random_seed(int(rng.integers(2**31)))
    for v in model.variables:
        if v.path.endswith("seed_generator_state"):
            v.assign(np.array([rng.integers(2**31), 0], dtype=v.dtype))
    return rng


def _fresh_model(config, print_fn):
    """Build and compile a new network (from ``--param_file`` if given), checking it can learn."""
    keras.utils.set_random_seed(config.seed)
    model = compile_model(build_model(config), config)
    if config.param_file:
        load_initial_weights(model, config.param_file)
        print_fn(f"starting from the weights of {config.param_file}")
    check_quantized_weights_alive(model)
    return model


def train_and_evaluate(config, verbose="auto", print_fn=print):
    """Train the network of ``config`` in its run directory, resuming if it was interrupted.

    Parameters
    ----------
    config : RunConfig
        The run; ``config.resolve()`` is called.
    verbose : 'auto', 0, 1 or 2
        Keras progress output during ``fit`` ('auto': progress bars on a terminal, none otherwise;
        the one-line epoch summary is always printed).
    print_fn : callable
        Where the one-line messages go.

    Returns
    -------
    dict
        The contents of ``results.json``: test accuracy of the best and final models and more.
    """
    config.resolve()
    with accelerate.session(config, print_fn):
        return _train_and_evaluate(config, verbose, print_fn)


def _train_and_evaluate(config, verbose, print_fn):
    runs.check_run_dir(runs.run_dir_of(config))
    data = accelerate.trim_for_devices(runs.load_dataset(config), config, print_fn)
    if len(data.x_train) == 0:
        raise BnnError(f"no training images in {config.data_set}: check the data set files")
    # Everything that can fail on bad input is checked before the run directory is created.
    # Over several processes, all start from the checkpoint process 0 sees.
    resume_from = cluster.agree("resume_from", _newest_checkpoint(runs.run_dir_of(config)))
    jit_choice = _choose_jit_compile(config, data, resume_from, print_fn)
    model = None if resume_from else _fresh_model(config, print_fn)
    run_dir = runs.prepare_run_dir(config) if cluster.is_writer() else runs.run_dir_of(config)
    if jit_choice is not None:
        jit_auto.remember(run_dir, jit_choice)
    try:
        if cluster.is_writer():
            model, initial_epoch = _resume(config, run_dir, model, print_fn)
        else:
            model, initial_epoch = _follow(config, run_dir, model, resume_from), resume_from
        start = time.perf_counter()
        if initial_epoch < config.epochs:
            _fit(config, run_dir, model, data, initial_epoch, verbose, print_fn)
        train_seconds = time.perf_counter() - start
        return _test(config, run_dir, data, train_seconds, print_fn)
    except OSError as e:  # log.csv or TensorBoard could not be written: disk full, device gone
        raise RunIOError(f"could not write into {run_dir}: {e.strerror or e}; the checkpoints "
                         "already there are intact: make room and run the same command again "
                         "to resume") from e
    finally:
        if cluster.is_writer():
            runs.release_run_dir(run_dir)


def _choose_jit_compile(config, data, resume_from, print_fn):
    """``--jit_compile auto``: settle the run's compiled form (bnn.jit_auto) before any model is
    built; return the choice to store in the run directory (None where nothing is stored).

    Over several processes, process 0 chooses (timing its own share of a batch on its own
    devices, outside the run's distribution, so that no collective waits on the others) and
    the others take its answer.
    """
    if config.jit_compile != "auto":
        return None
    choice = None
    if cluster.is_writer():
        if accelerate.backend() == "tensorflow" and accelerate.distributing(config):
            choice = {"jit_compile": False, "source": "rule"}  # Keras turns XLA off under tf.distribute
        else:
            batch = _shares((data.x_train[:config.batch_size], data.y_train[:config.batch_size]),
                            config.batch_size)

            def make_model(on):
                model = compile_model(build_model(config), config)
                model.jit_compile = on
                return model

            with _local_only():
                choice = jit_auto.choose(config, runs.run_dir_of(config), make_model, batch,
                                         len(accelerate.devices()) if accelerate.distributing(config) else 1,
                                         resuming=bool(resume_from),
                                         rule=accelerate.rule_jit_compile(config))
        print_fn(jit_auto.describe(choice))
    on = cluster.agree("jit_compile", int(choice["jit_compile"]) if choice else 0)
    accelerate.set_auto_jit_compile(bool(on))
    return choice if cluster.is_writer() else None


@contextlib.contextmanager
def _local_only():
    """Over several processes: no distribution (this process's devices alone) for the block."""
    if cluster.count() == 1:
        yield
        return
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def _newest_checkpoint(run_dir):
    """Epochs done by the newest checkpoint in ``run_dir`` (0 if none)."""
    saved = runs.checkpoints(run_dir)
    return saved[-1][0] if saved else 0


def _follow(config, run_dir, model, epoch):
    """A process other than 0 of a multi-process run: the model of checkpoint ``epoch`` (0: ``model``).

    Process 0 alone writes (and rolls back) the run directory; the others only read the
    checkpoint it resumes from.
    """
    if not epoch:
        return model
    path = runs.checkpoint_path(run_dir, epoch)
    if not path.exists():
        raise BnnError(f"process {cluster.index()} cannot read {path}, the checkpoint process 0 "
                       "resumes from: put --run_dir on a filesystem that every process sees")
    return accelerate.apply(runs.load_model_file(path), config)


def _resume(config, run_dir, model, print_fn):
    """``(model, epochs done)``: the newest intact checkpoint, with the run directory rolled back
    to it (and what was damaged rebuilt from it, one line each)."""
    plan = runs.inspect_run(run_dir)
    remove_partials(run_dir)  # temporary files of writes a kill cut short
    for note in plan.notes:
        print_fn(note)
    runs.drop_damaged_checkpoints(run_dir, plan)
    initial_epoch = plan.epoch
    _truncate_log(run_dir / runs.LOG, initial_epoch)
    # geometry.csv counts epochs from 0 = initialization: keep rows up to the checkpoint's epoch
    # (none on a fresh start, which writes its epoch 0 again).
    _truncate_log(run_dir / GEOMETRY_LOG, initial_epoch + 1 if initial_epoch else 0, GEOMETRY_COLUMNS)
    runs.rebuild_best(run_dir, plan)
    if plan.checkpoint is None:
        return model or _fresh_model(config, print_fn), 0
    checkpoint = plan.checkpoint[1]
    model = accelerate.apply(runs.load_model_file(checkpoint), config)
    if initial_epoch >= config.epochs:
        print_fn(f"{run_dir} is complete ({config.epochs} epochs): testing its models again")
        final = run_dir / runs.FINAL
        why = runs.keras_file_damage(final) if final.exists() else None
        if why:
            print_fn(f"{runs.FINAL} is damaged ({why}): rebuilt from {runs.CKPT_DIR}/{checkpoint.name}")
        if why or not final.exists():  # damaged, or killed before final.keras was linked
            runs.atomic_link(checkpoint, final)
    else:
        print_fn(f"resuming {run_dir} after epoch {initial_epoch}")
    if (run_dir / runs.TB_DIR).exists() and accelerate.tensorboard_available():
        _roll_back_tensorboard(run_dir / runs.TB_DIR, initial_epoch,
                               int(keras.ops.convert_to_numpy(model.optimizer.iterations)))
    return model, initial_epoch


class _EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar without its "Epoch i/n" header.

    `_fit` calls ``fit`` once per epoch, so Keras would number epoch 2 of 3 "Epoch 2/2" and print
    nothing for epoch 1; the `EpochSummary` line ("epoch 2/3 ...") numbers every epoch instead.
    Keras prints the header only when ``fit`` runs more than one epoch.
    """

    def set_params(self, params):
        super().set_params(params)
        self.epochs = 1


def _fit(config, run_dir, model, data, initial_epoch, verbose, print_fn):
    """Train epochs ``initial_epoch..epochs-1``, one ``fit`` call per epoch.

    Each epoch shuffles with, and seeds dropout from, a generator of (seed, epoch) alone, so a
    resumed run repeats an uninterrupted one number for number.
    """
    if verbose == "auto":
        verbose = 1 if os.isatty(1) else 0
    best = runs.read_json(run_dir / runs.BEST_INFO, {"val_accuracy": -1.0})["val_accuracy"]
    # Saving is a collective on JAX over several processes: every process saves when process 0
    # does (the others into a scratch folder), so they must agree on the best epoch so far.
    best = cluster.agree("best_val_accuracy", float(best))
    with _scratch_dir() as scratch:
        callbacks = _fit_callbacks(config, scratch or run_dir, best, initial_epoch, verbose, print_fn)
        has_val = len(data.x_val) > 0
        print_fn(f"training {model.name} on {len(data.x_train)} {config.data_set} images "
                 f"({len(data.x_val)} validation) for {config.epochs} epochs into {run_dir}")
        batch, eval_batch = config.batch_size, accelerate.eval_batch_size(config)
        val = _shares((data.x_val, data.y_val), eval_batch) if has_val else None
        for epoch in range(initial_epoch, config.epochs):
            order = _seed_epoch(model, config.seed, epoch).permutation(len(data.x_train))
            x, y = _shares((data.x_train[order], data.y_train[order]), batch)
            model.fit(x, y, batch_size=batch // cluster.count(), epochs=epoch + 1,
                      initial_epoch=epoch, shuffle=False, callbacks=callbacks, validation_data=val,
                      validation_batch_size=eval_batch // cluster.count(), verbose=verbose)


def _shares(arrays, batch_size):
    """This process's rows of every global batch of each array (all rows for one process)."""
    return tuple(cluster.local_share(a, batch_size) for a in arrays)


@contextlib.contextmanager
def _scratch_dir():
    """A throwaway folder for what a process other than 0 would write (None in process 0)."""
    if cluster.is_writer():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bnn-process-") as tmp:
        (Path(tmp) / runs.CKPT_DIR).mkdir()
        yield Path(tmp)


def _fit_callbacks(config, run_dir, best_val, initial_epoch, verbose, print_fn):
    """The callbacks of ``fit``, writing into ``run_dir`` (a scratch folder in processes other
    than 0 of a multi-process run, which compute and save exactly what process 0 does)."""
    callbacks = [
        StopOnNonFiniteLoss(run_dir),
        keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate(config, epoch)),
        keras.callbacks.CSVLogger(str(run_dir / runs.LOG), append=True),
    ]
    # Both logs get an epoch's rows before its checkpoint is written: a run killed in between
    # resumes from the previous checkpoint and rolls the rows back, where the other order would
    # lose the checkpoint epoch's geometry rows for good.
    if not config.no_geometry_log:
        callbacks.append(GeometryLog(run_dir, initial_epoch, tensorboard_dir=run_dir / runs.TB_DIR))
    callbacks.append(RunCheckpoint(run_dir, config, best_val))
    if accelerate.tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / runs.TB_DIR), write_graph=False))
    if verbose:  # the progress bar finishes its line before the epoch summary is printed
        callbacks.append(_EpochProgbar())
    callbacks.append(EpochSummary(config.epochs, print_fn))
    return callbacks


def _test(config, run_dir, data, train_seconds, print_fn):
    cluster.barrier("tested")  # process 0 has written the last checkpoint and best model
    results = {"epochs": config.epochs, "n_train": len(data.x_train), "n_val": len(data.x_val),
               "n_test": len(data.x_test), "train_seconds_this_session": round(train_seconds, 1)}
    best = runs.read_json(run_dir / runs.BEST_INFO)
    for which in ("best", "final"):
        if which == "best" and best is None:
            continue
        _, model = runs.load_run(run_dir, which)
        eval_batch = accelerate.eval_batch_size(config)
        loss, acc = model.evaluate(*_shares((data.x_test, data.y_test), eval_batch),
                                   batch_size=eval_batch // cluster.count(), verbose=0)
        results[f"{which}_test_accuracy"] = float(acc)
        results[f"{which}_test_loss"] = float(loss)
    if best is not None:
        results["best_epoch"], results["best_val_accuracy"] = best["epoch"], best["val_accuracy"]
    if cluster.is_writer():
        runs.atomic_write_json(results, run_dir / runs.RESULTS)
    which = "best" if best else "final"
    where = f" (best validation epoch {best['epoch']})" if best else ""
    print_fn(f"test accuracy {results[f'{which}_test_accuracy']:.4f}{where}; results in {run_dir / runs.RESULTS}")
    return results
