"""Quantizers as objects: the forward map, its straight-through gradient, and what it declares.

A quantizer is a :class:`Quantizer` subclass that defines ``quantize(self, x)`` in ``keras.ops``.
The base class gives it the straight-through estimator with cancellation (Courbariaux, Hubara et
al. 2016, "Binarized Neural Networks", arXiv:1602.02830): forward ``quantize(x)``, backward the
incoming gradient where ``|x| <= 1`` and 0 elsewhere (the gradient of hard tanh). It also declares,
with defaults, what the rest of bnn asks of it:

=====================  ======================================================  ================
declaration            meaning                                                 default
=====================  ======================================================  ================
``precision``          bits per quantized value (`bnn.summary`)                32
``numpy(x)``           numpy reference of the forward map                      ``quantize``
``packing``            ``'sign'`` (one bit plane), ``'ternary'`` (sign and     None: `bnn.pack`
                       mask planes) or None                                    refuses
``gaussian_pieces``    the step function it applies to a Gaussian of the       None: no theory
                       given std, as (edges, values) in units of that std
``zero_threshold(s)``  t where it outputs 0 on ``|x| <= t``, in its input's     None: no zero
                       units for an input of std s (a dead zone)               output
``backward(x, dy)``    the gradient rule                                       STE, cancelled
``build(layer, s)``    weights it needs, made by the layer that owns it        none
=====================  ======================================================  ================

Built-ins: ``sign``, ``ternary``, ``scaled_sign``, ``uniform`` (spec names, see :func:`get`), and
:class:`Rotated`, the generalized binarization transformation ``R^T Q(R w)`` around any of them.
A quantizer sees the whole kernel (or activation tensor) at once, so it may use statistics of it.

The functions :func:`binarize`, :func:`ternarize`, :func:`quantize` and :func:`rotated_quantize`
are the same maps as plain functions; :func:`outputs_sign` asks ``values`` whether a quantizer
outputs exactly +-1 (what bit-packed dot products and the rotation comparison need).
"""

import importlib
import inspect
import sys

import numpy as np

from bnn.errors import BnnError
from bnn.levels import levels_problem, threshold_problem


class _OnFirstUse:
    """A module imported at its first attribute access, which then takes this stand-in's place
    among the module's globals. Keras (and its backend, seconds to import) loads only once a
    quantizer computes or is saved: reading a cached analysis (`bnn.analysis_cache`) makes
    quantizers from their configs without it."""

    def __init__(self, module, name):
        self._module, self._name = module, name

    def __getattr__(self, attr):
        module = importlib.import_module(self._module)
        globals()[self._name] = module
        return getattr(module, attr)


keras = _OnFirstUse("keras", "keras")
ops = _OnFirstUse("keras.ops", "ops")


class QuantizerError(BnnError, ValueError):
    """A quantizer name, spec or parameter that cannot be used, stated in one line."""


def straight_through(forward, cancel=True, backward=None):
    """Give ``forward`` the straight-through gradient with cancellation.

    Parameters
    ----------
    forward : callable
        Map from a tensor to a tensor of the same shape and dtype.
    cancel : bool
        Zero the gradient where ``|x| > 1``. Pass False only for inputs known to lie in
        [-1, 1], where the mask is all ones: it then saves two passes over the tensor.
    backward : callable or None
        ``backward(x, upstream)`` replaces the rule above.

    Returns
    -------
    f : callable
        ``f(x) = forward(x)`` in the forward pass; ``df/dx = 1[|x| <= 1]`` in the backward pass.
    """

    @ops.custom_gradient
    def f(x):
        def grad(*args, upstream=None):
            # Keras passes the upstream gradient positionally on JAX, by keyword on TensorFlow.
            if upstream is None:
                (upstream,) = args
            if backward is not None:
                return backward(x, upstream)
            if not cancel:
                return upstream
            return upstream * ops.cast(ops.abs(x) <= 1.0, upstream.dtype)

        return forward(x), grad

    return f


def _as_tensor(x):
    # A variable read inside custom_gradient makes TensorFlow demand a `variables` gradient;
    # ops.copy reads it outside (tf.identity: no data is copied).
    return ops.copy(x) if isinstance(x, keras.Variable) else ops.convert_to_tensor(x)


class Quantizer:
    """Base class of bnn's quantizers; subclasses define :meth:`quantize` (and ``get_config``).

    Call an instance on a tensor to quantize it with the straight-through gradient:
    ``Sign()(x)``. Every other method and attribute is a declaration with a default (see the
    module docstring), overridden by the quantizers that know more.
    """

    #: Bits per quantized value; 32 for quantizers whose output is float.
    precision = 32
    #: ``'sign'``, ``'ternary'`` or None: how `bnn.pack` stores the quantized values as bit planes.
    packing = None
    #: The exact values it outputs, where they are a fixed few (sign, ternary); None otherwise.
    values = None
    #: Latent weights quantized by this are clipped to [-bound, bound] after each step (None: not).
    latent_clip = 1.0

    def quantize(self, x):
        """The forward map, in ``keras.ops``: tensor in, tensor of the same shape and dtype out."""
        raise NotImplementedError(f"{type(self).__name__} must define quantize(self, x)")

    def backward(self, x, upstream):
        """Gradient of the loss with respect to ``x``: ``upstream * 1[|x| <= 1]`` (the STE)."""
        return upstream * ops.cast(ops.abs(x) <= 1.0, upstream.dtype)

    def __call__(self, x, bounded=False):
        """``quantize(x)`` forward, :meth:`backward` backward.

        ``bounded=True`` says ``x`` lies in [-1, 1] (a clipped latent kernel): where the default
        backward rule is kept, its all-ones mask is then skipped.
        """
        x = _as_tensor(x)
        own_backward = type(self).backward is not Quantizer.backward
        return straight_through(self.quantize, cancel=not bounded,
                                backward=self.backward if own_backward else None)(x)

    def numpy(self, x):
        """Numpy reference of the forward map (default: :meth:`quantize` through Keras)."""
        x = np.asarray(x, dtype="float32")
        return np.asarray(ops.convert_to_numpy(self.quantize(ops.convert_to_tensor(x))))

    def codes(self, quantized):
        """The values this quantizer chose, behind its output ``quantized`` (numpy): what a flip
        between two epochs is counted on. Default: the output itself."""
        return np.asarray(quantized)

    def build(self, layer, shape):
        """Create any weights the quantizer needs, as weights of ``layer`` (a kernel of ``shape``)."""

    def gaussian_pieces(self, std=1.0):
        """The step function this applies to N(0, std^2) entries, in units of ``std``.

        Returns
        -------
        (edges, values) or None
            Increasing edges and the value on each interval between them (one more than the
            edges), or None where the quantizer declares no Gaussian theory.
        """
        return None

    def zero_threshold(self, std=1.0):
        """The half-width t of the band ``|x| <= t`` mapped to 0, or None where there is none.

        Parameters
        ----------
        std : float
            Standard deviation of the input, for quantizers whose threshold is relative to it.

        Returns
        -------
        float or None
            t in the input's own units (0.0 for a ternary quantizer at threshold 0, which still
            maps exact zeros to 0); None for quantizers without a zero output (sign, uniform).
        """
        return None

    def theory(self, std=1.0):
        """Large-d geometry of this quantizer on a Gaussian vector with entries N(0, std^2).

        Returns
        -------
        dict or None
            ``angle`` (radians) between x and Q(x), ``angle_std_coefficient`` c of its spread
            ``c / sqrt(d)``, ``zero_fraction`` (`bnn.theory.step_quantizer_theory`); None where
            :meth:`gaussian_pieces` is None.
        """
        from bnn import theory

        pieces = self.gaussian_pieces(std)
        return None if pieces is None else theory.step_quantizer_theory(*pieces)

    def best_parameter(self):
        """The parameter value (in standard deviations) with the smallest Gaussian angle, or None.

        Returns
        -------
        dict or None
            ``{'name': parameter, 'value': in standard deviations, **theory}``.
        """
        return None

    def get_config(self):
        """This quantizer's own constructor arguments (JSON values)."""
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def spec(self):
        """The spec string :func:`get` turns back into this quantizer, e.g. ``'uniform:bits=2'``."""
        name = getattr(type(self), "spec_name", None)
        if name is None or BUILTINS.get(name) is not type(self):
            name = f"{type(self).__module__}.{type(self).__qualname__}"
        params = ",".join(f"{k}={_spec_value(v)}" for k, v in self.get_config().items())
        return f"{name}:{params}" if params else name

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), repr(self)))


def register(cls):
    """Register a quantizer class with Keras (package ``bnn``) and under its ``spec_name``."""
    BUILTINS[cls.spec_name] = cls
    return _keras_serializable(cls)


BUILTINS = {}
# bnn's own serializable classes by Keras's registered name ("bnn>Sign"). They are handed to
# keras.saving's registry by `register_with_keras` (on importing `bnn.layers`, and before any
# (de)serialization through Keras), not at definition, so that importing this module needs no Keras.
_OWN = {}


def _keras_serializable(cls):
    _OWN[f"bnn>{cls.__name__}"] = cls
    if "keras" in sys.modules:
        register_with_keras()
    return cls


def register_with_keras():
    """Register bnn's quantizer classes with ``keras.saving`` (package ``bnn``); idempotent."""
    import keras as keras_module

    for registered_name, cls in _OWN.items():
        if keras_module.saving.get_registered_object(registered_name) is not cls:
            keras_module.saving.register_keras_serializable(package="bnn")(cls)


def _float_array(x):
    """``x`` as a numpy array, float32 unless it already is a float array (numpy references keep
    float64 input in float64)."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype("float32")


def _sign(x):
    # sign(0) = +1, so every value is exactly -1 or +1.
    return ops.cast(x >= 0, x.dtype) * 2.0 - 1.0


def _ternary(x, threshold):
    return ops.cast(x > threshold, x.dtype) - ops.cast(x < -threshold, x.dtype)


def _check_number(name, value, low, high, cls):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise QuantizerError(f"{cls}: {name} must be a number in [{low}, {high}). Received: {name}={value!r}")
    return float(value)


@register
class Sign(Quantizer):
    """Binarization ``sign(x)`` with ``sign(0) = +1`` (the paper's binary quantizer)."""

    spec_name = "sign"
    precision = 1
    packing = "sign"
    values = (-1.0, 1.0)

    def quantize(self, x):
        return _sign(x)

    def numpy(self, x):
        x = _float_array(x)
        return np.where(x >= 0, 1.0, -1.0).astype(x.dtype)

    def gaussian_pieces(self, std=1.0):
        return [0.0], [-1.0, 1.0]


@register
class Ternary(Quantizer):
    """Ternarization ``sign(x) 1[|x| > t]`` to {-1, 0, +1}.

    Parameters
    ----------
    threshold : float in [0, 1)
        t in the input's own units (absolute, as in the authors' code), or, with
        ``relative=True``, in units of the standard deviation of the whole tensor (then up to 10).
    relative : bool
    """

    spec_name = "ternary"
    precision = 2
    packing = "ternary"
    values = (-1.0, 0.0, 1.0)

    def __init__(self, threshold=0.0, relative=False):
        self.relative = bool(relative)
        self.threshold = _check_number("threshold", threshold, 0.0, 10.0 if relative else 1.0, "ternary")

    def _absolute(self, x):
        return self.threshold * ops.std(x) if self.relative else self.threshold

    def quantize(self, x):
        return _ternary(x, self._absolute(x))

    def numpy(self, x):
        x = _float_array(x)
        t = x.dtype.type(self.threshold * x.std() if self.relative else self.threshold)
        return (x > t).astype(x.dtype) - (x < -t).astype(x.dtype)

    def gaussian_pieces(self, std=1.0):
        t = self.threshold if self.relative else self.threshold / std
        return ([0.0], [-1.0, 1.0]) if t == 0 else ([-t, t], [-1.0, 0.0, 1.0])

    def zero_threshold(self, std=1.0):
        return float(self.threshold * std) if self.relative else float(self.threshold)

    def best_parameter(self):
        from bnn import theory

        t, numbers = theory.best_step_quantizer_parameter(lambda t: ([-t, t], [-1.0, 0.0, 1.0]), 1e-3, 3.0)
        return {"name": "threshold", "value": t, **numbers}

    def get_config(self):
        return {"threshold": self.threshold, "relative": self.relative}


def _filter_axes(x):
    return tuple(range(len(x.shape) - 1))


@register
class ScaledSign(Quantizer):
    """XNOR-Net's weight binarization ``alpha sign(w)``, alpha = mean |w| of each output filter
    (Rastegari et al. 2016, arXiv:1603.05279): the mean over every axis but the last."""

    spec_name = "scaled_sign"
    precision = 1
    packing = "sign"

    def quantize(self, x):
        return _sign(x) * ops.mean(ops.abs(x), axis=_filter_axes(x), keepdims=True)

    def numpy(self, x):
        x = np.asarray(x, dtype="float32")
        return np.where(x >= 0, 1.0, -1.0).astype("float32") * np.abs(x).mean(
            axis=tuple(range(x.ndim - 1)), keepdims=True)

    def scale(self, kernel):
        """The per-filter scale alpha of ``kernel`` (numpy), shape (filters,)."""
        kernel = np.asarray(kernel, dtype="float32")
        return np.abs(kernel).reshape(-1, kernel.shape[-1]).mean(axis=0)

    def gaussian_pieces(self, std=1.0):
        a = float(np.sqrt(2 / np.pi))  # E|x| / std: the scale does not change the angle
        return [0.0], [-a, a]


@register
class Uniform(Quantizer):
    """Symmetric k-bit uniform quantizer (mid-rise): ``step (clip(floor(x / step), -2^(k-1),
    2^(k-1) - 1) + 1/2)``, the 2^k values ``+-step/2, +-3 step/2, ...``; no value is 0.

    Parameters
    ----------
    bits : int, 2..8
    step : float or None
        The spacing of the levels; None: ``2 / 2^k``, so the levels cover [-1, 1] (latent weights).
        With ``relative=True`` in standard deviations of the whole tensor.
    relative : bool
    """

    spec_name = "uniform"

    def __init__(self, bits=2, step=None, relative=False):
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
            raise QuantizerError(f"uniform: bits must be an integer from 2 to 8. Received: bits={bits!r}")
        self.bits = bits
        self.relative = bool(relative)
        self.step = 2.0 / 2**bits if step is None else _check_number("step", step, 1e-6, 1e6, "uniform")

    @property
    def precision(self):
        return self.bits

    def _step(self, x):
        return self.step * ops.std(x) if self.relative else self.step

    def quantize(self, x):
        step = self._step(x)
        half = 2 ** (self.bits - 1)
        return step * (ops.clip(ops.floor(x / step), -half, half - 1) + 0.5)

    def numpy(self, x):
        x = np.asarray(x, dtype="float32")
        step = np.float32(self.step * x.std() if self.relative else self.step)
        half = 2 ** (self.bits - 1)
        return (step * (np.clip(np.floor(x / step), -half, half - 1) + 0.5)).astype("float32")

    @staticmethod
    def _pieces(bits, step):
        half = 2 ** (bits - 1)
        return ([j * step for j in range(-half + 1, half)],
                [(i + 0.5) * step for i in range(-half, half)])

    def gaussian_pieces(self, std=1.0):
        return self._pieces(self.bits, self.step if self.relative else self.step / std)

    def best_parameter(self):
        from bnn import theory

        s, numbers = theory.best_step_quantizer_parameter(lambda s: self._pieces(self.bits, s), 1e-3,
                                                          4.0 / 2 ** (self.bits - 1) + 0.5)
        return {"name": "step", "value": s, **numbers}

    def get_config(self):
        return {"bits": self.bits, "step": self.step, "relative": self.relative}


@_keras_serializable
class Rotated(Quantizer):
    """The generalized binarization transformation ``R^T Q(R w)`` around a weight quantizer Q.

    Each filter w (a column of the kernel flattened to (d, filters)) is rotated by a fixed
    Haar-random R of shape (d, d), quantized by ``quantizer``, and rotated back (Anderson & Berg
    2018, Sec. 4). R is drawn from ``seed`` (`bnn.layers.HaarRotation`) and kept by the layer as
    its non-trainable weight ``rotation``. The backward rule is the identity: through the chain
    ``R^T dQ R`` with ``dQ = I`` it is ``R^T R = I``.

    Parameters
    ----------
    quantizer : Quantizer, spec or config
    seed : int
    """

    spec_name = "rotated"
    latent_clip = 1.0

    def __init__(self, quantizer="sign", seed=0):
        self.quantizer = get(quantizer)
        if self.quantizer is None:
            raise QuantizerError("rotated: needs a quantizer to wrap. Received: quantizer=None")
        self.seed = int(seed)
        self.rotation = None

    def build(self, layer, shape):
        from bnn.layers import HaarRotation

        d = int(np.prod(shape[:-1]))
        # A weight, not a constant: checkpoints and .keras files carry the very matrix used.
        self.rotation = layer.add_weight(name="rotation", shape=(d, d), trainable=False,
                                         initializer=HaarRotation(self.seed))

    def _forward(self, rotation):
        def forward(flat):
            return ops.matmul(ops.transpose(rotation), self.quantizer.quantize(ops.matmul(rotation, flat)))

        return forward

    def quantize(self, x):
        shape = x.shape
        flat = ops.reshape(x, (-1, shape[-1]))
        return ops.reshape(self._forward(_as_tensor(self.rotation))(flat), shape)

    def __call__(self, x, bounded=False):
        if self.rotation is None:
            raise QuantizerError("rotated: the rotation is made by the layer that owns the quantizer "
                                 "(build(layer, shape)); it has not been built")
        x = _as_tensor(x)
        shape = x.shape
        flat = ops.reshape(x, (-1, shape[-1]))
        q = straight_through(self._forward(_as_tensor(self.rotation)), cancel=False)(flat)
        return ops.reshape(q, shape)

    def numpy(self, x):
        x = np.asarray(x, dtype="float32")
        r = np.asarray(ops.convert_to_numpy(self.rotation))
        flat = x.reshape(-1, x.shape[-1])
        return (r.T @ self.quantizer.numpy(r @ flat)).reshape(x.shape)

    def codes(self, quantized):
        # R R^T q = q up to rounding, and the wrapped quantizers are idempotent (Q(Q(x)) = Q(x)):
        # quantizing R (R^T q) again gives q exactly.
        quantized = np.asarray(quantized, dtype="float32")
        r = np.asarray(ops.convert_to_numpy(self.rotation))
        return self.quantizer.numpy(r @ quantized.reshape(-1, quantized.shape[-1]))

    def gaussian_pieces(self, std=1.0):
        # R w is Gaussian with the same std when w is: the angle is the inner quantizer's.
        return self.quantizer.gaussian_pieces(std)

    def zero_threshold(self, std=1.0):
        # Applied to R w, which has the same std as w.
        return self.quantizer.zero_threshold(std)

    def best_parameter(self):
        return self.quantizer.best_parameter()

    def get_config(self):
        return {"quantizer": self.quantizer.spec(), "seed": self.seed}

    def spec(self):
        return f"rotated:seed={self.seed},quantizer={self.quantizer.spec()}"  # the wrapped spec last


BUILTINS["rotated"] = Rotated


# -- specs -------------------------------------------------------------------------------------


def _spec_value(v):
    return str(v).lower() if isinstance(v, bool) or v is None else str(v)


def _parse_value(text):
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def _class_of(name):
    if name in BUILTINS:
        return BUILTINS[name]
    if "." not in name:
        raise QuantizerError(f"unknown quantizer {name!r}: use one of {', '.join(sorted(BUILTINS))}, "
                             "or a dotted path to a Quantizer class (mypkg.quant.MyQuantizer)")
    module_name, _, class_name = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise QuantizerError(f"cannot import {module_name!r} for quantizer {name!r} ({e}): is its "
                             "folder on PYTHONPATH?") from None
    cls = getattr(module, class_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, Quantizer)):
        raise QuantizerError(f"{name!r} is not a bnn.quantizers.Quantizer subclass")
    return cls


def parse_spec(spec):
    """Turn ``'name'`` or ``'name:param=value,...'`` into a quantizer.

    ``name`` is a built-in (``sign``, ``ternary``, ``scaled_sign``, ``uniform``, ``rotated``) or a
    dotted path to a :class:`Quantizer` subclass in an importable module. Values are read as
    int, float, ``true``/``false``/``none``, else text. ``rotated`` takes the wrapped spec last:
    ``rotated:seed=0,quantizer=ternary:threshold=0.05``.

    Raises
    ------
    QuantizerError
        One line naming the unknown quantizer or parameter and what is accepted.
    """
    name, _, params = str(spec).strip().partition(":")
    cls = _class_of(name.strip())
    kwargs = {}
    rest = params.strip()
    while rest:
        item, sep, tail = rest.partition(",")
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise QuantizerError(f"quantizer spec {spec!r}: expected name:param=value,... Received: {item!r}")
        if key == "quantizer":  # a wrapped spec takes the rest of the string
            kwargs[key] = f"{value}{sep}{tail}".strip()
            break
        kwargs[key] = _parse_value(value)
        rest = tail.strip()
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise QuantizerError(f"quantizer {name!r} has no parameter {unknown[0]!r}: it takes "
                             f"{', '.join(accepted) or 'no parameters'}")
    try:
        return cls(**kwargs)
    except QuantizerError:
        raise
    except (TypeError, ValueError) as e:
        raise QuantizerError(f"quantizer spec {spec!r}: {e}") from None


def get(identifier):
    """A fresh quantizer from a spec string, a Keras config dict, an instance, or None.

    An instance is copied through its config, so a layer never shares (or builds) the caller's.
    """
    if identifier is None:
        return None
    if isinstance(identifier, Quantizer):
        return type(identifier).from_config(identifier.get_config())
    if isinstance(identifier, dict):
        own = _OWN.get(identifier.get("registered_name"))
        if own is not None and isinstance(identifier.get("config"), dict):
            return own.from_config(identifier["config"])  # what Keras would do, without importing it
        register_with_keras()
        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        return parse_spec(identifier)
    raise QuantizerError(f"expected a quantizer name, spec, config or Quantizer. Received: {identifier!r}")


def serialize(quantizer):
    """Keras config of a quantizer (None stays None)."""
    if quantizer is None:
        return None
    register_with_keras()
    return keras.saving.serialize_keras_object(quantizer)


def outputs_sign(quantizer):
    """Whether ``quantizer`` (or None) declares exactly the values -1 and +1 (``values``).

    Such outputs are bits: bit-packed dot products (`bnn.packed_layers`) and the comparison with
    the generalized binarization R^T sign(R w) (`bnn.network_geometry`) ask this.
    """
    values = getattr(quantizer, "values", None)
    return values is not None and sorted(float(v) for v in values) == [-1.0, 1.0]


def from_levels(levels=2, threshold=0.0):
    """The quantizer of the original flags: ``levels`` 2 is ``sign``, 3 ``ternary`` at ``threshold``."""
    check_quantizer_args(levels, threshold)
    return Sign() if levels == 2 else Ternary(threshold)


# -- the same maps as functions ---------------------------------------------------------------------


def binarize(x, cancel=True):
    """Binarize to {-1, +1} with the straight-through estimator (:class:`Sign`).

    Parameters
    ----------
    x : tensor, any shape, float
    cancel : bool
        See :func:`straight_through`.
    """
    return _SIGN(x, bounded=not cancel)


def ternarize(x, threshold, cancel=True):
    """Ternarize to {-1, 0, +1} with the straight-through estimator (:class:`Ternary`, absolute
    ``threshold``)."""
    return Ternary(float(threshold))(x, bounded=not cancel)


def quantize(x, levels=2, threshold=0.0, cancel=True):
    """Quantize ``x`` to ``levels`` values: 2 calls :func:`binarize`, 3 :func:`ternarize`."""
    return from_levels(levels, threshold)(x, bounded=not cancel)


def check_quantizer_args(levels, threshold):
    """Raise ``ValueError`` with the bad value unless ``levels`` in (2, 3) and 0 <= threshold < 1."""
    for name, value, problem in (("levels", levels, levels_problem(levels)),
                                 ("threshold", threshold, threshold_problem(threshold))):
        if problem:
            raise QuantizerError(f"{name} {problem}. Received: {name}={value}")


def rotated_quantize(w, rotation, levels=2, threshold=0.0):
    """Generalized binarization transformation ``R^T Q(R w)`` of each column of ``w``.

    Parameters
    ----------
    w : tensor, shape (d, n), float
    rotation : tensor, shape (d, d)
        A fixed orthogonal matrix R.
    levels, threshold
        As in :func:`quantize`, applied in the rotated coordinates.

    Returns
    -------
    tensor, shape (d, n)
        Forward ``R^T Q(R w)``; backward the identity (:class:`Rotated`).
    """
    q = Rotated(from_levels(levels, threshold))
    q.rotation = rotation
    return q(w)


_SIGN = Sign()
