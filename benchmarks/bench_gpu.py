"""Training speed on a GPU: the paper's network, binary against float, float32 against bfloat16,
at the paper's batch (50) and at a batch that fills the GPU.

    KERAS_BACKEND=jax python benchmarks/bench_gpu.py
    python benchmarks/bench_gpu.py --net conv mlp --batch_sizes 50 1000 4000 --rounds 7
    python benchmarks/bench_gpu.py --variants binary binary/spe=1 binary/spe=128   # steps per execution

Runs ``bench_train.bench`` (each variant in a worker process, rounds alternating) for every batch
size, on the backend of ``--backend`` (default jax, which needs no TensorFlow on the GPU). A batch
size whose workers fail (out of memory) is reported and skipped. Prints images/s per variant and
writes everything to ``--out`` as JSON. The workers share one GPU, so JAX's preallocation of most
of its memory by the first is turned off (``XLA_PYTHON_CLIENT_PREALLOCATE=false``) unless set.
"""

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # read by each worker's JAX

from benchmarks.bench_train import bench  # noqa: E402

VARIANTS = ["binary", "float", "binary/bf16", "float/bf16"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", nargs="+", choices=["conv", "mlp"], default=["conv"])
    p.add_argument("--variants", nargs="+", default=VARIANTS)
    p.add_argument("--batch_sizes", nargs="+", type=int, default=[50, 1000, 4000],
                   help="50 is the paper's; the largest that runs is the one that fills the GPU")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--images_per_round", type=int, default=20000,
                   help="each round trains about this many images (at least 10 steps)")
    p.add_argument("--backend", choices=["jax", "tensorflow"], default="jax")
    p.add_argument("--out", default="bench_gpu.json")
    args = p.parse_args()
    found = {"machine": platform.node(), "backend": args.backend, "results": []}
    for net in args.net:
        for batch in args.batch_sizes:
            steps = max(10, args.images_per_round // batch)
            try:
                times = bench(net, args.variants, args.rounds, steps, batch, backend=args.backend)
            except SystemExit as e:  # a worker that could not start: most often out of memory
                print(f"{net} at batch {batch}: skipped ({e})")
                continue
            for variant, t in times.items():
                found["results"].append({"net": net, "batch_size": batch, "variant": variant,
                                         "images_per_s_median": batch / statistics.median(t),
                                         "images_per_s_best": batch / min(t), "seconds_per_step": t})
    Path(args.out).write_text(json.dumps(found, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
