"""The paper's CIFAR-10 experiment end to end: train with every default of run_bnn.py (500 epochs),
then write the geometry report of the trained network.

    python benchmarks/reproduce_cifar10.py                          # data in data/, run in runs/
    python benchmarks/reproduce_cifar10.py --data_dir /data --run_dir runs/cifar10-paper
    KERAS_BACKEND=jax python benchmarks/reproduce_cifar10.py -- --distribute

Flags after ``--`` go to run_bnn.py unchanged (speed flags such as ``--distribute`` or
``--dtype_policy mixed_bfloat16``). It trains on whatever CIFAR-10 the data folder holds (get it
with ``python data/download_data.py --data_set cifar-10``). Interrupted, the same command resumes
from the last checkpoint; once training is complete it goes on to ``python -m bnn.report``.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=None, help="where cifar10/ is (default: data/, or $BNN_DATA_DIR)")
    p.add_argument("--run_dir", default=str(REPO / "runs" / "cifar-10-paper"))
    p.add_argument("--n_images", type=int, default=500, help="test images for the report")
    p.add_argument("run_bnn_flags", nargs="*", help="more flags for run_bnn.py, after --")
    args = p.parse_args(argv)
    train = [sys.executable, str(REPO / "run_bnn.py"), "--data_set", "cifar-10", "--run_dir", args.run_dir,
             *(["--data_dir", args.data_dir] if args.data_dir else []), *args.run_bnn_flags]
    report = [sys.executable, "-m", "bnn.report", args.run_dir, "--n_images", str(args.n_images)]
    for cmd in (train, report):
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        code = subprocess.run(cmd, cwd=REPO).returncode
        print(f"({time.perf_counter() - start:.0f} s)", flush=True)
        if code:
            return code
    results = json.loads((Path(args.run_dir) / "results.json").read_text())
    print(f"CIFAR-10, paper's network, {results['epochs']} epochs on {results['n_train']} images: "
          f"test accuracy {results.get('best_test_accuracy', results['final_test_accuracy']):.4f} "
          f"(best validation epoch {results.get('best_epoch', 'n/a')}), final "
          f"{results['final_test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
