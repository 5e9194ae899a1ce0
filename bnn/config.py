"""The one configuration object of a training run.

``run_bnn.py`` builds its command line from :class:`RunConfig`, the run directory stores it as
``config.json`` beside the weights, and everything downstream (resume, the notebooks, reports)
reads it back from there, so no parameter is ever retyped.
"""

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from bnn.errors import BnnError

DATA_SETS = {"mnist": "MNIST", "cifar-10": "cifar-10"}
LOSS_MODES = ("hinge-loss", "softmax")
# Debug runs: a fraction of the data, a few epochs, so the whole path runs in about a minute.
DEBUG_SIZES = {"train": 500, "val": 100, "test": 500}
DEBUG_EPOCHS = 2
# Fields that only say where things are; they may differ when a run is resumed.
PATH_FIELDS = ("run_dir", "data_dir", "param_file")
# Fields that only say how fast a run goes (bnn/accelerate.py); they may differ on resume too.
RUNTIME_FIELDS = ("jit_compile", "steps_per_execution", "distribute")
JIT_MODES = ("auto", "on", "off")
DTYPE_POLICIES = ("float32", "mixed_bfloat16")


def _arg(default, help, **cli):
    return field(default=default, metadata={"help": help, **cli})


def _list_arg(default, help, **cli):
    return field(default_factory=lambda: list(default), metadata={"help": help, "nargs": "*", **cli})


@dataclass
class RunConfig:
    """Every hyperparameter of a run (flag names and defaults of the original repository).

    The per-layer lists ``max_pool``, ``quantize_weights`` and ``quantize_activations`` may be
    given as ``None`` and are filled in by :meth:`resolve`.
    """

    data_set: str = _arg("cifar-10", "data set to train on: MNIST or cifar-10")
    batch_size: int = _arg(50, "size of batches for training")
    epochs: int = _arg(None, "number of epochs in training (default: 500, or 2 with --debug)",
                       type=int)
    lr_start: float = _arg(0.001, "learning rate for the first epoch")
    lr_end: float = _arg(3e-7, "learning rate for the last epoch (exponential decay per epoch)")
    loss_mode: str = _arg("hinge-loss", "hinge-loss (squared hinge on +-1 targets) or softmax")
    conv: list = _list_arg([128, 128, 256, 256, 512, 512],
                           "feature maps of each conv layer; give --conv alone for an MLP", type=int)
    fc: list = _list_arg([1024, 1024], "units of each hidden fully connected layer", type=int)
    max_pool: list = _arg(None, "1/0 per conv layer: 2x2 max pool after it "
                          "(default: after every second layer)", nargs="*", type=int)
    filter_size: int = _arg(3, "side of the square conv filters")
    ckpt_n: int = _arg(10, "save a checkpoint every n epochs")
    keep_ckpts: int = _arg(5, "keep the newest n periodic checkpoints (0 keeps all)")
    continuous: bool = _arg(False, "float weights and hard-tanh activations (the float baseline)")
    debug: bool = _arg(False, "quick test: a small fraction of the data and 2 epochs")
    levels: int = _arg(2, "2 = binary, 3 = ternary weights and activations")
    threshold: float = _arg(0.0, "ternarization threshold in [0, 1) (levels 3)")
    quantize_weights: list = _arg(None, "1/0 per weight layer (conv, fc, output): quantize its "
                                  "weights (default: all, unless --continuous)", nargs="*", type=int)
    quantize_activations: list = _arg(None, "1/0 per hidden layer (conv, fc): quantize its "
                                      "activations (default: all, unless --continuous)",
                                      nargs="*", type=int)
    dropout_in: float = _arg(0.0, "dropout rate on the input image")
    dropout_hidden: float = _arg(0.0, "dropout rate after each hidden layer's activation")
    val_fraction: float = _arg(0.1, "fraction of the training files held out for validation")
    seed: int = _arg(0, "random seed (initialisation, split, shuffling)")
    param_file: str = _arg(None, "start from these weights: a .keras file or a run directory")
    run_dir: str = _arg(None, "where checkpoints and logs go (default: runs/<data set>-<mode>)")
    data_dir: str = _arg(None, "where the data sets are (default: data/, or $BNN_DATA_DIR)")
    dtype_policy: str = _arg("float32", "float32, or mixed_bfloat16: layers compute in bfloat16, "
                             "latent weights, batch norm and the loss stay float32",
                             choices=DTYPE_POLICIES)
    jit_compile: str = _arg("auto", "compile the train step with XLA: on, off, or auto (the "
                            "faster for the backend and network)", choices=JIT_MODES)
    steps_per_execution: int = _arg(0, "training steps per call into the compiled function "
                                    "(0: 1 on CPU, 32 on GPU/TPU)")
    distribute: bool = _arg(False, "train data-parallel on all visible GPUs (or CPU devices)")

    # -- derived ----------------------------------------------------------------------------
    @property
    def n_conv(self):
        return len(self.conv)

    @property
    def n_hidden(self):
        return len(self.conv) + len(self.fc)

    @property
    def mode(self):
        """``'continuous'``, ``'binary'`` or ``'ternary'``."""
        if self.continuous:
            return "continuous"
        return "binary" if self.levels == 2 else "ternary"

    def layer_names(self):
        """Names of the weight layers in order: ``conv1.., fc1.., out``."""
        return ([f"conv{i + 1}" for i in range(self.n_conv)]
                + [f"fc{i + 1}" for i in range(len(self.fc))] + ["out"])

    # -- checks and defaults ----------------------------------------------------------------
    def resolve(self):
        """Check every field and fill in the defaulted per-layer lists; return ``self``.

        Raises
        ------
        BnnError
            With a one-line message naming the bad value.
        """
        key = str(self.data_set).lower()
        if key not in DATA_SETS:
            raise BnnError(f"unknown data set {self.data_set!r}: choose MNIST or cifar-10")
        self.data_set = DATA_SETS[key]
        if self.epochs is None:
            self.epochs = DEBUG_EPOCHS if self.debug else 500
        if self.levels not in (2, 3):
            raise BnnError(f"--levels must be 2 (binary) or 3 (ternary), got {self.levels}")
        if not 0.0 <= self.threshold < 1.0:
            raise BnnError(f"--threshold must lie in [0, 1), got {self.threshold}")
        if self.loss_mode not in LOSS_MODES:
            raise BnnError(f"--loss_mode must be one of {', '.join(LOSS_MODES)}, got {self.loss_mode!r}")
        for name in ("batch_size", "epochs", "filter_size", "ckpt_n"):
            if getattr(self, name) < 1:
                raise BnnError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        if self.keep_ckpts < 0:
            raise BnnError(f"--keep_ckpts must be 0 (keep all) or more, got {self.keep_ckpts}")
        if any(n < 1 for n in self.conv + self.fc):
            raise BnnError(f"layer sizes must be positive: --conv {self.conv} --fc {self.fc}")
        if not (0 < self.lr_end <= self.lr_start):
            raise BnnError(f"need 0 < --lr_end <= --lr_start, got {self.lr_end} and {self.lr_start}")
        for name in ("dropout_in", "dropout_hidden"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise BnnError(f"--{name} must lie in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise BnnError(f"--val_fraction must lie in [0, 1), got {self.val_fraction}")
        if self.max_pool is None:
            self.max_pool = [int(i % 2 == 1) for i in range(self.n_conv)]
        if len(self.max_pool) != self.n_conv:
            raise BnnError(f"--max_pool needs one 0/1 per conv layer: got {len(self.max_pool)} "
                           f"values {self.max_pool} for {self.n_conv} conv layers {self.conv}")
        self.max_pool = [int(bool(p)) for p in self.max_pool]
        self.quantize_weights = self._per_layer("quantize_weights", self.n_hidden + 1)
        self.quantize_activations = self._per_layer("quantize_activations", self.n_hidden)
        for name, allowed in (("dtype_policy", DTYPE_POLICIES), ("jit_compile", JIT_MODES)):
            if getattr(self, name) not in allowed:
                raise BnnError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.steps_per_execution < 0:
            raise BnnError(f"--steps_per_execution must be 0 (auto) or more, got {self.steps_per_execution}")
        return self

    def _per_layer(self, name, n):
        values = getattr(self, name)
        if values is None:
            return [int(not self.continuous)] * n
        if self.continuous and any(values):
            raise BnnError(f"--continuous turns quantization off, but --{name} {values} turns "
                           "some on: give one or the other")
        if len(values) != n:
            raise BnnError(f"--{name} needs {n} values of 0/1, got {len(values)}: {values}")
        return [int(bool(v)) for v in values]

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Build a config from a dict, refusing keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise BnnError(f"unknown config keys {unknown}: was this run made by another version?")
        return cls(**d).resolve()

    def save(self, path):
        """Write the config as JSON, atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path):
        """Read a config written by :meth:`save`."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise BnnError(f"{path} does not exist: is this a run directory made by run_bnn.py?")
        except json.JSONDecodeError as e:
            raise BnnError(f"{path} is not valid JSON ({e})")
        return cls.from_dict(d)

    def differences(self, other, ignore=PATH_FIELDS + RUNTIME_FIELDS):
        """``{field: (self value, other value)}`` for fields that differ, paths and speed settings ignored."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}


def build_parser(description=None):
    """An ``argparse`` parser with one flag per :class:`RunConfig` field."""
    parser = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(RunConfig):
        meta = dict(f.metadata)
        help_ = meta.pop("help")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if f.type is bool or f.type == "bool":
            parser.add_argument(f"--{f.name}", action="store_true", help=help_)
            continue
        shown = help_ if "default" in help_ else f"{help_} (default: {default})"
        kwargs = {"default": default, "help": shown}
        if "nargs" not in meta:
            kwargs["type"] = {"int": int, "float": float, "str": str}.get(
                f.type if isinstance(f.type, str) else f.type.__name__, str)
        kwargs.update(meta)
        parser.add_argument(f"--{f.name}", **kwargs)
    return parser


def config_from_args(argv=None, description=None):
    """Parse command-line flags into a resolved :class:`RunConfig`."""
    args = build_parser(description).parse_args(argv)
    return RunConfig(**vars(args)).resolve()
