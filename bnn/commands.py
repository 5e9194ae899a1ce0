"""The command lines of the run-directory tools: ``python -m bnn.report``, ``bnn.pack``, ``bnn.summary``.

They are parsed and checked here, in a module that imports only the standard library and
``bnn.cli``, so ``--help``, usage errors, a missing run directory and an unwritable output path
are answered at once; TensorFlow, Keras and matplotlib load only after that (``bnn.cli.load_keras``),
and the work is done by the library functions the notebooks call too. Each module's ``main``
calls its function here; the conventions (one-line errors, exit statuses) are ``bnn.cli``'s and
docs/cli.md describes them.
"""

import argparse
from pathlib import Path

from bnn import cli
from bnn.errors import BnnError

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = "config.json"  # bnn.runs.CONFIG, named here without loading Keras
DEFAULT_N_IMAGES = 500
DEFAULT_BN_IMAGES = 1000
PACKED = "packed.npz"


def default_out_dir(run_dir):
    """Where the report of ``run_dir`` goes by default: ``<repo>/figures/<run directory name>``."""
    return REPO_ROOT / "figures" / Path(run_dir).resolve().name


def _run_dir_args(parser):
    parser.add_argument("--run_dir", type=cli.path_arg, help="a run directory written by run_bnn.py")
    # The older spelling `python -m bnn.X RUN_DIR` keeps working, unlisted.
    parser.add_argument("run_dir_positional", nargs="?", type=cli.path_arg, help=argparse.SUPPRESS)
    parser.add_argument("--which", type=cli.which_arg, default="best",
                        help="'best', 'final' or a checkpoint's epoch (default: best)")


def _run_dir(parser, args):
    """The run directory given (``--run_dir`` or the positional), checked without loading Keras."""
    given = {p for p in (args.run_dir, args.run_dir_positional) if p is not None}
    if not given:
        parser.error("the following arguments are required: --run_dir")
    if len(given) > 1:
        parser.error(f"two run directories given: {' and '.join(sorted(given))}")
    run_dir = Path(given.pop())
    if not run_dir.is_dir():
        raise BnnError(f"run directory {run_dir} does not exist: train a network into it first "
                       f"(python run_bnn.py --run_dir {run_dir}), or give --run_dir of an existing run")
    if not (run_dir / CONFIG).is_file():
        raise BnnError(f"{run_dir} is not a run directory (no {CONFIG}): give --run_dir of a "
                       "directory written by run_bnn.py")
    return run_dir


def report_parser():
    """The parser of ``python -m bnn.report``."""
    parser = cli.Parser("python -m bnn.report",
                        "The geometry report of a trained binary or ternary network: figures (PDF "
                        "and PNG) and geometry.json.")
    _run_dir_args(parser)
    parser.add_argument("--out_dir", type=cli.path_arg,
                        help="where figures go (default: figures/<run directory name>)")
    parser.add_argument("--data_dir", type=cli.path_arg,
                        help="read the data set from here instead of the run's data_dir")
    parser.add_argument("--n_images", type=cli.bounded_int(1), default=DEFAULT_N_IMAGES,
                        help=f"test images to use (default: {DEFAULT_N_IMAGES})")
    parser.add_argument("--seed", type=cli.bounded_int(0, cli.SEED_LIMIT - 1), default=0,
                        help="seed of the sampling and the permutation, in [0, 2**32) (default: 0)")
    parser.add_argument("--skip_bn_experiment", action="store_true",
                        help="skip the binarization-pattern experiment (the slow part)")
    parser.add_argument("--bn_images", type=cli.bounded_int(1), default=DEFAULT_BN_IMAGES,
                        help=f"training images for the batch-norm statistics (default: {DEFAULT_BN_IMAGES})")
    parser.add_argument("--rotation_max_d", type=cli.bounded_int(0), default=None,
                        help="largest d given a Haar rotation R^T sign(R W); the first layer always is "
                             "(default: bnn.network_geometry.ROTATION_MAX_D, 2048; a rotation costs O(d^3))")
    return parser


def _report(argv):
    parser = report_parser()
    args = parser.parse_args(argv)
    run_dir = _run_dir(parser, args)
    out_dir = cli.output_dir(args.out_dir or default_out_dir(run_dir), "--out_dir", create=False)
    cli.load_keras()
    import matplotlib

    matplotlib.use("agg")
    from bnn import network_geometry
    from bnn.report import make_report

    rotation_max_d = args.rotation_max_d
    if rotation_max_d is None:
        rotation_max_d = network_geometry.ROTATION_MAX_D
    make_report(run_dir, args.n_images, out_dir=out_dir, which=args.which, seed=args.seed,
                bn_experiment=not args.skip_bn_experiment, bn_images=args.bn_images,
                data_dir=args.data_dir, rotation_max_d=rotation_max_d)


def report(argv=None):
    """``python -m bnn.report``; returns the exit status."""
    return cli.run(_report, argv)


def pack_parser():
    """The parser of ``python -m bnn.pack``."""
    parser = cli.Parser("python -m bnn.pack", "Export a trained binary or ternary network as "
                        f"bit-packed weights and integer thresholds (RUN_DIR/{PACKED}).")
    _run_dir_args(parser)
    parser.add_argument("--out", type=cli.path_arg, help=f"the file to write (default: RUN_DIR/{PACKED})")
    return parser


def _pack(argv):
    parser = pack_parser()
    args = parser.parse_args(argv)
    run_dir = _run_dir(parser, args)
    out = cli.output_file(args.out or run_dir / PACKED,
                          "--out" if args.out else f"--out (default RUN_DIR/{PACKED})")
    cli.load_keras()
    from bnn.pack import pack_run

    path = pack_run(run_dir, args.which, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def pack(argv=None):
    """``python -m bnn.pack``; returns the exit status."""
    return cli.run(_pack, argv)


def summary_parser():
    """The parser of ``python -m bnn.summary``."""
    parser = cli.Parser("python -m bnn.summary",
                        "Weights by bit width, their memory and MACs by precision of a trained network.")
    _run_dir_args(parser)
    return parser


def _summary(argv):
    parser = summary_parser()
    args = parser.parse_args(argv)
    run_dir = _run_dir(parser, args)
    cli.load_keras()
    from bnn.runs import load_run
    from bnn.summary import summary as print_summary

    print_summary(load_run(run_dir, args.which)[1])


def summary(argv=None):
    """``python -m bnn.summary``; returns the exit status."""
    return cli.run(_summary, argv)
