"""Wall time of gen_plots.ipynb on a run of the paper's CIFAR-10 network, 500 test images.

The notebook is executed headless as a user would run it (a fresh ``python3`` kernel per run, so
kernel start-up and all imports count), first with the binarization-pattern experiment skipped --
the target is <= 90 s on a 2-core CPU -- then with it, whose own time is read from the
``seconds`` the report writes to ``geometry.json``.

    python benchmarks/bench_gen_plots.py                       # makes a run, then times the notebook
    python benchmarks/bench_gen_plots.py --run_dir runs/cifar-10-binary --data_dir data
    python benchmarks/bench_gen_plots.py --repeats 3 --skip_bn_experiment

Without ``--run_dir`` the run is made here, in a temporary folder: the default CIFAR-10 network
(6 conv layers 128-128-256-256-512-512, 2 dense layers of 1024) trained for one epoch on fake
CIFAR-10 data in the official format (``tests/fake_data.py``: 1,000 training and 500 test images).
The cost of the report does not depend on how well the network was trained.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
NOTEBOOK = REPO_ROOT / "gen_plots.ipynb"
TARGET_S = 90.0


def make_cifar_run(folder):
    """Train the paper's CIFAR-10 network for one epoch on fake data; return (run_dir, data_dir)."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from fake_data import write_cifar10

    import run_bnn

    data_dir, run_dir = Path(folder) / "data", Path(folder) / "cifar-10-binary"
    write_cifar10(data_dir, n_per_batch=200, n_test=500, seed=0)
    start = time.perf_counter()
    if run_bnn.main(["--data_set", "cifar-10", "--epochs", "1", "--data_dir", str(data_dir),
                     "--run_dir", str(run_dir)]) != 0:
        raise SystemExit("training the benchmark run failed")
    print(f"made the run in {time.perf_counter() - start:.0f} s: {run_dir}")
    return run_dir, data_dir


def run_notebook(run_dir, n_images, skip_bn, data_dir=None):
    """Execute the notebook once in a fresh kernel; return (wall seconds, the report's step seconds)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory() as out_dir:
        env = {**os.environ, "BNN_RUN_DIR": str(run_dir), "BNN_OUT_DIR": out_dir, "BNN_N_IMAGES": str(n_images),
               "BNN_SKIP_BN_EXPERIMENT": "1" if skip_bn else "0"}
        if data_dir is not None:
            env["BNN_REPORT_DATA_DIR"] = str(data_dir)
        client = NotebookClient(nb, kernel_name="python3", timeout=1800,
                                resources={"metadata": {"path": str(REPO_ROOT)}})
        start = time.perf_counter()
        client.execute(env=env)
        wall = time.perf_counter() - start
        numbers = json.loads((Path(out_dir) / "geometry.json").read_text())
    if numbers["n_images"] != n_images:
        print(f"  note: the test set held only {numbers['n_images']} images")
    return wall, numbers["seconds"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", default=None, help="time this run instead of making one")
    parser.add_argument("--data_dir", default=None, help="data set folder for --run_dir (default: the run's own)")
    parser.add_argument("--n_images", type=int, default=500, help="test images (default 500)")
    parser.add_argument("--repeats", type=int, default=1, help="runs without the experiment (default 1)")
    parser.add_argument("--skip_bn_experiment", action="store_true",
                        help="do not also time the notebook with the binarization-pattern experiment")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"expected --repeats >= 1. Received: --repeats={args.repeats}")

    with tempfile.TemporaryDirectory() as folder:
        run_dir, data_dir = (Path(args.run_dir), args.data_dir) if args.run_dir else make_cifar_run(folder)
        print(f"gen_plots.ipynb on {run_dir}, {args.n_images} test images, {os.cpu_count()} CPU cores")
        times = []
        for i in range(args.repeats):
            wall, steps = run_notebook(run_dir, args.n_images, skip_bn=True, data_dir=data_dir)
            times.append(wall)
            print(f"  without the batch-norm experiment, run {i + 1}/{args.repeats}: {wall:.1f} s "
                  f"(of which the pass over the test images {steps['analyse']:.1f} s)")
        verdict = "meets" if max(times) <= TARGET_S else "MISSES"
        print(f"without the experiment: min {min(times):.1f} s, median {statistics.median(times):.1f} s, "
              f"max {max(times):.1f} s; target <= {TARGET_S:.0f} s: {verdict} it")
        if not args.skip_bn_experiment:
            wall, steps = run_notebook(run_dir, args.n_images, skip_bn=False, data_dir=data_dir)
            print(f"with the batch-norm experiment: {wall:.1f} s, of which the experiment "
                  f"{steps['binarization_patterns']:.1f} s")


if __name__ == "__main__":
    main()
