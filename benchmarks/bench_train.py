"""Training speed: binary network versus the same architecture in float (``--continuous``).

Both models are built in one process, warmed up, and timed in alternating rounds (A B A B ...)
so that drift in a shared machine's speed hits both alike; the figure to quote is the median of
the per-round ratios binary / float (seconds per step), with its min and max.

    python benchmarks/bench_train.py                 # both networks
    python benchmarks/bench_train.py --net mlp --rounds 9
    python benchmarks/bench_train.py --memory        # peak RSS of CIFAR-10 training, batch 50

Random data of the right shapes is used: the cost of a step does not depend on the pixels.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NETS = {
    # the paper's CIFAR-10 network
    "conv": dict(data_set="cifar-10"),
    # a 3 x 2048 multilayer perceptron on MNIST-shaped input
    "mlp": dict(data_set="MNIST", conv=[], fc=[2048, 2048, 2048]),
}


def make_model(net, continuous, batch_size, jit):
    from bnn.config import RunConfig
    from bnn.model import build_model
    from bnn.train import compile_model

    config = RunConfig(**NETS[net], continuous=continuous, batch_size=batch_size).resolve()
    model = compile_model(build_model(config), config)
    model.jit_compile = jit
    return model, config


def time_steps(model, x, y, batch_size, steps):
    """Seconds per training step over ``steps`` steps of one ``fit`` call."""
    start = time.perf_counter()
    model.fit(x[: batch_size * steps], y[: batch_size * steps], batch_size=batch_size, epochs=1,
              shuffle=False, verbose=0)
    return (time.perf_counter() - start) / steps


def bench(net, rounds, steps, batch_size, jit):
    import numpy as np

    from bnn.model import INPUT_SHAPES

    models = {}
    for name, continuous in (("binary", False), ("float", True)):
        models[name], config = make_model(net, continuous, batch_size, jit)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch_size * steps, *INPUT_SHAPES[config.data_set])).astype("float32")
    y = rng.integers(0, 10, batch_size * steps)
    for model in models.values():  # warm-up: tracing and first-call allocation
        time_steps(model, x, y, batch_size, 2)
    times = {"binary": [], "float": []}
    for r in range(rounds):
        order = ("binary", "float") if r % 2 == 0 else ("float", "binary")
        for name in order:
            times[name].append(time_steps(models[name], x, y, batch_size, steps))
    ratios = [b / f for b, f in zip(times["binary"], times["float"])]
    print(f"\n{net}: {rounds} rounds of {steps} steps, batch {batch_size}, jit_compile={jit}")
    for name in ("binary", "float"):
        t = times[name]
        print(f"  {name:7s} images/s  median {batch_size / statistics.median(t):8.1f}   "
              f"min {batch_size / max(t):8.1f}   max {batch_size / min(t):8.1f}")
    print(f"  time per step binary/float: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})   target <= 1.10")
    return ratios


def memory(steps, batch_size):
    """Peak resident memory of a child process that trains the CIFAR-10 network."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
            "from benchmarks.bench_train import make_model, time_steps; import numpy as np; "
            f"m, c = make_model('conv', False, {batch_size}, False); "
            f"x = np.random.default_rng(0).uniform(-1, 1, ({batch_size * steps}, 32, 32, 3)).astype('float32'); "
            f"y = np.zeros({batch_size * steps}, 'int64'); time_steps(m, x, y, {batch_size}, {steps})")
    subprocess.run([sys.executable, "-c", code], check=True)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak resident memory, CIFAR-10 network training at batch {batch_size} on CPU "
          f"({steps} steps, random data): {peak_mib:.0f} MiB")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", choices=["conv", "mlp", "both"], default="both")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=None, help="steps per round (default: conv 4, mlp 40)")
    p.add_argument("--batch_size", type=int, default=50)
    p.add_argument("--no_jit", dest="jit", action="store_false",
                   help="compile the train step without XLA (training uses XLA)")
    p.add_argument("--memory", action="store_true", help="measure peak RSS instead of speed")
    args = p.parse_args()
    if args.memory:
        memory(args.steps or 20, args.batch_size)
        return
    for net in (["conv", "mlp"] if args.net == "both" else [args.net]):
        bench(net, args.rounds, args.steps or {"conv": 4, "mlp": 40}[net], args.batch_size, args.jit)


if __name__ == "__main__":
    main()
