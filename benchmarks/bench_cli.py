"""How long each entry point takes to print ``--help`` (a fresh Python process each time).

    python benchmarks/bench_cli.py                 # 7 rounds
    python benchmarks/bench_cli.py --rounds 15

Every entry point parses its arguments before it imports TensorFlow, Keras or requests, so
``--help`` should take well under a second. The programs are run in alternation, round after
round, so a slow moment of the machine touches all of them alike; per program the median, the
best and the worst wall time are printed, and a Python process that does nothing as the floor.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "python run_bnn.py --help": ["run_bnn.py", "--help"],
    "python data/download_data.py --help": ["data/download_data.py", "--help"],
    "python -m bnn.report --help": ["-m", "bnn.report", "--help"],
    "python -m bnn.pack --help": ["-m", "bnn.pack", "--help"],
    "python -m bnn.summary --help": ["-m", "bnn.summary", "--help"],
}


def time_once(args):
    """Wall seconds of ``python ARGS`` run in the repository; raises if it fails."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=120)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(prog="benchmarks/bench_cli.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds over all programs (default: 7)")
    args = parser.parse_args(argv)
    times = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, command in COMMANDS.items():
            times[name].append(time_once(command))
    print(f"{'command':<40}{'median s':>10}{'min s':>8}{'max s':>8}   ({args.rounds} rounds)")
    for name, seconds in times.items():
        print(f"{name:<40}{statistics.median(seconds):>10.3f}{min(seconds):>8.3f}{max(seconds):>8.3f}")


if __name__ == "__main__":
    main()
