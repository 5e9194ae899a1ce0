"""The binarization-pattern experiment: which layers' binary weights stand in for continuous ones.

Make some layers' weights continuous (a *pattern*), refit the downstream batch-norm statistics on
training images, and test (Anderson & Berg 2018, arXiv:1705.07199, Sec. 5): if the binary weights
keep the continuous ones' direction, each pattern scores about as well as the trained network once
the batch norm has seen its scale. Runs the network through Keras; binary layers run on packed
words (`bnn.packed_layers`) where that is available.
"""

import keras
import numpy as np

from bnn import packed_layers


def _chain(model):
    """The model's layers after the input, checked to form a single chain."""
    layers = model.layers[1:]
    previous = model.layers[0]
    for layer in layers:
        if layer.input is not previous.output:
            raise ValueError(f"expected a chain of layers as build_model makes; layer {layer.name} "
                             f"does not take the output of {previous.name}")
        previous = layer
    return layers


# Compiled runs of layer sequences, by (layer ids, input shape, weight-quantization flags): the
# flags are read when a call is traced, so a sequence switched to another pattern compiles anew.
# The backend's compiled predict step ran the paper's network 1.6 times as fast as eager layer
# calls (500 CIFAR-10 images: 5.0 s against 8.0 s); the pattern experiment, bound by its
# convolutions, gained 5% as a whole.
_COMPILED = {}


def _compiled(layers, shape):
    flags = tuple(getattr(layer, "quantize_weights", None) for layer in layers)
    key = (tuple(id(layer) for layer in layers), shape, flags)
    if key not in _COMPILED:
        if len(_COMPILED) > 256:  # keys hold ids: drop those of networks that may be gone
            _COMPILED.clear()
        _COMPILED[key] = (keras.Sequential([keras.Input(shape), *layers]), layers)
    return _COMPILED[key][0]


def _apply(layers, x, batch_size, packed=None):
    """Run ``x`` through ``layers`` in inference mode, batch by batch; a numpy array.

    Layers that ``packed`` (a `bnn.packed_layers.PackedLayers`, or None) has a packed form for run
    on it; on the TensorFlow backend the whole sequence is then one graph.
    """
    if not layers:
        return x
    if packed is None:
        steps = [_compiled(tuple(layers), tuple(x.shape[1:])).predict_on_batch]
    elif keras.backend.backend() == "tensorflow":
        steps = [packed.run(tuple(layers))]
    else:
        steps = _steps(layers, tuple(x.shape[1:]), packed)
    out = None
    for start in range(0, len(x), batch_size):
        h = x[start:start + batch_size]
        for step in steps:
            h = step(h)
        h = keras.ops.convert_to_numpy(h)
        if out is None:  # filled in place: no second copy of a large activation array
            out = np.empty((len(x), *h.shape[1:]), dtype=h.dtype)
        out[start:start + len(h)] = h
    return out


def _steps(layers, shape, packed):
    """``layers`` as numpy-to-numpy steps: packed layers, and compiled runs of the others between."""
    steps, run = [], []
    for layer in (*layers, None):
        fast = None if layer is None else packed.get(layer)
        if run and (fast is not None or layer is None):
            model = _compiled(tuple(run), shape)
            steps.append(model.predict_on_batch)
            shape, run = tuple(model.output_shape[1:]), []
        if fast is not None:
            steps.append(lambda h, fast=fast: fast(h).numpy())
            shape = tuple(layer.compute_output_shape((None, *shape))[1:])
        elif layer is not None:
            run.append(layer)
    return steps


def _moments(x, batch_size):
    """Per-channel (last axis) mean and population variance, accumulated in float64."""
    total = np.zeros(x.shape[-1])
    squares = np.zeros(x.shape[-1])
    for start in range(0, len(x), batch_size):
        h = x[start:start + batch_size].reshape(-1, x.shape[-1])
        total += h.sum(axis=0, dtype=np.float64)  # accumulated in float64 without a float64 copy
        squares += np.einsum("ij,ij->j", h, h, dtype=np.float64)
    count = x.size // x.shape[-1]
    mean = total / count
    return mean, np.maximum(squares / count - mean**2, 0.0)


def _refit(layers, h, e, batch_size, packed=None):
    """Carry training activations ``h`` (and ``e``, or None) through ``layers``, setting each batch
    norm's moving statistics to the exact ones of its input on ``h`` on the way; return (h, e)."""
    segment = []
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            h = _apply(segment, h, batch_size, packed)
            e = None if e is None else _apply(segment, e, batch_size, packed)
            mean, variance = _moments(h, batch_size)
            layer.moving_mean.assign(mean.astype("float32"))
            layer.moving_variance.assign(variance.astype("float32"))
            segment = []
        segment.append(layer)
    return (_apply(segment, h, batch_size, packed),
            None if e is None else _apply(segment, e, batch_size, packed))


def reestimate_batch_norm(model, x, batch_size=100, x_eval=None, packed=None):
    """Set every batch norm's moving mean and variance to the exact statistics of its input on ``x``.

    The layers are visited in order, so each batch norm's statistics are computed with all earlier
    ones already re-estimated: what the network will see at test time. The activations of ``x`` are
    carried from one batch norm to the next (held for the whole of ``x`` at one layer at a time).

    Parameters
    ----------
    model : keras.Model
        A chain of layers, as `bnn.model.build_model` makes; changed in place.
    x : array, shape (n, height, width, channels)
        Training images, e.g. a few thousand.
    batch_size : int
    x_eval : array, optional
        Images to run through the re-estimated network in the same pass.
    packed : bool, optional
        Run the binary layers on bit-packed words (`bnn.packed_layers`: the same values); by
        default where `bnn.packed_layers.available`.

    Returns
    -------
    ndarray or None
        The model's outputs on ``x_eval``.
    """
    e = None if x_eval is None else np.asarray(x_eval, dtype="float32")
    chain = _chain(model)
    return _refit(chain, np.asarray(x, dtype="float32"), e, batch_size, _packed_layers(chain, packed))[1]


def _packed_layers(chain, packed):
    """A `bnn.packed_layers.PackedLayers` for ``chain`` if ``packed`` (None: where available), else None."""
    if packed is None:
        packed = packed_layers.available()
    return packed_layers.PackedLayers(chain) if packed else None


def binarization_patterns(config):
    """The weight-quantization patterns of the experiment: the trained one, each quantized layer
    made continuous in turn, and all layers continuous.

    Returns
    -------
    list of (str, list of int)
        ``(label, quantize_weights)``, e.g. ``("conv2 continuous", [1, 0, 1, ...])``.
    """
    base = [int(q) for q in config.quantize_weights]
    patterns = [("all quantized (trained)", base)]
    for j, name in enumerate(config.layer_names()):
        if base[j]:
            patterns.append((f"{name} continuous", base[:j] + [0] + base[j + 1:]))
    if sum(base) > 1:
        patterns.append(("all weights continuous", [0] * len(base)))
    return patterns


def pattern_scores(config, model, x_train, x_test, batch_size=100, packed=None):
    """The network's scores on ``x_test`` for each pattern of `binarization_patterns`, before and
    after re-estimating batch norm on ``x_train``; see `binarization_pattern_experiment`.

    A pattern changes nothing upstream of its first continuous layer, so there its activations are
    those of the trained network (trained statistics) or of the trained network with re-estimated
    statistics (which re-estimation in order gives the same upstream). Those are computed once,
    advancing from one pattern's first changed layer to the next, and each pattern runs only from
    there on: for the paper's CIFAR-10 network this does about half the work of one full pass per
    pattern. Patterns come in order of their first changed layer (the trained one last).
    ``packed`` is as in `reestimate_batch_norm`.

    Yields
    ------
    label : str
    pattern : list of int
    before, after : ndarray, shape (n, 10)
    """
    from bnn.model import build_model

    variant = build_model(config)  # one copy; its layers' quantize_weights are switched per pattern
    variant.set_weights(model.get_weights())
    chain = _chain(variant)
    names = config.layer_names()
    weight_layers = [variant.get_layer(name) for name in names]
    position = {name: chain.index(layer) for name, layer in zip(names, weight_layers)}
    norms = [layer for layer in chain if isinstance(layer, keras.layers.BatchNormalization)]
    trained = {bn.name: (bn.moving_mean.numpy(), bn.moving_variance.numpy()) for bn in norms}
    packed = _packed_layers(chain, packed)
    base = [int(q) for q in config.quantize_weights]

    def set_statistics(layers):
        for layer in layers:
            if layer.name in trained:
                layer.moving_mean.assign(trained[layer.name][0])
                layer.moving_variance.assign(trained[layer.name][1])

    own_quantizer = {layer.name: layer.kernel_quantizer for layer in weight_layers}

    def start_of(pattern):
        changed = [position[n] for n, q, b in zip(names, pattern, base) if q != b]
        return min(changed) if changed else len(chain)

    # The trained network's activations at position k: test images with the trained statistics,
    # and training and test images with the statistics re-estimated so far.
    k, before_h = 0, np.asarray(x_test, dtype="float32")
    train_h, test_h = np.asarray(x_train, dtype="float32"), before_h
    for label, pattern in sorted(binarization_patterns(config), key=lambda p: start_of(p[1])):
        s = start_of(pattern)
        if s > k:  # advance the trained network to the pattern's first change, in one pass
            set_statistics(chain[k:s])
            before_h = _apply(chain[k:s], before_h, batch_size, packed)
            train_h, test_h = _refit(chain[k:s], train_h, test_h, batch_size, packed)
        k = s
        for layer, q in zip(weight_layers, pattern):
            # continuous weights: the layer's quantizer is taken away for this pattern
            layer.kernel_quantizer = own_quantizer[layer.name] if q else None
        set_statistics(chain[s:])
        before = _apply(chain[s:], before_h, batch_size, packed)
        after = _refit(chain[s:], train_h, test_h, batch_size, packed)[1]
        for layer in weight_layers:
            layer.kernel_quantizer = own_quantizer[layer.name]
        yield label, list(pattern), before, after


def binarization_pattern_experiment(config, model, x_train, x_test, y_test, batch_size=100,
                                    print_fn=None):
    """Test accuracy with some layers' weights made continuous, before and after refitting batch norm.

    For each pattern of `binarization_patterns`, the trained weights are used with those layers'
    weights unquantized (activations stay quantized). The batch-norm statistics were learned for the
    quantized weights, so they are wrong downstream of the change; `reestimate_batch_norm` refits them
    on ``x_train``. (The original notebook stopped here: "Broken, need to refit batch norm".)
    `pattern_scores` computes the shared upstream part once.

    Parameters
    ----------
    config : RunConfig
        The run's config.
    model : keras.Model
        The trained network (not changed: a copy is switched between patterns).
    x_train : array, shape (m, ...)
        Training images for the batch-norm statistics.
    x_test, y_test : arrays, shapes (n, ...) and (n,)
    batch_size : int
    print_fn : callable, optional
        Called with one line per pattern as it finishes.

    Returns
    -------
    list of dict
        ``pattern`` (label), ``quantize_weights``, ``accuracy_before`` (trained batch-norm
        statistics), ``accuracy_after`` (re-estimated), in the order of `binarization_patterns`.
    """
    y_test = np.asarray(y_test)
    rows = {}
    for label, pattern, before, after in pattern_scores(config, model, x_train, x_test, batch_size):
        row = rows[label] = {"pattern": label, "quantize_weights": pattern,
                             "accuracy_before": float(np.mean(before.argmax(-1) == y_test)),
                             "accuracy_after": float(np.mean(after.argmax(-1) == y_test))}
        if print_fn:
            print_fn(f"{label:<26} test accuracy {row['accuracy_before']:.4f} with the trained "
                     f"batch norm, {row['accuracy_after']:.4f} re-estimated")
    return [rows[label] for label, _ in binarization_patterns(config)]
