"""Accuracy on real data, through the real download path.

Serves a folder of real data files (default ``../shared/data``: MNIST and CIFAR-10 in their
official formats) on 127.0.0.1, downloads them with ``data/download_data.py --mirror``, trains
with ``run_bnn.py`` and prints test accuracy, wall time and peak memory of each run.

    python benchmarks/bench_accuracy.py                       # every experiment below
    python benchmarks/bench_accuracy.py --only mnist-binary mnist-float
    python benchmarks/bench_accuracy.py --only cifar-binary --cifar_epochs 5

The shared MNIST training files are a subset (17,435 images) whose checksums differ from the
published ones, hence ``--allow_unverified``.
"""

import argparse
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The MNIST recipe: a 3 x 2048 MLP, dropout 0.2 on the input and 0.3 after hidden layers, batch
# 100, learning rate decayed from 3e-3 to 3e-5 over 80 epochs. (BinaryNet's 0.5 hidden dropout
# with a decay to 3e-7 over 60 epochs underfitted: 96.9% test.)
MNIST_MLP = ["--data_set", "MNIST", "--conv", "--fc", "2048", "2048", "2048", "--dropout_in", "0.2",
             "--dropout_hidden", "0.3", "--batch_size", "100", "--lr_start", "0.003",
             "--val_fraction", "0.05"]
EXPERIMENTS = {
    "mnist-binary": lambda a: [*MNIST_MLP, "--epochs", str(a.mnist_epochs), "--lr_end", str(a.mnist_lr_end)],
    "mnist-float": lambda a: [*MNIST_MLP, "--epochs", str(a.mnist_epochs), "--lr_end", str(a.mnist_lr_end),
                              "--continuous"],
    # the paper's CIFAR-10 network with every default of run_bnn.py, on the 5,085-image subset
    "cifar-binary": lambda a: ["--data_set", "cifar-10", "--epochs", str(a.cifar_epochs), "--ckpt_n", "5",
                               "--lr_end", str(a.cifar_lr_end)],
}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        """Keep the benchmark output free of request lines."""


def serve(folder):
    """Serve ``folder`` on 127.0.0.1 in a daemon thread; return the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def run_timed(cmd, log_path):
    """Run ``cmd`` with its output in ``log_path``; return (exit code, wall seconds, peak RSS MiB)."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"),
                   help="folder with mnist/ and cifar10/ in the official formats")
    p.add_argument("--work", default="/tmp/bnn_bench", help="data and run directories go here")
    p.add_argument("--only", nargs="*", choices=sorted(EXPERIMENTS), default=sorted(EXPERIMENTS))
    p.add_argument("--mnist_epochs", type=int, default=80)
    p.add_argument("--mnist_lr_end", type=float, default=3e-5)
    p.add_argument("--cifar_epochs", type=int, default=10)
    p.add_argument("--cifar_lr_end", type=float, default=1e-5)
    args = p.parse_args()
    shared, work = Path(args.shared), Path(args.work)
    if not shared.is_dir():
        sys.exit(f"error: {shared} does not exist: give --shared FOLDER with mnist/ and cifar10/")
    work.mkdir(parents=True, exist_ok=True)
    mirror = serve(shared)
    data_dir = work / "data"
    for data_set in sorted({"MNIST" if e.startswith("mnist") else "cifar-10" for e in args.only}):
        code, seconds, _ = run_timed([sys.executable, "data/download_data.py", "--data_set", data_set,
                                      "--mirror", mirror, "--allow_unverified", "--data_dir", str(data_dir)],
                                     work / f"download-{data_set}.log")
        if code:
            sys.exit(f"error: download of {data_set} failed, see {work}/download-{data_set}.log")
        print(f"downloaded {data_set} from {mirror} in {seconds:.1f} s")

    rows = []
    for name in args.only:
        run_dir = work / "runs" / name
        flags = EXPERIMENTS[name](args)
        cmd = [sys.executable, "run_bnn.py", *flags, "--data_dir", str(data_dir), "--run_dir", str(run_dir)]
        print("running:", " ".join(["python", "run_bnn.py", *flags]), flush=True)
        code, seconds, rss = run_timed(cmd, work / f"{name}.log")
        if code:
            sys.exit(f"error: {name} failed (exit {code}), see {work}/{name}.log")
        r = json.loads((run_dir / "results.json").read_text())
        rows.append((name, r["n_train"], r["n_test"], r["best_epoch"], r["best_test_accuracy"],
                     r["final_test_accuracy"], seconds, rss))
    print(f"\n{'experiment':14s} {'train':>6s} {'test':>6s} {'best ep':>7s} {'test acc (best val)':>20s} "
          f"{'final':>7s} {'wall':>8s} {'peak RSS':>9s}")
    for name, n_train, n_test, ep, best, final, sec, rss in rows:
        print(f"{name:14s} {n_train:6d} {n_test:6d} {ep:7d} {best:20.4f} {final:7.4f} "
              f"{sec / 60:6.1f} m {rss:6.0f} MiB")


if __name__ == "__main__":
    main()
