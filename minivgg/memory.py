"""The memory model: how many bytes one style-transfer iteration holds, layer by layer.

plan.py builds its IterationPlan from these functions; they are pure arithmetic on shapes. What
each op allocates is not restated here: every op of autograd/ that allocates working memory
gives its arrays' sizes in a ``*_buffers`` function beside it, which the op itself sizes its
arrays with (conv.py, conv_fast.py, shifted.py, winograd.py, winograd4.py, pooling.py); this
file reads them, and which path a convolution takes from ``conv_fast.choose_algorithm`` and
``as_conv_applies``.

Notation: N images, C input channels, H x W input size, O output channels, KH x KW kernel,
OH x OW output size.

Memory (bytes, ``itemsize`` per element: 4 for float32). The graph keeps no layer outputs (a
Function keeps only ``Edge`` records of its inputs, autograd/tensor.py), so an array lives while
the program holds it or an op keeps it for backward. Held for the whole run: the weights, the
Winograd layers' transformed kernels U (16*O*C each, made on first use), the losses' targets and
the optimiser's state (L-BFGS: ``history`` pairs (s, y) of image-sized vectors plus a few
working ones; Adam: two moments; optim.optimizer_state_bytes). One iteration then allocates:
- kept until its backward ends: ReLU's boolean mask (1 byte per element), max pooling's uint8
  argmax, the style layers' outputs (Gram keeps F), per style layer G/M - A (N*C*C each; the
  division by a constant M keeps nothing), per content layer F - P, for the total variation its
  two neighbour differences;
- forward, layer by layer (:func:`forward_peaks`): its input, its output and its work buffers
  (the op's forward ``*_buffers``), the requested layers' outputs computed so far, and what is
  kept so far;
- backward, layer by layer (:func:`backward_peaks`): gy, gx, the work buffers (the op's
  gradient ``*_buffers``) and all that is kept; where a loss reads a layer, its gradient and the
  one from deeper layers are summed (three arrays at once), and the loss's waits while the next
  layer's backward runs.
The iteration's peak is the largest of these. The estimate is a model, not a measurement:
tests/test_plan_measured.py and bench/bench_iteration.py hold it against measured peaks.
"""
import math

from miniautograd import conv, conv_fast, pooling, shifted, winograd, winograd4

ONE_BYTE = ("argmax", "larger", "mask")   # pooling.py's uint8 argmax and boolean arrays


def nbytes(buffers, itemsize):
    """Bytes of a ``*_buffers`` dict {name: elements}: ``itemsize`` each, ONE_BYTE names 1 each."""
    return sum(count * (1 if name in ONE_BYTE else itemsize) for name, count in buffers.items())


def split(buffers, result, itemsize):
    """(bytes of the op's ``result`` array, bytes of all its other arrays) of a buffers dict."""
    others = {name: count for name, count in buffers.items() if name != result}
    return buffers[result] * itemsize, nbytes(others, itemsize)


# -- one layer's buffers ---------------------------------------------------------------------------
WINOGRAD = {   # algorithm: (forward's buffers, input gradient's buffers, its B^T (a, a))
    "winograd": (winograd.winograd_conv_buffers, winograd.winograd_grad_input_buffers,
                 winograd.BT),
    "winograd4": (winograd4.winograd4_conv_buffers, winograd4.winograd4_grad_input_buffers,
                  winograd4.BT)}


def conv_memory(x_shape, W_shape, stride, pad, *, chunk, itemsize=4, algorithm="auto"):
    """The LayerCost memory fields of a convolution of x (N, C, H, W) by W (O, C, KH, KW) as
    conv_fast.conv2d(..., algorithm=algorithm) runs it: the algorithm ``choose_algorithm``
    takes, then its buffers.

    chunk: the work buffers' size (device.Device.chunk). buffer_bytes: the col buffer or the
    bands of shifted views or Winograd, shown by --explain; forward_bytes: all that forward
    allocates but y;
    backward_bytes: all that the input gradient allocates but gx (grad_bytes: of which gx is a
    view); kernel_bytes: Winograd's U ((16 or 36), O, C), made once and held by the network.
    """
    algorithm = conv_fast.choose_algorithm(algorithm, W_shape, stride, pad)
    O, C = W_shape[:2]
    gy_shape = (x_shape[0], O, *conv.conv2d_shapes(x_shape, W_shape, None, stride, pad))
    if algorithm == "shifted":
        return dict(algorithm=algorithm,
                    **_shifted_memory(x_shape, gy_shape, W_shape, pad, chunk, itemsize))
    if algorithm in WINOGRAD:
        conv_buffers, grad_input_buffers, BT = WINOGRAD[algorithm]
        positions = len(BT) ** 2                     # U (a*a, O, C): 16 or 36
        forward = conv_buffers(x_shape, O, pad, chunk=chunk)
        backward = grad_input_buffers(gy_shape, C, pad, chunk=chunk)
        bands = {k: v for k, v in forward.items() if k not in ("y", "uncropped")}
        _, forward_bytes = split(forward, "y", itemsize)
        grad, backward_bytes = split(backward, "gx", itemsize)
        return dict(algorithm=algorithm, buffer_bytes=nbytes(bands, itemsize),
                    forward_bytes=forward_bytes, backward_bytes=backward_bytes, grad_bytes=grad,
                    kernel_bytes=positions * O * C * itemsize)
    forward = conv.conv2d_forward_buffers(x_shape, W_shape, stride, pad, chunk=chunk)
    _, forward_bytes = split(forward, "y", itemsize)
    grad, backward_bytes = _im2col_grad_input(x_shape, W_shape, stride, pad, chunk, itemsize)
    return dict(algorithm=algorithm, buffer_bytes=forward["col"] * itemsize,
                forward_bytes=forward_bytes, backward_bytes=backward_bytes, grad_bytes=grad)


def _shifted_memory(x_shape, gy_shape, W_shape, pad, chunk, itemsize):
    """Memory fields of a layer by shifted views: forward, and its input gradient, the same
    function on gy with the flipped kernel (C and O swapped) and the gradient's pads."""
    O, C, KH, KW = W_shape
    forward = shifted.shifted_conv_buffers(x_shape, W_shape, pad, chunk=chunk)
    backward = shifted.shifted_conv_buffers(gy_shape, (C, O, KH, KW),
                                            winograd.gradient_pad(pad, (KH, KW)), chunk=chunk)
    bands = {name: forward[name] for name in ("S", "wide", "tmp")}
    _, forward_bytes = split(forward, "y", itemsize)
    grad, backward_bytes = split(backward, "y", itemsize)
    return dict(buffer_bytes=nbytes(bands, itemsize), forward_bytes=forward_bytes,
                backward_bytes=backward_bytes, grad_bytes=grad)


def _im2col_grad_input(x_shape, W_shape, stride, pad, chunk, itemsize):
    """(gx bytes, other bytes) of an im2col layer's input gradient: a convolution of gy where
    conv_fast.as_conv_applies, else col2im (gx is a view of the padded gxpad: all of it counts)."""
    if conv_fast.as_conv_applies(W_shape, stride, pad):
        gy_shape = (x_shape[0], W_shape[0], *conv.conv2d_shapes(x_shape, W_shape, None, stride,
                                                                  pad))
        buffers = conv_fast.grad_input_as_conv_buffers(gy_shape, W_shape, pad, chunk=chunk)
        return split(buffers, "gx", itemsize)
    buffers = conv.conv2d_grad_input_buffers(x_shape, W_shape, stride, pad, chunk=chunk)
    return split(buffers, "gxpad", itemsize)


POOL_BUFFERS = {"avg": (pooling.avg_pool2d_forward_buffers, pooling.avg_pool2d_grad_input_buffers),
                "max": (pooling.max_pool2d_forward_buffers, pooling.max_pool2d_grad_input_buffers)}


def pool_memory(x_shape, kernel, stride, pad, *, pooling, itemsize=4):
    """The LayerCost memory fields of an average or max pool of x (N, C, H, W), from
    pooling.py's buffers: saved_bytes, what it keeps for backward (max: the argmax);
    forward_bytes, the rest of its forward's arrays but y; backward_bytes, its gradient's but
    gxpad (grad_bytes: gx is a view of it)."""
    forward_buffers, grad_buffers = POOL_BUFFERS[pooling]
    forward = forward_buffers(x_shape, kernel, stride, pad)
    saved = nbytes({"argmax": forward.pop("argmax", 0)}, itemsize)
    _, forward_bytes = split(forward, "y", itemsize)
    grad, backward_bytes = split(grad_buffers(x_shape, kernel, stride, pad), "gxpad", itemsize)
    return dict(saved_bytes=saved, forward_bytes=forward_bytes, backward_bytes=backward_bytes,
                grad_bytes=grad)


# -- the whole iteration ---------------------------------------------------------------------------
def forward_peaks(layers, requested):
    """Per layer, the bytes one iteration holds while its forward runs.

    Its input (none for the first: the image is the optimiser's), output and work buffers, what
    the layers before it keep for backward, and the outputs of the ``requested`` layers (those
    the losses read) computed so far: VGG19.__call__ drops every other layer's output.
    """
    peaks, kept, held, previous = [], 0, 0, None
    for la in layers:
        given = previous.out_bytes if previous is not None else 0
        peaks.append(kept + held + given + la.saved_bytes + la.out_bytes + la.forward_bytes)
        kept += la.saved_bytes
        if previous is not None and previous.name in requested:
            held += previous.out_bytes        # no longer the input, still held for the losses
        previous = la
    return peaks


def forward_only_peaks(layers, loss_layers, *, band_bytes):
    """Per layer, the bytes a forward without a graph holds: tiled.py's pass 1 on one window.

    Nothing is kept for backward and no output for the losses (each loss layer's owned positions
    are summed into moments as soon as they are made, in bands of at most ``band_bytes`` in
    all, tiled.band_moments: a band's copy and its weighted copy). A conv or pool holds its
    input, its output and its work buffers; a ReLU runs over its conv's output in place, with
    its transient boolean mask; any layer's output may then be copied once, cropped to the span
    the deeper layers need (tile_runner.SpanCrops), the uncropped one still held while a loss
    layer's bands are summed: two outputs and the bands at once, at most.
    """
    peaks, previous = [], None
    for la in layers:
        given = previous.out_bytes if previous is not None else 0
        runs = la.out_bytes + la.saved_bytes if la.kind == "relu" else \
            given + la.out_bytes + la.forward_bytes
        bands = min(band_bytes, 2 * la.out_bytes) if la.name in loss_layers else 0
        peaks.append(max(runs, 2 * la.out_bytes) + bands)
        previous = la
    return peaks


def backward_peaks(layers, kept, loss_layers, *, image_bytes):
    """Per layer, the bytes one iteration holds while its backward runs.

    ``kept``: all that is kept until backward ends. Then gy (the loss's gradient at the deepest
    layer, else the gx of the layer after), gx and the work buffers. Where a loss reads a layer
    L above the deepest, the engine sums its gradient and the gx of L + 1: three arrays at once.
    The order is fixed (autograd/tensor.py: among functions of equal generation, the one
    recorded last runs first): the loss reading L is recorded after the whole network, so its
    gradient comes first and waits while L + 1's backward runs. The first layer adds the image's
    gradient and, from the total variation, a second image-sized one.
    """
    peaks, gy = [], layers[-1].out_bytes
    for i in reversed(range(len(layers))):
        la, below, merge = layers[i], layers[i - 1] if i else None, 0
        waiting = below.out_bytes if below is not None and below.name in loss_layers else 0
        if la.name in loss_layers and i < len(layers) - 1:
            merge, gy = kept + gy + 2 * la.out_bytes, la.out_bytes   # gy then is the sum
        image = 0 if i else 2 * image_bytes
        peaks.append(max(merge, kept + gy + waiting + la.grad_bytes + la.backward_bytes + image))
        gy = la.grad_bytes
    return peaks[::-1]


def loss_bytes(by_name, style_layers, content_layers, image_shape, *, itemsize=4):
    """(targets, kept) bytes of the losses. Targets: per style layer A/M_s (N, C, C), per content
    layer P. Kept for backward, besides the style layers' outputs (Gram keeps F): per style layer
    G/M - A (SumSquaredError's; Div by the constant M keeps no G/M), per content layer F - P,
    and the total variation's dv (N, C, H-1, W) and dh (N, C, H, W-1)."""
    n, c, h, w = image_shape
    grams = [by_name[name].shape[0] * by_name[name].shape[1] ** 2 * itemsize
             for name in style_layers]
    contents = [by_name[name].out_bytes for name in content_layers]
    tv = n * c * ((h - 1) * w + h * (w - 1)) * itemsize
    return sum(grams) + sum(contents), sum(grams) + sum(contents) + tv


def memory_peaks(layers, style_layers, content_layers, image_shape, *, itemsize=4):
    """(targets, kept, forward peaks, backward peaks) of one iteration, in bytes.

    layers: plan.py's LayerCost records, in network order. kept: the layers' saved arrays, the
    style layers' outputs and the losses' (loss_bytes). The losses' forward runs after the last
    layer, holding every requested output: the last layer's forward peak covers it too.
    """
    by_name = {layer.name: layer for layer in layers}
    requested = {*style_layers, *content_layers}
    targets, losses = loss_bytes(by_name, style_layers, content_layers, image_shape,
                                 itemsize=itemsize)
    saved = sum(la.saved_bytes for la in layers)
    kept = saved + sum(by_name[name].out_bytes for name in set(style_layers)) + losses
    forward = forward_peaks(layers, requested)
    forward[-1] = max(forward[-1], saved + sum(by_name[n].out_bytes for n in requested) + losses)
    image = math.prod(image_shape) * itemsize
    return targets, kept, forward, backward_peaks(layers, kept, requested, image_bytes=image)
