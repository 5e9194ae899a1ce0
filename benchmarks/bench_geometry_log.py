"""Cost of the geometry log (``geometry.csv``) against one training epoch.

Builds the paper's CIFAR-10 network (and the MNIST MLP recipe), then alternates rounds of
training steps and calls of ``GeometryLog.on_epoch_end`` so that a shared machine's drift hits
both alike. An epoch's time is the median seconds per step times the steps of one epoch
(45,000 CIFAR-10 training images at batch 50 after the 10% validation split, 57,000 MNIST ones
at batch 100 after 5%); the figure to quote is the median callback time over it.

    python benchmarks/bench_geometry_log.py --rounds 5
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NETS = {
    # the paper's CIFAR-10 network with run_bnn.py's defaults; 45,000 training images
    "conv": (dict(data_set="cifar-10"), 45000),
    # the MNIST recipe's 3 x 2048 MLP at batch 100; 57,000 training images
    "mlp": (dict(data_set="MNIST", conv=[], fc=[2048, 2048, 2048], batch_size=100,
                 val_fraction=0.05), 57000),
}


def bench(net, rounds, steps):
    import numpy as np

    from bnn.config import RunConfig
    from bnn.train import GeometryLog
    from bnn.model import INPUT_SHAPES, build_model
    from bnn.train import compile_model

    fields, n_train = NETS[net]
    config = RunConfig(**fields).resolve()
    model = compile_model(build_model(config), config)
    rng = np.random.default_rng(0)
    b = config.batch_size
    x = rng.uniform(-1, 1, size=(b * steps, *INPUT_SHAPES[config.data_set])).astype("float32")
    y = rng.integers(0, 10, size=b * steps)
    model.fit(x, y, batch_size=b, epochs=1, verbose=0)  # compile
    with tempfile.TemporaryDirectory() as run_dir:
        log = GeometryLog(run_dir, tensorboard_dir=Path(run_dir) / "tensorboard")
        log.set_model(model)
        log.on_train_begin()
        step_s, log_s = [], []
        for epoch in range(rounds):
            start = time.perf_counter()
            model.fit(x, y, batch_size=b, epochs=1, verbose=0, shuffle=False)
            step_s.append((time.perf_counter() - start) / steps)
            start = time.perf_counter()
            log.on_epoch_end(epoch)
            log_s.append(time.perf_counter() - start)
        log.on_train_end()
    epoch = statistics.median(step_s) * n_train / b
    cost = statistics.median(log_s)
    print(f"{net}: geometry log {cost:.3f} s (min {min(log_s):.3f}, max {max(log_s):.3f}); "
          f"{statistics.median(step_s) * 1e3:.0f} ms/step x {n_train // b} steps = epoch {epoch:.0f} s; "
          f"ratio {cost / epoch:.2%}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", choices=sorted(NETS), nargs="*", default=sorted(NETS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    args = parser.parse_args()
    for net in args.net:
        bench(net, args.rounds, args.steps)


if __name__ == "__main__":
    main()
