"""Wall time of the binarization-pattern experiment with its binary layers on bit-packed words
(`bnn.packed_layers`) against the float layers, alternately in one process, and whether the two give
the same accuracies (they must: the packed dot products are the float ones exactly).

    python benchmarks/bench_pattern_experiment.py --run_dir runs/cifar-10-binary --data_dir ~/bnn_data --rounds 2

Prints one batch's time per packed layer (packed against float), each round's seconds per engine,
then median, best (min) and max, and the accuracies of each pattern before and after re-estimating
batch norm.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_once(report, n_train, packed, batch_size=100):
    """(seconds, {pattern: (accuracy before, accuracy after)}) of one run of the experiment."""
    import numpy as np

    from bnn import pattern_experiment as pe

    start = time.perf_counter()
    accuracies = {}
    for label, _, before, after in pe.pattern_scores(report.config, report.model, report.data.x_train[:n_train],
                                                     report.x_test, batch_size, packed=packed):
        accuracies[label] = tuple(float(np.mean(s.argmax(-1) == report.y_test)) for s in (before, after))
    return time.perf_counter() - start, accuracies


def time_layers(report, rounds=3, batch_size=100):
    """Print, per packed layer, the best of ``rounds`` timings of one batch: packed against float."""
    import keras

    from bnn import pattern_experiment as pe
    from bnn.packed_layers import PackedLayers

    model = report.model
    chain = model.layers[1:]
    packed = PackedLayers(chain)
    x = report.x_test[:batch_size]
    print(f"one batch of {len(x)} images per layer, best of {rounds} (milliseconds):")
    for layer in chain:
        fast = packed.get(layer)
        if fast is None:
            continue
        h = keras.Model(model.input, layer.input).predict(x, verbose=0)
        engines = {"packed": lambda h=h: fast(h).numpy(),
                   "float": lambda h=h: pe._compiled((layer,), tuple(h.shape[1:])).predict_on_batch(h)}
        best = {}
        for name, run in engines.items():
            run()  # compile
            best[name] = min(_seconds(run) for _ in range(rounds)) * 1000
        print(f"  {layer.name:<6} input {tuple(h.shape[1:])}: packed {best['packed']:.0f}, float {best['float']:.0f} "
              f"({best['float'] / best['packed']:.1f}x)")


def _seconds(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(argv=None):
    from bnn import report as gen

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True, help="a run of a binary network")
    parser.add_argument("--data_dir", default=None,
                        help="where the data sets are (default: the run's --data_dir if it had one, "
                             "else $BNN_DATA_DIR, else data/)")
    parser.add_argument("--n_images", type=int, default=gen.DEFAULT_N_IMAGES, help="test images")
    parser.add_argument("--bn_images", type=int, default=gen.DEFAULT_BN_IMAGES,
                        help="training images for the batch-norm statistics")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    report = gen.open_run(args.run_dir, args.n_images, data_dir=args.data_dir, print_fn=lambda *a: None)
    print(f"binarization-pattern experiment on {args.run_dir}: {len(report.y_test)} test images, "
          f"{min(args.bn_images, len(report.data.x_train))} for batch norm, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    time_layers(report)
    times, results = {"packed": [], "float": []}, {}
    for i in range(args.rounds):
        for name in times:
            seconds, results[name] = run_once(report, args.bn_images, packed=name == "packed")
            times[name].append(seconds)
            print(f"  round {i + 1}/{args.rounds} {name}: {seconds:.1f} s; load average {os.getloadavg()[0]:.1f}",
                  flush=True)
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.1f} s, best {min(values):.1f} s, "
              f"max {max(values):.1f} s ({len(values)} rounds)")
    ratios = [f / p for f, p in zip(times["float"], times["packed"])]
    print(f"float / packed per round: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
    same = results["packed"] == results["float"]
    print(f"accuracies {'identical' if same else 'DIFFER'} (before / after re-estimation):")
    for label, (before, after) in results["packed"].items():
        other = results["float"][label]
        print(f"  {label:<26} {before:.4f} / {after:.4f}" + ("" if other == (before, after) else f"   float: {other}"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
