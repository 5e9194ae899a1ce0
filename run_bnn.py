"""Train a binary (or ternary) neural network on MNIST or CIFAR-10.

    python data/download_data.py --data_set MNIST
    python run_bnn.py --data_set MNIST --conv --fc 2048 2048 2048
    python run_bnn.py --debug          # a one-minute check that everything runs

Running the same command again after an interruption resumes from the last checkpoint.
Every flag is a field of bnn.config.RunConfig; the run directory stores them as config.json.
Exit status and conventions: docs/cli.md.
"""

import importlib.util
import os
import sys

from bnn import cli


def _main(argv):
    from bnn.config import check_training_memory, config_from_args
    from bnn.errors import BnnError

    config = config_from_args(argv, description=__doc__.split("\n\n")[0])
    if os.environ.get("KERAS_BACKEND") == "jax" and importlib.util.find_spec("jax") is None:
        raise BnnError("KERAS_BACKEND=jax but jax is not installed: pip install -r requirements-jax.txt")
    if config.run_dir:  # the default one is checked once its name is known (bnn.runs)
        cli.output_dir(config.run_dir, "--run_dir", create=False)
    check_training_memory(config)
    cli.load_keras()
    from bnn.train import train_and_evaluate

    train_and_evaluate(config)


def main(argv=None):
    """Train as the flags in ``argv`` say; return the exit status (``bnn.cli``: 0, 1, 2, 3 or 130)."""
    return cli.run(_main, argv, interrupted="interrupted: run the same command again to resume "
                   "from the last checkpoint")


if __name__ == "__main__":
    sys.exit(main())
