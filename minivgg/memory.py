"""The memory model: how many bytes one style-transfer iteration holds, layer by layer.

plan.py builds its IterationPlan from these functions; they are pure arithmetic on shapes. They
rely on NumPy and on autograd/conv.py's and winograd.py's own rules (which algorithm a conv
runs, ``conv.chunks`` and ``winograd.band_shapes`` for how large its buffers are) rather
than copies of them, so the model follows the engine when the engine changes.

Notation: N images, C input channels, H x W input size, O output channels, KH x KW kernel,
OH x OW output size.

Memory (bytes, ``itemsize`` per element: 4 for float32). The graph keeps no layer outputs (a
Function keeps only ``Edge`` records of its inputs, autograd/tensor.py), so an array lives while
the program holds it or an op keeps it for backward. Held for the whole run: the weights, the
Winograd layers' transformed kernels U (16*O*C each, made on first use), the losses' targets and
the optimiser's state (L-BFGS: ``history`` pairs (s, y) of image-sized vectors plus a few
working ones; Adam: two moments; plan.optimizer_state_bytes). One iteration then allocates:
- kept until its backward ends: ReLU's boolean mask (1 byte per element), max pooling's uint8
  argmax, the style layers' outputs (Gram keeps F), per style layer G/M - A (N*C*C each; the
  division by a constant M keeps nothing), per content layer F - P, for the total variation its
  two neighbour differences;
- forward, layer by layer (:func:`forward_peaks`): its input, its output and its work buffers
  (:func:`conv_memory`), the requested layers' outputs computed so far, and what is kept so far;
- backward, layer by layer (:func:`backward_peaks`): gy, gx, the work buffers and all that is
  kept; where a loss reads a layer, its gradient and the one from deeper layers are summed
  (three arrays at once), and the loss's may wait while the next layer's backward runs.
The iteration's peak is the largest of these. The estimate is a model, not a measurement:
bench/bench_iteration.py prints both side by side.
"""
import numpy as np

from miniautograd import backend, conv, conv_fast, winograd


# -- one layer's buffers ---------------------------------------------------------------------------
def col_bytes(n, c, h, w, kh, kw, *, chunk, itemsize=4):
    """Bytes of conv.py's col buffer for a 'same' conv of an (N, C, H, W) input: its largest chunk.

    The col matrix is built chunk by chunk (whole images, or bands of output rows) in one reused
    buffer of at most ``chunk`` elements: the first chunk of ``conv.chunks`` is the largest.
    """
    row_elements = c * kh * kw * w                        # col entries of one output row
    images, rows = next(conv.chunks(n, h, row_elements, chunk))
    return (images.stop - images.start) * (rows.stop - rows.start) * row_elements * itemsize


def conv_memory(n, c, h, w, o, kh, kw, *, device="cpu", itemsize=4):
    """The LayerCost memory fields of a 'same' conv (stride 1, pad KH//2) as conv.py runs it.

    The algorithm is conv_fast.choose_algorithm's; its buffers are :func:`_winograd_memory`'s or
    :func:`_im2col_memory`'s. device: "cpu" or "gpu", where the buffers' chunks differ in size.
    """
    pad = (kh // 2, kh // 2, kw // 2, kw // 2)
    algorithm = conv_fast.choose_algorithm("auto", (o, c, kh, kw), (1, 1), pad)
    if algorithm == "winograd":
        memory = _winograd_memory(n, c, h, w, o, device=device, itemsize=itemsize)
    else:
        memory = _im2col_memory(n, c, h, w, o, kh, kw, device=device, itemsize=itemsize)
    return dict(algorithm=algorithm, **memory)


def _winograd_memory(n, c, h, w, o, *, device, itemsize):
    """Winograd (3x3, C and O >= 128): forward holds y and the band buffers
    (winograd.band_shapes of (C, O)), backward gx and those of (O, C) (gy's flip is a view);
    an odd size adds the uncropped (N, O, 2*ceil(OH/2), 2*ceil(OW/2)) array."""
    chunk = backend.CHUNK_ELEMENTS[device]
    uncropped = 0 if h % 2 == 0 and w % 2 == 0 else n * (h + h % 2) * (w + w % 2) * itemsize
    bands = [sum(int(np.prod(s)) for s in winograd.band_shapes(a, b, h, w, chunk).values())
             * itemsize
             for a, b in ((c, o), (o, c))]
    return dict(buffer_bytes=bands[0], forward_bytes=bands[0] + o * uncropped,
                backward_bytes=bands[1] + c * uncropped, grad_bytes=n * c * h * w * itemsize,
                kernel_bytes=16 * o * c * itemsize)


def _im2col_memory(n, c, h, w, o, kh, kw, *, device, itemsize):
    """im2col: forward holds y, the padded input (N, C, H+2p, W+2p) and the col buffer; backward,
    when conv_fast.as_conv_applies, the padded gy (N, O, H+2p, W+2p), its col buffer and the flipped
    W, else (col2im) the padded gx (gx is a view of it) and the gcol buffer, the size of col."""
    pad = (kh // 2, kh // 2, kw // 2, kw // 2)

    def padded(channels):
        return n * channels * (h + 2 * pad[0]) * (w + 2 * pad[2]) * itemsize

    chunk = backend.CHUNK_ELEMENTS[device]
    col = col_bytes(n, c, h, w, kh, kw, chunk=chunk, itemsize=itemsize)
    if conv_fast.as_conv_applies((o, c, kh, kw), (1, 1), pad):
        backward = padded(o) + col_bytes(n, o, h, w, kh, kw, chunk=chunk, itemsize=itemsize)
        backward, grad = backward + o * c * kh * kw * itemsize, n * c * h * w * itemsize
    else:
        backward, grad = col, padded(c)
    return dict(buffer_bytes=col, forward_bytes=padded(c) + col, backward_bytes=backward,
                grad_bytes=grad)


def pool_memory(n, c, h, w, oh, ow, *, pooling, pool_pad, itemsize=4):
    """The LayerCost memory fields of a 2x2 pool of (N, C, H, W) into (N, C, OH, OW).

    Forward: the padded input copy (none without padding); max pooling adds its uint8 argmax
    (kept) and a boolean comparison per window offset. Backward: the padded gx (gx views it) and
    gy / 4 (average), or gy * (argmax == k) and its boolean mask (max).
    """
    padded = n * c * (h + pool_pad[0] + pool_pad[1]) * (w + pool_pad[2] + pool_pad[3]) * itemsize
    copy = padded if any(pool_pad) else 0
    outputs = n * c * oh * ow
    if pooling == "max":
        return dict(saved_bytes=outputs, forward_bytes=copy + outputs,
                    backward_bytes=outputs * (itemsize + 1), grad_bytes=padded)
    return dict(saved_bytes=0, forward_bytes=copy, backward_bytes=outputs * itemsize,
                grad_bytes=padded)


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


def backward_peaks(layers, kept, loss_layers, *, image_bytes):
    """Per layer, the bytes one iteration holds while its backward runs.

    ``kept``: all that is kept until backward ends. Then gy (the loss's gradient at the deepest
    layer, else the gx of the layer after), gx and the work buffers. Where a loss reads a layer
    L above the deepest, the engine sums its gradient and the gx of L + 1: three arrays at once.
    Which of the two comes first varies from run to run (functions of equal generation run in
    the order of their ids, autograd/tensor.py): the model takes the dearer order, the loss's
    gradient waiting while L + 1's backward runs. The first layer adds the image's gradient and,
    from the total variation, a second image-sized one.
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
    image = int(np.prod(image_shape)) * itemsize
    return targets, kept, forward, backward_peaks(layers, kept, requested, image_bytes=image)
