"""Train a binary (or ternary) neural network on MNIST or CIFAR-10.

    python data/download_data.py --data_set MNIST
    python run_bnn.py --data_set MNIST --conv --fc 2048 2048 2048
    python run_bnn.py --debug          # a one-minute check that everything runs

Running the same command again after an interruption resumes from the last checkpoint.
Every flag is a field of bnn.config.RunConfig; the run directory stores them as config.json.
"""

import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's start-up chatter


def main(argv=None):
    if os.environ.get("KERAS_BACKEND") == "jax" and importlib.util.find_spec("jax") is None:
        print("error: KERAS_BACKEND=jax but jax is not installed: pip install -r requirements-jax.txt",
              file=sys.stderr)
        return 2
    from bnn.config import config_from_args
    from bnn.errors import BnnError

    try:
        config = config_from_args(argv, description=__doc__.split("\n\n")[0])
        from bnn.train import train_and_evaluate

        train_and_evaluate(config)
    except BnnError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
