"""Training speed, variants side by side: binary / float, XLA on / off, bfloat16, Larq.

Each variant trains in a process of its own, warmed up once; the rounds then go to the variants
in turn (A B C A B C ..., order reversed every other round), so that drift in a shared machine's
speed hits all alike. Reported per variant: images/s of the median, the slowest (min) and the
fastest (max, the best) round; and the per-round ratio of seconds per step binary / float, the
figure to quote for what binarization costs.

    python benchmarks/bench_train.py                                # conv and MLP, XLA on and off
    python benchmarks/bench_train.py --net mlp --rounds 9 --variants binary/xla float/xla
    python benchmarks/bench_train.py --net conv --larq larq-venv/bin/python
    python benchmarks/bench_train.py --backend jax --variants binary float binary/bf16
    python benchmarks/bench_train.py --memory        # peak RSS of CIFAR-10 training, batch 50
    python benchmarks/bench_train.py --adam --larq /work/larq-venv/bin/python   # Adam, batch norm alone

A variant is ``binary`` or ``float`` (``--continuous``) with options joined by ``/``: ``xla``,
``noxla`` or ``auto`` (``--jit_compile``; default ``auto``, here the rule, not a measurement),
``stopgrad`` (the straight-through gradient through stop_gradient, not custom_gradient),
``kerasbn`` (Keras's own BatchNormalization, not `bnn.batch_norm`'s fused one), ``bf16`` (``--dtype_policy
mixed_bfloat16``), ``spe=N`` (``--steps_per_execution N``), ``malloc`` (TensorFlow's CPU tensors
from ``malloc``, ``TF_CPU_ALLOCATOR_USE_BFC=false``, instead of the BFC allocator
that ``import bnn`` selects; see bnn/__init__.py), ``glibc`` (``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=1073741824``: glibc's heap keeps freed blocks, for JAX); or
``larq/binary``, ``larq/float``:
the same network in Larq 0.14, run by the Python given with ``--larq``
(benchmarks/larq_reference.py). Random data of the right shapes: the cost of a step does not
depend on the pixels.

Besides wall-clock speed, each variant's CPU seconds per step are reported: on a machine that
stalls whole rounds at random they are the steadier measure of the work a step does.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NETS = {
    # the paper's CIFAR-10 network
    "conv": dict(data_set="cifar-10"),
    # a 3 x 2048 multilayer perceptron on MNIST-shaped input
    "mlp": dict(data_set="MNIST", conv=[], fc=[2048, 2048, 2048]),
}
DEFAULT_STEPS = {"conv": 4, "mlp": 40}
JIT = {"xla": "on", "noxla": "off", "auto": "auto"}
# Options that set the worker's environment instead of a RunConfig field.
ENV_OPTIONS = {"malloc": {"TF_CPU_ALLOCATOR_USE_BFC": "false"},
               # glibc keeps freed blocks in the heap instead of unmapping them (JAX has no
               # caching CPU allocator of its own); read by glibc when the worker starts
               "glibc": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "1073741824"}}
# Options that change the worker's code: ``stopgrad`` gives the quantizers the same
# straight-through gradient through stop_gradient instead of a custom_gradient (its cost);
# ``kerasbn`` builds the network with Keras's own BatchNormalization instead of bnn's fused one.
CODE_OPTIONS = ("stopgrad", "kerasbn")


def stop_gradient_ste(forward, cancel=True, backward=None):
    """``bnn.quantizers.straight_through`` without ``custom_gradient``: ``x*m + sg(q(x) - x*m)``,
    ``m = 1[|x| <= 1]`` (or 1), whose gradient is ``m`` and whose value is ``q(x)`` (up to
    rounding, which a speed benchmark does not mind)."""
    from keras import ops

    def f(x):
        through = x * ops.cast(ops.abs(x) <= 1.0, x.dtype) if cancel else x
        return through + ops.stop_gradient(forward(x) - through)

    return f


def patch_code(options):
    if "stopgrad" in options:
        from bnn import quantizers

        # every Quantizer looks straight_through up when called
        quantizers.straight_through = stop_gradient_ste
    if "kerasbn" in options:
        import keras

        from bnn import model

        model.BatchNormalization = keras.layers.BatchNormalization


def parse_variant(variant):
    """``'binary/noxla/bf16'`` -> RunConfig overrides ``{'continuous': False, 'jit_compile': 'off', ...}``."""
    kind, *options = variant.split("/")
    if kind not in ("binary", "float"):
        raise SystemExit(f"error: variant {variant!r} must start with binary, float or larq/")
    overrides = {"continuous": kind == "float"}
    for option in options:
        if option in JIT:
            overrides["jit_compile"] = JIT[option]
        elif option == "bf16":
            overrides["dtype_policy"] = "mixed_bfloat16"
        elif option.startswith("spe="):
            overrides["steps_per_execution"] = int(option[4:])
        elif option not in ENV_OPTIONS and option not in CODE_OPTIONS:
            raise SystemExit(f"error: unknown option {option!r} in variant {variant!r}")
    return overrides


def make_model(net, batch_size, **overrides):
    """The compiled network of ``net`` with ``overrides`` of RunConfig (as training makes it)."""
    import keras

    from bnn import accelerate
    from bnn.config import RunConfig
    from bnn.model import build_model
    from bnn.train import compile_model

    config = RunConfig(**NETS[net], batch_size=batch_size, **overrides).resolve()
    keras.config.set_dtype_policy(config.dtype_policy)
    model = compile_model(build_model(config), config)
    keras.config.set_dtype_policy("float32")
    return model, config, accelerate.jit_compile(config)


def random_data(config, n):
    import numpy as np

    from bnn.model import INPUT_SHAPES

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n, *INPUT_SHAPES[config.data_set])).astype("float32")
    return x, rng.integers(0, 10, n)


def time_steps(model, x, y, batch_size, steps):
    """Wall-clock and CPU seconds (all threads) per training step over ``steps`` steps of one ``fit``."""
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x[: batch_size * steps], y[: batch_size * steps], batch_size=batch_size, epochs=1,
              shuffle=False, verbose=0)
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


def worker(net, variant, steps, batch_size):
    """Serve timing rounds on stdin / stdout: print 'ready', then seconds per step for each 'go'."""
    patch_code(variant.split("/")[1:])
    model, config, jit = make_model(net, batch_size, **parse_variant(variant))
    x, y = random_data(config, batch_size * steps)
    time_steps(model, x, y, batch_size, 2)  # warm-up: tracing, compilation, first allocation
    print(f"ready jit_compile={jit}", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        print("%.6f %.6f" % time_steps(model, x, y, batch_size, steps), flush=True)


def worker_env(variant, backend):
    """The environment of ``variant``'s worker process."""
    env = {**os.environ, **({"KERAS_BACKEND": backend} if backend else {})}
    for option in variant.split("/")[1:]:
        env.update(ENV_OPTIONS.get(option, {}))
    return env


def start_worker(net, variant, steps, batch_size, larq, backend):
    env = worker_env(variant, backend)
    if variant.startswith("larq/"):
        if not larq:
            raise SystemExit(f"error: variant {variant} needs --larq PYTHON (a Python with larq 0.14)")
        cmd = [larq, str(REPO / "benchmarks" / "larq_reference.py"), "--kind", variant[5:]]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant]
    cmd += ["--net", net, "--steps", str(steps), "--batch_size", str(batch_size)]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        raise SystemExit(f"error: the {variant} worker did not start ({' '.join(cmd)})")
    return proc, line.split()[1] if len(line.split()) > 1 else "jit_compile=False"


def bench(net, variants, rounds, steps, batch_size, larq=None, backend=None):
    """Time ``variants`` of ``net`` in alternating rounds; print and return seconds per step."""
    workers = {}
    try:
        for v in variants:  # started one at a time, so compilation does not overlap timing
            workers[v] = start_worker(net, v, steps, batch_size, larq, backend)
        times = {v: [] for v in variants}
        cpu = {v: [] for v in variants}
        for r in range(rounds):
            for v in (variants if r % 2 == 0 else variants[::-1]):
                proc = workers[v][0]
                proc.stdin.write("go\n")
                proc.stdin.flush()
                wall, cpu_time = proc.stdout.readline().split()
                times[v].append(float(wall))
                cpu[v].append(float(cpu_time))
    finally:
        for proc, _ in workers.values():
            proc.stdin.close()
            proc.wait()
    print(f"\n{net}: {rounds} rounds of {steps} steps, batch {batch_size}, backend "
          f"{backend or os.environ.get('KERAS_BACKEND', 'tensorflow')}; images/s")
    print(f"  {'variant':36s} {'median':>8s} {'min':>8s} {'max=best':>8s}   CPU ms/step median (min-max)")
    for v in variants:
        t = times[v]
        label = f"{v} ({workers[v][1]})" if not v.startswith("larq/") else f"{v} (no XLA)"
        c = cpu[v]
        cpu_text = f"{1000 * statistics.median(c):8.1f} ({1000 * min(c):.1f}-{1000 * max(c):.1f})"
        print(f"  {label:36s} {batch_size / statistics.median(t):8.1f} {batch_size / max(t):8.1f} "
              f"{batch_size / min(t):8.1f}   {cpu_text}")
    for v in variants:
        twin = v.replace("binary", "float", 1)
        if v.startswith(("binary", "larq/binary")) and twin in times:
            for what, measure in (("seconds", times), ("CPU seconds", cpu)):
                ratios = [b / f for b, f in zip(measure[v], measure[twin])]
                print(f"  {what} per step {v} / {twin}: median {statistics.median(ratios):.3f} "
                      f"(min {min(ratios):.3f}, max {max(ratios):.3f})")
    return times


# Timing of one part in Keras 3 or tf-keras: CODE_HEAD + the part's code (defining step()) + CODE_TAIL.
CODE_HEAD = """
import os, sys, time, statistics
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
    import tf_keras as keras
else:
    import keras
"""
CODE_TAIL = """
step()
times = []
for _ in range({rounds}):
    start = time.process_time()
    step()
    times.append(time.process_time() - start)
print("%.1f %.1f %.1f" % (1000 * statistics.median(times), 1000 * min(times), 1000 * max(times)))
"""

ADAM_CODE = CODE_HEAD + """
shapes = {shapes!r}
variables = [tf.Variable(tf.random.uniform(s, -1, 1)) for s in shapes]
grads = [tf.random.uniform(s, -1, 1) for s in shapes]
opt = keras.optimizers.Adam(learning_rate=1e-3, clipvalue=1.0)
step = tf.function(lambda: opt.apply_gradients(zip(grads, variables)))
""" + CODE_TAIL


BN_CODE = CODE_HEAD + """
# the conv network's batch-norm inputs at batch 50: (50, 32, 32, 128) ... (50, 4, 4, 512)
shapes = [(50, 32, 32, 128), (50, 16, 16, 128), (50, 16, 16, 256), (50, 8, 8, 256), (50, 8, 8, 512), (50, 4, 4, 512)]
{bn_import}
layers = [BatchNormalization(momentum=0.9, epsilon=1e-4) for _ in shapes]
xs = [tf.random.uniform(s, -1, 1) for s in shapes]

@tf.function
def step():
    with tf.GradientTape() as tape:
        tape.watch(xs)
        loss = tf.add_n([tf.reduce_sum(layer(x, training=True)) for layer, x in zip(layers, xs)])
    return tape.gradient(loss, xs)

""" + CODE_TAIL


def _keras_3_and_tf_keras(code, larq, fused_code=None):
    """Run ``code`` (it prints 'median min max') in Keras 3 here and in tf-keras under ``larq``,
    and ``fused_code`` (the same part on `bnn.batch_norm`), if given, in Keras 3."""
    for name, python, text, env in (("Keras 3", sys.executable, code, {}), ("bnn fused", sys.executable, fused_code, {}),
                                    ("tf-keras", larq, code, {"TF_USE_LEGACY_KERAS": "1"})):
        if python is None or text is None:
            continue
        out = subprocess.run([python, "-c", text], env={**os.environ, **env}, capture_output=True,
                             text=True, check=True).stdout.split()
        print(f"  {name:9s} {out[0]} ({out[1]}-{out[2]})")


def batch_norm(rounds, larq):
    """CPU ms of forward and backward through the conv network's six batch norms (training mode)."""
    print(f"batch norm forward + backward, the conv network's 6 layers at batch 50, CPU ms median "
          f"(min-max) of {rounds}:")
    fused = f"sys.path.insert(0, {str(REPO)!r})\nfrom bnn.batch_norm import BatchNormalization"
    _keras_3_and_tf_keras(BN_CODE.format(rounds=rounds, bn_import="BatchNormalization = keras.layers.BatchNormalization"),
                          larq, BN_CODE.format(rounds=rounds, bn_import=fused))


def adam(rounds, larq):
    """CPU ms of one Adam update (gradient clipping included) of the conv network's weights:
    Keras 3 here, tf-keras in the Python given with ``--larq``."""
    import math

    from bnn.config import RunConfig
    from bnn.model import build_model

    shapes = [tuple(w.shape) for w in build_model(RunConfig(**NETS["conv"]).resolve()).trainable_weights]
    print(f"Adam update of the conv network's {sum(math.prod(s) for s in shapes):,} "
          f"weights ({len(shapes)} tensors), CPU ms median (min-max) of {rounds}:")
    _keras_3_and_tf_keras(ADAM_CODE.format(shapes=shapes, rounds=rounds), larq)


def memory(steps, batch_size):
    """Peak resident memory of a child process that trains the CIFAR-10 network."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            "from benchmarks.bench_train import make_model, random_data, time_steps; "
            f"m, c, _ = make_model('conv', {batch_size}); x, y = random_data(c, {batch_size * steps}); "
            f"time_steps(m, x, y, {batch_size}, {steps})")
    subprocess.run([sys.executable, "-c", code], check=True)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak resident memory, CIFAR-10 network training at batch {batch_size} on CPU "
          f"({steps} steps, random data): {peak_mib:.0f} MiB")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", choices=["conv", "mlp", "both"], default="both")
    p.add_argument("--variants", nargs="+",
                   default=["binary/xla", "binary/noxla", "float/xla", "float/noxla"])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=None, help="steps per round (default: conv 4, mlp 40)")
    p.add_argument("--batch_size", type=int, default=50)
    p.add_argument("--backend", choices=["tensorflow", "jax"], default=None,
                   help="Keras backend of the workers (default: $KERAS_BACKEND, else tensorflow)")
    p.add_argument("--larq", metavar="PYTHON", help="a Python with larq 0.14: adds larq/binary")
    p.add_argument("--memory", action="store_true", help="measure peak RSS instead of speed")
    p.add_argument("--adam", action="store_true", help="time one Adam update and the batch norms of the "
                   "conv network in Keras 3 and (with --larq) tf-keras, instead of whole steps")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.net, args.worker, args.steps, args.batch_size)
        return
    if args.memory:
        memory(args.steps or 20, args.batch_size)
        return
    if args.adam:
        adam(args.rounds, args.larq)
        batch_norm(args.rounds, args.larq)
        return
    variants = args.variants + (["larq/binary"] if args.larq and "larq/binary" not in args.variants
                                else [])
    for net in (["conv", "mlp"] if args.net == "both" else [args.net]):
        bench(net, variants, args.rounds, args.steps or DEFAULT_STEPS[net], args.batch_size,
              args.larq, args.backend)


if __name__ == "__main__":
    main()
