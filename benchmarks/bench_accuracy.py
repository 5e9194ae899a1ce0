"""Test accuracy, wall time and peak memory of the reference training runs.

Trains with ``run_bnn.py`` on the data it would use itself (``--data_dir``, else
``$BNN_DATA_DIR``, else ``data/``) and prints each run's test accuracy, wall time and peak
memory. With ``--mirror URL`` the data sets are first fetched through the real download path,
``data/download_data.py --mirror URL`` into that data directory.

    python benchmarks/bench_accuracy.py                               # every experiment below
    python benchmarks/bench_accuracy.py --data_dir ~/bnn_data --only mnist-binary mnist-float
    python benchmarks/bench_accuracy.py --only cifar-binary --cifar_epochs 5
    python benchmarks/bench_accuracy.py --mirror http://127.0.0.1:8765 --allow_unverified \\
        --data_dir /tmp/bnn_bench/data

``--allow_unverified`` is passed on to the downloader, for a mirror that serves subsets of the
official files (their checksums differ from the published ones).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bnn.cli import Parser, bounded_int, finite_float, output_dir, path_arg, run  # noqa: E402

# The MNIST recipe: a 3 x 2048 MLP, dropout 0.2 on the input and 0.3 after hidden layers, batch
# 100, learning rate decayed from 3e-3 to 3e-5 over 80 epochs. BinaryNet's own (0.5 hidden
# dropout, decayed to 3e-7 over 60 epochs) underfits the 17,435-image MNIST subset.
MNIST_MLP = ["--data_set", "MNIST", "--conv", "--fc", "2048", "2048", "2048", "--dropout_in", "0.2",
             "--dropout_hidden", "0.3", "--batch_size", "100", "--lr_start", "0.003",
             "--val_fraction", "0.05"]
EXPERIMENTS = {
    "mnist-binary": lambda a: [*MNIST_MLP, "--epochs", str(a.mnist_epochs), "--lr_end", str(a.mnist_lr_end)],
    "mnist-float": lambda a: [*MNIST_MLP, "--epochs", str(a.mnist_epochs), "--lr_end", str(a.mnist_lr_end),
                              "--continuous"],
    # the paper's CIFAR-10 network with every default of run_bnn.py but the schedule's length
    "cifar-binary": lambda a: ["--data_set", "cifar-10", "--epochs", str(a.cifar_epochs), "--ckpt_n", "5",
                               "--lr_end", str(a.cifar_lr_end)],
}


def run_timed(cmd, log_path):
    """Run ``cmd`` with its output in ``log_path``; return (exit code, wall seconds, peak RSS MiB)."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss / 1024


def _failed(what, code, log_path):
    """Exit with ``what``'s exit status and the last line of its log (its own one-line error)."""
    lines = Path(log_path).read_text(errors="replace").strip().splitlines()
    last = lines[-1].removeprefix("error: ") if lines else "no output"
    print(f"error: {what} failed (exit {code}): {last} (log: {log_path})", file=sys.stderr)
    return code


def main(argv=None):
    p = Parser("python benchmarks/bench_accuracy.py", __doc__.splitlines()[0])
    p.add_argument("--data_dir", type=path_arg, default=None,
                   help="where the data sets are, as for run_bnn.py (default: $BNN_DATA_DIR, else data/)")
    p.add_argument("--mirror", default=None,
                   help="first download the data sets from this base URL into the data directory")
    p.add_argument("--allow_unverified", action="store_true",
                   help="with --mirror: keep files whose MD5 differs from the published one")
    p.add_argument("--out_dir", type=path_arg, default="/tmp/bnn_bench",
                   help="run directories and logs go here")
    p.add_argument("--only", nargs="*", choices=sorted(EXPERIMENTS), default=sorted(EXPERIMENTS))
    p.add_argument("--mnist_epochs", type=bounded_int(1), default=80)
    p.add_argument("--mnist_lr_end", type=finite_float(0, low_open=True), default=3e-5)
    p.add_argument("--cifar_epochs", type=bounded_int(1), default=10)
    p.add_argument("--cifar_lr_end", type=finite_float(0, low_open=True), default=1e-5)
    args = p.parse_args(argv)
    out = output_dir(args.out_dir)
    data_flag = ["--data_dir", args.data_dir] if args.data_dir else []

    if args.mirror:
        for data_set in sorted({"MNIST" if e.startswith("mnist") else "cifar-10" for e in args.only}):
            log = out / f"download-{data_set}.log"
            code, seconds, _ = run_timed([sys.executable, "data/download_data.py", "--data_set", data_set,
                                          "--mirror", args.mirror, *data_flag,
                                          *(["--allow_unverified"] if args.allow_unverified else [])], log)
            if code:
                return _failed(f"download of {data_set}", code, log)
            print(f"downloaded {data_set} from {args.mirror} in {seconds:.1f} s", flush=True)

    rows = []
    for name in args.only:
        run_dir, log = out / "runs" / name, out / f"{name}.log"
        flags = EXPERIMENTS[name](args)
        print("running:", " ".join(["python", "run_bnn.py", *flags, *data_flag]), flush=True)
        code, seconds, rss = run_timed([sys.executable, "run_bnn.py", *flags, *data_flag,
                                        "--run_dir", str(run_dir)], log)
        if code:
            return _failed(name, code, log)
        r = json.loads((run_dir / "results.json").read_text())
        rows.append((name, r["n_train"], r["n_test"], r["best_epoch"], r["best_test_accuracy"],
                     r["final_test_accuracy"], seconds, rss))
    print(f"\n{'experiment':14s} {'train':>6s} {'test':>6s} {'best ep':>7s} {'test acc (best val)':>20s} "
          f"{'final':>7s} {'wall':>8s} {'peak RSS':>9s}")
    for name, n_train, n_test, ep, best, final, sec, rss in rows:
        print(f"{name:14s} {n_train:6d} {n_test:6d} {ep:7d} {best:20.4f} {final:7.4f} "
              f"{sec / 60:6.1f} m {rss:6.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
