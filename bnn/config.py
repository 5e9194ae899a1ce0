"""The one configuration object of a training run.

``run_bnn.py`` builds its command line from :class:`RunConfig`, the run directory stores it as
``config.json`` beside the weights, and everything downstream (resume, the notebooks, reports)
reads it back from there, so no parameter is ever retyped.
"""

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bnn import cli
from bnn.errors import BnnError
from bnn.levels import levels_problem, threshold_problem
from data.layout import canonical_data_set

LOSS_MODES = ("hinge-loss", "softmax")
# Debug runs: a fraction of the data, a few epochs, so the whole path runs in about a minute.
DEBUG_SIZES = {"train": 500, "val": 100, "test": 500}
DEBUG_EPOCHS = 2
# Fields that only say where things are; they may differ when a run is resumed.
PATH_FIELDS = ("run_dir", "data_dir", "param_file")
# Sections of --help, in order; a field names its own with ``group=`` (others go last).
HELP_GROUPS = ("data", "network", "quantization", "optimisation", "run directory",
               "devices and speed")
SEED_LIMIT = cli.SEED_LIMIT
# Fields that only say how fast a run goes (bnn/accelerate.py); they may differ on resume too.
RUNTIME_FIELDS = ("jit_compile", "steps_per_execution", "distribute", "coordinator_address",
                  "num_processes", "process_id", "cluster_timeout")
JIT_MODES = ("auto", "on", "off")
DTYPE_POLICIES = ("float32", "mixed_bfloat16")


# Value types of the flags (bnn.cli): a bad value is refused in one line while parsing, and
# `RunConfig.resolve` applies the same type to every field, so a config.json is held to the same
# rules (a NaN or infinite number there would poison the run directory for good).
_POSITIVE = cli.bounded_int(1)
_SWITCH = cli.bounded_int(0, 1)
_POSITIVE_FLOAT = cli.finite_float(0, low_open=True)
_FRACTION = cli.finite_float(0, 1, high_open=True)


def _arg(default, help, **flag):
    return field(default=default, metadata={"help": help, **flag})


def _list_arg(default, help, **flag):
    return field(default_factory=lambda: list(default), metadata={"help": help, "nargs": "*", **flag})


@dataclass
class RunConfig:
    """Every hyperparameter of a run (flag names and defaults of the original repository).

    The per-layer lists ``max_pool``, ``quantize_weights`` and ``quantize_activations`` may be
    given as ``None`` and are filled in by :meth:`resolve`.
    """

    data_set: str = _arg("cifar-10", "data set to train on", group="data",
                         metavar="{MNIST,cifar-10}")
    batch_size: int = _arg(50, "size of batches for training", type=_POSITIVE, group="optimisation")
    epochs: int = _arg(None, "number of epochs in training (default: 500, or 2 with --debug)",
                       type=_POSITIVE, group="optimisation")
    lr_start: float = _arg(0.001, "learning rate for the first epoch", type=_POSITIVE_FLOAT,
                           group="optimisation")
    lr_end: float = _arg(3e-7, "learning rate for the last epoch (exponential decay per epoch)",
                         type=_POSITIVE_FLOAT, group="optimisation")
    loss_mode: str = _arg("hinge-loss", "squared hinge on +-1 targets, or softmax cross-entropy",
                          group="optimisation", metavar="{hinge-loss,softmax}")
    conv: list = _list_arg([128, 128, 256, 256, 512, 512],
                           "feature maps of each conv layer; give --conv alone for an MLP",
                           type=_POSITIVE, group="network")
    fc: list = _list_arg([1024, 1024], "units of each hidden fully connected layer", type=_POSITIVE,
                         group="network")
    max_pool: list = _arg(None, "1/0 per conv layer: 2x2 max pool after it "
                          "(default: after every second layer)", nargs="*", type=_SWITCH,
                          group="network")
    filter_size: int = _arg(3, "side of the square conv filters", type=_POSITIVE, group="network")
    ckpt_n: int = _arg(10, "save a checkpoint every n epochs", type=_POSITIVE, group="run directory")
    keep_ckpts: int = _arg(5, "keep the newest n periodic checkpoints (0 keeps all)",
                           type=cli.bounded_int(0), group="run directory")
    continuous: bool = _arg(False, "float weights and hard-tanh activations (the float baseline)",
                            group="quantization")
    debug: bool = _arg(False, "quick test: a small fraction of the data and 2 epochs", group="data")
    levels: int = _arg(2, "2 = binary, 3 = ternary weights and activations",
                       type=cli.bounded_int(2, 3), group="quantization", metavar="{2,3}")
    threshold: float = _arg(0.0, "ternarization threshold in [0, 1) (levels 3)", type=_FRACTION,
                            group="quantization")
    threshold_weights: float = _arg(None, "threshold of the weights (default: --threshold)",
                                    type=_FRACTION, group="quantization")
    threshold_activations: float = _arg(None, "threshold of the batch-normed activations "
                                        "(default: --threshold)", type=_FRACTION, group="quantization")
    quantize_weights: list = _arg(None, "1/0 per weight layer (conv, fc, output): quantize its "
                                  "weights (default: all, unless --continuous)", nargs="*",
                                  type=_SWITCH, group="quantization")
    quantize_activations: list = _arg(None, "1/0 per hidden layer (conv, fc): quantize its "
                                      "activations (default: all, unless --continuous)",
                                      nargs="*", type=_SWITCH, group="quantization")
    dropout_in: float = _arg(0.0, "dropout rate on the input image, in [0, 1)", type=_FRACTION,
                             group="network")
    dropout_hidden: float = _arg(0.0, "dropout rate after each hidden layer's activation, in [0, 1)",
                                 type=_FRACTION, group="network")
    bn_momentum: float = _arg(0.9, "batch norm moving-average momentum in [0, 1) (authors' TF1 "
                              "code: 0.999)", type=_FRACTION, group="network")
    bn_epsilon: float = _arg(1e-4, "batch norm epsilon, > 0 (authors' TF1 code: 1e-3)",
                             type=_POSITIVE_FLOAT, group="network")
    bn_scale: int = _arg(1, "1: batch norm learns a scale (BinaryNet); 0: a shift only (authors' "
                         "TF1 code)", type=_SWITCH, group="network", metavar="{0,1}")
    rotate_first_layer: bool = _arg(False, "quantize the first layer's filters w as R^T sign(R w), "
                                    "R a fixed Haar-random rotation from --seed", group="quantization")
    weight_quantizer: str = _arg(None, "quantizer of the weights: sign, ternary:threshold=T, scaled_sign, "
                                 "uniform:bits=K, or mypkg.mod.MyQuantizer:param=V (default: from "
                                 "--levels and --threshold_weights)", group="quantization", metavar="SPEC")
    activation_quantizer: str = _arg(None, "quantizer of the batch-normed activations, as --weight_quantizer "
                                     "(default: from --levels and --threshold_activations)",
                                     group="quantization", metavar="SPEC")
    no_geometry_log: bool = _arg(False, "do not write geometry.csv (weight geometry per epoch)",
                                 group="run directory")
    val_fraction: float = _arg(0.1, "fraction of the training files held out for validation, "
                               "in [0, 1)", type=_FRACTION, group="data")
    seed: int = _arg(0, "random seed in [0, 2**32) (initialisation, split, shuffling, dropout)",
                     type=cli.bounded_int(0, SEED_LIMIT - 1), group="optimisation")
    param_file: str = _arg(None, "start from these weights: a .keras file or a run directory",
                           type=cli.path_arg, group="run directory")
    run_dir: str = _arg(None, "where checkpoints and logs go (default: runs/<data set>-<mode>)",
                        type=cli.path_arg, group="run directory")
    data_dir: str = _arg(None, "where the data sets are (default: data/, or $BNN_DATA_DIR)",
                         type=cli.path_arg, group="data")
    dtype_policy: str = _arg("float32", "float32, or mixed_bfloat16: layers compute in bfloat16, "
                             "latent weights, batch norm and the loss stay float32",
                             choices=DTYPE_POLICIES, group="devices and speed")
    jit_compile: str = _arg("auto", "compile the train step with XLA: on, off, or auto (the "
                            "faster on this machine, timed once and remembered in ~/.cache/bnn; a "
                            "resumed run keeps its form)", choices=JIT_MODES, group="devices and speed")
    steps_per_execution: int = _arg(0, "training steps per call into the compiled function "
                                    "(0: 1 on CPU, 32 on GPU/TPU)", type=cli.bounded_int(0),
                                    group="devices and speed")
    distribute: bool = _arg(False, "train data-parallel on all visible GPUs (or CPU devices)",
                            group="devices and speed")
    # One run over several processes, on one machine or several (bnn/cluster.py, JAX only);
    # each also reads Keras's variable named in its help when the flag is not given.
    coordinator_address: str = _arg(None, "HOST:PORT of process 0, the same for every process of a "
                                    "run over several processes (or $KERAS_DISTRIBUTION_JOB_ADDRESSES)",
                                    group="devices and speed")
    num_processes: int = _arg(0, "processes in the run (0: $KERAS_DISTRIBUTION_NUM_PROCESSES, "
                              "else 1)", group="devices and speed")
    process_id: int = _arg(None, "this process's id, 0 .. --num_processes - 1; 0 writes the run "
                           "directory (or $KERAS_DISTRIBUTION_PROCESS_ID)", type=int,
                           group="devices and speed")
    cluster_timeout: int = _arg(300, "seconds for all processes to join before each gives up",
                                group="devices and speed")

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
        if self.weight_quantizer not in (None, *_level_specs(self, "weights")):
            return self.weight_quantizer.split(":")[0].rsplit(".", 1)[-1].lower()
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
        try:
            self.data_set = canonical_data_set(self.data_set)
        except ValueError as e:
            raise BnnError(str(e)) from None
        self._check_values()
        if self.epochs is None:
            self.epochs = DEBUG_EPOCHS if self.debug else 500
        if levels_problem(self.levels):
            raise BnnError(f"--levels {levels_problem(self.levels)}, got {self.levels}")
        for name in ("threshold", "threshold_weights", "threshold_activations"):
            value = getattr(self, name)
            if value is not None and threshold_problem(value):
                raise BnnError(f"--{name} {threshold_problem(value)}, got {value}")
        for name in ("threshold_weights", "threshold_activations"):
            if getattr(self, name) is None:
                setattr(self, name, self.threshold)
        self._resolve_quantizers()
        if self.loss_mode not in LOSS_MODES:
            raise BnnError(f"--loss_mode must be one of {', '.join(LOSS_MODES)}, got {self.loss_mode!r}")
        if not self.lr_end <= self.lr_start:
            raise BnnError(f"need 0 < --lr_end <= --lr_start, got {self.lr_end} and {self.lr_start}")
        if self.max_pool is None:
            self.max_pool = [int(i % 2 == 1) for i in range(self.n_conv)]
        if len(self.max_pool) != self.n_conv:
            raise BnnError(f"--max_pool needs one 0/1 per conv layer: got {len(self.max_pool)} "
                           f"values {self.max_pool} for {self.n_conv} conv layers {self.conv}")
        self.max_pool = _check_switches("max_pool", self.max_pool)
        self.quantize_weights = self._per_layer("quantize_weights", self.n_hidden + 1)
        self.quantize_activations = self._per_layer("quantize_activations", self.n_hidden)
        if self.rotate_first_layer and not self.quantize_weights[0]:
            raise BnnError(f"--rotate_first_layer changes how the first layer's weights are "
                           f"quantized, but they are not (--continuous or --quantize_weights "
                           f"{self.quantize_weights}): drop one of them")
        for name, allowed in (("dtype_policy", DTYPE_POLICIES), ("jit_compile", JIT_MODES)):
            if getattr(self, name) not in allowed:
                raise BnnError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.steps_per_execution < 0:
            raise BnnError(f"--steps_per_execution must be 0 (auto) or more, got {self.steps_per_execution}")
        return self

    def _check_values(self):
        """Hold every field to the type of its flag (`_POSITIVE`, `_FRACTION`, ...), as parsing does.

        A config built in Python or read from a config.json is checked as a command line is: a
        number must be finite and in its range, a path non-empty and not too long for the OS.
        """
        for f in dataclasses.fields(self):
            value, check = getattr(self, f.name), f.metadata.get("type")
            if value is None:
                if f.default is None:  # optional: a default is filled in below
                    continue
                raise BnnError(f"--{f.name} has no value (null): give one")
            if check is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, bool) or not isinstance(item, (int, float, str)):
                    raise BnnError(f"--{f.name} has a value of the wrong kind: {item!r}")
                try:
                    check(item if isinstance(item, str) else repr(item))
                except argparse.ArgumentTypeError as e:
                    raise BnnError(f"--{f.name}: {e}") from None

    def _resolve_quantizers(self):
        """Fill in --weight_quantizer / --activation_quantizer from --levels and the thresholds
        (the original flags), or check and normalise the specs given; a spec that contradicts a
        --levels 3 or threshold flag given with it is refused."""
        for role, name in (("weights", "weight_quantizer"), ("activations", "activation_quantizer")):
            spec = getattr(self, name)
            derived, *_ = _level_specs(self, role)
            # A spec equal to what the original flags give (every config.json of a binary run)
            # needs no parsing, which would import the quantizers and with them Keras.
            if spec is None or spec == derived:
                setattr(self, name, derived)
                continue
            from bnn.quantizers import QuantizerError, parse_spec

            try:
                given = parse_spec(spec)
            except QuantizerError as e:
                raise BnnError(f"--{name}: {e}") from None
            threshold = getattr(self, f"threshold_{role}")
            if (self.levels != 2 or threshold) and given != parse_spec(derived):
                raise BnnError(f"--{name} {spec} contradicts --levels {self.levels} --threshold_{role} "
                               f"{threshold}: give one or the other")
            setattr(self, name, given.spec())

    def _per_layer(self, name, n):
        values = getattr(self, name)
        if values is None:
            return [int(not self.continuous)] * n
        if self.continuous and any(values):
            raise BnnError(f"--continuous turns quantization off, but --{name} {values} turns "
                           "some on: give one or the other")
        if len(values) != n:
            raise BnnError(f"--{name} needs {n} values of 0/1, got {len(values)}: {values}")
        return _check_switches(name, values)

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
        from bnn.files import atomic_write_json

        atomic_write_json(self.to_dict(), path)

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


def _level_specs(config, role):
    """The quantizer specs --levels and --threshold_<role> stand for (sign has two spellings)."""
    threshold = getattr(config, f"threshold_{role}") or 0.0
    if config.levels == 2:
        return ("sign",)
    return (f"ternary:threshold={float(threshold)},relative=false", f"ternary:threshold={float(threshold)}")


def _check_switches(name, values):
    """The per-layer 0/1 list ``values`` of flag ``--name`` as ints; anything else is refused."""
    bad = [v for v in values if v not in (0, 1)]
    if bad:
        raise BnnError(f"--{name} takes 0 or 1 per layer, got {bad[0]} in {values}")
    return [int(v) for v in values]


def build_parser(description=None, prog="run_bnn.py"):
    """An ``argparse`` parser with one flag per :class:`RunConfig` field, in --help sections.

    A field's metadata gives its ``help`` text, its section (``group``, one of
    :data:`HELP_GROUPS`; fields without one are listed last) and any ``argparse`` keywords.
    """
    parser = cli.Parser(prog, description, usage="%(prog)s [options]")
    sections = {name: parser.add_argument_group(name) for name in HELP_GROUPS}
    for f in dataclasses.fields(RunConfig):
        meta = dict(f.metadata)
        help_ = meta.pop("help")
        group = meta.pop("group", None)
        if group not in sections:
            sections[group] = parser.add_argument_group(group or "other options")
        section = sections[group]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if f.type is bool or f.type == "bool":
            section.add_argument(f"--{f.name}", action="store_true", help=f"{help_} (default: off)")
            continue
        shown = help_ if "default" in help_ else f"{help_} (default: {_shown(default)})"
        kwargs = {"default": default, "help": shown}
        if "nargs" not in meta:
            kwargs["type"] = {"int": int, "float": float, "str": str}.get(
                f.type if isinstance(f.type, str) else f.type.__name__, str)
        kwargs.update(meta)
        section.add_argument(f"--{f.name}", **kwargs)
    return parser


def _shown(default):
    if default is None:
        return "none"
    if isinstance(default, list):
        return " ".join(map(str, default)) or "none"
    return default


def config_from_args(argv=None, description=None):
    """Parse command-line flags into a resolved :class:`RunConfig`."""
    args = build_parser(description).parse_args(argv)
    return RunConfig(**vars(args)).resolve()


# Training keeps, per parameter, the float32 latent weight, its gradient and Adam's two moments.
BYTES_PER_PARAMETER = 16


def training_memory(config):
    """A lower bound on the memory that training the network of ``config`` takes, from its shape alone.

    Counts the parameters of :func:`bnn.model.build_model`'s network (kernels and batch norms;
    convolutions keep their size, 'same' padding) at :data:`BYTES_PER_PARAMETER` bytes, plus one
    batch of every layer's output, float32, forward and backward. Nothing is built.

    Parameters
    ----------
    config : RunConfig
        A resolved config.

    Returns
    -------
    n_params : int
    n_bytes : int
    """
    from data.layout import IMAGE_SHAPES, NUM_CLASSES

    height, width, channels = IMAGE_SHAPES[config.data_set]
    bn = 3 + config.bn_scale  # moving mean and variance, shift, and scale where it learns one
    first_d = config.filter_size ** 2 * channels if config.conv else height * width * channels
    params = outputs = 0
    for units, pool in zip(config.conv, config.max_pool):
        params += config.filter_size ** 2 * channels * units + bn * units
        if pool:
            height, width = -(-height // 2), -(-width // 2)
        outputs += height * width * units
        channels = units
    fan_in = height * width * channels
    for units in config.fc + [NUM_CLASSES]:
        params += fan_in * units + bn * units
        outputs += units
        fan_in = units
    if config.rotate_first_layer:  # a d x d rotation, d the first layer's fan-in
        params += first_d ** 2
    return params, BYTES_PER_PARAMETER * params + 2 * 4 * config.batch_size * outputs


def check_training_memory(config, available=None):
    """Refuse, before anything is built, a network that cannot fit in this machine's memory.

    Parameters
    ----------
    config : RunConfig
        A resolved config.
    available : int, optional
        Bytes of memory (default: the machine's physical memory; no check where the OS does not
        say).

    Raises
    ------
    BnnError
        One line with the network's size, the memory it needs and the memory there is.
    """
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return
    params, needed = training_memory(config)
    if needed > available:
        raise BnnError(f"the network of --conv {' '.join(map(str, config.conv)) or '(none)'} --fc "
                       f"{' '.join(map(str, config.fc)) or '(none)'} has {params:,} parameters and "
                       f"needs at least {needed / 2**30:,.1f} GiB to train, but this machine has "
                       f"{available / 2**30:,.1f} GiB: make the layers smaller")
