"""Wall time of the whole of gen_plots.ipynb, binarization-pattern experiment included, on a run of the
paper's CIFAR-10 network with 500 test images. Target: <= 60 s on the 2-core CPU.

The notebook is executed headless as a user would run it (a fresh ``python3`` kernel per run, so
kernel start-up and all imports count). ``--rounds`` repeats it and prints median, best (min) and
max, with the report's own step times (``seconds`` in geometry.json). ``--compare REPO`` runs another
checkout's notebook (e.g. ``git archive main | tar -x -C /tmp/main``) alternately with this one, round
by round, so that both see the same load: on a shared machine, compare only interleaved numbers.

    python benchmarks/bench_gen_plots.py                       # makes a run, then times the notebook
    python benchmarks/bench_gen_plots.py --run_dir runs/cifar-10-binary --data_dir data --rounds 3
    python benchmarks/bench_gen_plots.py --run_dir R --data_dir D --rounds 3 --compare /tmp/main

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
TARGET_S = 60.0


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


def run_notebook(run_dir, n_images, skip_bn=False, data_dir=None, repo=REPO_ROOT):
    """Execute ``repo``'s gen_plots.ipynb once in a fresh kernel started in ``repo`` (so that it
    imports that checkout's bnn); return (wall seconds, the report's step seconds)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(Path(repo) / "gen_plots.ipynb", as_version=4)
    with tempfile.TemporaryDirectory() as out_dir:
        env = {**os.environ, "BNN_RUN_DIR": str(run_dir), "BNN_OUT_DIR": out_dir, "BNN_N_IMAGES": str(n_images),
               "BNN_SKIP_BN_EXPERIMENT": "1" if skip_bn else "0"}
        if data_dir is not None:
            env["BNN_REPORT_DATA_DIR"] = str(data_dir)
        client = NotebookClient(nb, kernel_name="python3", timeout=3600, resources={"metadata": {"path": str(repo)}})
        start = time.perf_counter()
        client.execute(env=env)
        wall = time.perf_counter() - start
        numbers = json.loads((Path(out_dir) / "geometry.json").read_text())
    if numbers["n_images"] != n_images:
        print(f"  note: the test set held only {numbers['n_images']} images")
    return wall, numbers["seconds"]


def summary(times):
    return (f"median {statistics.median(times):.1f} s, best {min(times):.1f} s, max {max(times):.1f} s "
            f"({len(times)} rounds)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", default=None, help="time this run instead of making one")
    parser.add_argument("--data_dir", default=None, help="data set folder for --run_dir (default: the run's own)")
    parser.add_argument("--n_images", type=int, default=500, help="test images (default 500)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of the whole notebook (default 1)")
    parser.add_argument("--skip_bn_experiment", action="store_true", help="time the notebook without the experiment")
    parser.add_argument("--compare", default=None, help="another checkout whose notebook runs alternately")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"expected --rounds >= 1. Received: --rounds={args.rounds}")
    repos = {"this": REPO_ROOT, **({"compare": Path(args.compare)} if args.compare else {})}

    with tempfile.TemporaryDirectory() as folder:
        run_dir, data_dir = (Path(args.run_dir), args.data_dir) if args.run_dir else make_cifar_run(folder)
        print(f"gen_plots.ipynb on {run_dir}, {args.n_images} test images, {os.cpu_count()} CPU cores, "
              f"experiment {'skipped' if args.skip_bn_experiment else 'included'}; load average "
              f"{os.getloadavg()[0]:.1f}")
        times = {name: [] for name in repos}
        for i in range(args.rounds):
            for name, repo in repos.items():
                wall, steps = run_notebook(run_dir, args.n_images, args.skip_bn_experiment, data_dir, repo)
                times[name].append(wall)
                print(f"  round {i + 1}/{args.rounds} {name} ({repo}): {wall:.1f} s; steps "
                      + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items())
                      + f"; load average {os.getloadavg()[0]:.1f}", flush=True)
        for name, values in times.items():
            verdict = "meets" if statistics.median(values) <= TARGET_S else "MISSES"
            print(f"{name}: {summary(values)}; target <= {TARGET_S:.0f} s: {verdict} it")


if __name__ == "__main__":
    main()
