"""The cost model: what one style-transfer iteration costs, worked out before running it.

Used by ``python -m minivgg.stylize CONTENT STYLE --explain`` (explain.py prints the plan) and
by the memory check before a real run (:func:`check_memory`). Pure arithmetic on VGG-19's conv
shapes, the image size, the deepest layer used and the pooling; it relies on NumPy, on memory.py
for the bytes (which follows conv.py's and winograd.py's own rules) and on machine.py for the
free RAM or GPU memory the check compares against.

Notation: N images, C input channels, H x W input size, O output channels, KH x KW kernel,
OH x OW output size. VGG's convolutions are 3x3 with stride 1 and padding 1, so OH = H, OW = W;
its 2x2 pools with stride 2 halve H and W, rounding up: the published file pads them by one row
at the bottom and one column at the right (Caffe's ceil mode; no effect on even sizes).

Multiply-adds. A convolution takes, for each of the N*OH*OW output positions and each of the O
output channels, a dot product of length C*KH*KW:  MACs = N * OH * OW * O * C * KH * KW.
Its input gradient is the same product transposed and costs the same again; the weights are
frozen, so no weight gradient is computed or counted. One multiply-add is 2 FLOP, so one
iteration (forward + input gradient) is 2 x 2 x MACs FLOP. At 512 x 512 down to relu5_1 that is
361,152 multiply-adds per pixel forward (94.7 G), 722,304 with the gradient. These count the
direct convolution: Winograd's layers do fewer multiplications for the same result. Pooling, ReLU
and the losses are a few operations per element: not counted, except the Gram matrices of the
style layers (N * C * C * H*W multiply-adds each way), shown on their own line.

Memory: one iteration's peak, layer by layer, forward and backward, and the losses' targets are
memory.py's model (what each op keeps for backward, each conv's work buffers); this file adds
what the whole run holds besides: the weights, Winograd's transformed kernels (their size is
conv_memory's) and the optimiser's state (:func:`optimizer_state_bytes`).
"""
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .explain import format_bytes
from .machine import available_memory_bytes
from .memory import conv_memory, memory_peaks, pool_memory
from .optim import optimizer_state_bytes

POOL = 2                    # VGG's pools: 2x2 windows, stride 2,
VGG_POOL_PAD = (0, 1, 0, 1)  # padded (top, bottom, left, right) as in the published file
GIB = 1024 ** 3


@dataclass(frozen=True)
class LayerCost:
    """One layer of the plan. ``shape`` is its output (N, C, OH, OW); the rest in bytes."""
    name: str
    kind: str              # "conv", "relu" or "pool"
    shape: tuple
    macs: int              # forward multiply-adds (0 for ReLU and pooling)
    out_bytes: int         # the output array
    saved_bytes: int       # kept by the op until backward ends: ReLU's mask, max pool's argmax
    algorithm: str = ""    # a conv's: "im2col" or "winograd" (conv.choose_algorithm)
    buffer_bytes: int = 0  # a conv's forward work buffers: the col buffer, or Winograd's bands
    forward_bytes: int = 0   # transient in forward, beyond its input, output and saved
    backward_bytes: int = 0  # transient in backward, beyond gy and gx
    grad_bytes: int = 0      # gx, the input gradient it returns (all of a padded array it views)
    kernel_bytes: int = 0    # Winograd's transformed kernel U, held once made


@dataclass(frozen=True)
class IterationPlan:
    """The cost of one iteration: forward to ``deepest``, then the gradient w.r.t. the image."""
    size: tuple          # (H, W) of the image
    batch: int
    deepest: str
    pooling: str
    itemsize: int
    layers: tuple        # LayerCost, in network order
    style_layers: tuple  # the layers the style loss reads (their outputs are kept)
    gram_macs: int       # forward multiply-adds of the style layers' Gram matrices
    image_bytes: int
    weight_bytes: int    # every conv's W and b: the network holds them all
    kernel_bytes: int    # the Winograd layers' transformed kernels, made once, then held
    target_bytes: int    # the losses' constant targets: content responses, style Gram matrices
    kept_bytes: int      # allocated by one iteration and held until its backward ends
    forward_peaks: tuple   # per layer: what the iteration holds while its forward runs
    backward_peaks: tuple  # per layer: what the iteration holds while its backward runs
    state_bytes: int     # the optimiser's state
    optimizer: str
    history: int

    @property
    def forward_macs(self):
        return sum(layer.macs for layer in self.layers)

    @property
    def flop(self):
        """FLOP of one iteration: 2 FLOP per multiply-add, x 2 for the input gradient."""
        return 2 * 2 * (self.forward_macs + self.gram_macs)

    @property
    def iteration_bytes(self):
        """The most one iteration holds at once, beyond the run's constant memory."""
        return max(*self.forward_peaks, *self.backward_peaks)

    @property
    def transient_bytes(self):
        """The part of the iteration's peak that comes and goes: buffers, gradients, inputs."""
        return self.iteration_bytes - self.kept_bytes

    @property
    def peak_layer(self):
        """(layer name, "forward" or "backward") where the iteration's peak is."""
        peaks = [(peak, la.name, "forward") for peak, la in zip(self.forward_peaks, self.layers)]
        peaks += [(peak, la.name, "backward") for peak, la in zip(self.backward_peaks, self.layers)]
        return max(peaks, key=lambda entry: entry[0])[1:]

    def kept_layer_bytes(self, layer):
        """What ``layer`` leaves kept until backward ends: its saved arrays, and its output
        when a style loss reads it (and ``kept_bytes`` counts it)."""
        return layer.saved_bytes + (layer.out_bytes if layer.name in self.style_layers else 0)

    @property
    def peak_bytes(self):
        return (self.weight_bytes + self.kernel_bytes + self.target_bytes + self.state_bytes
                + self.iteration_bytes)


def vgg_layer_sequence(conv_names):
    """[(name, kind)] in network order: each conv followed by its ReLU, a pool closing each block.

    The blocks are read from MatConvNet's names, ``conv{block}_{index}``; ``pool{block}`` follows
    the last conv of every block, as in VGG-19.
    """
    sequence, block = [], None
    for name in conv_names:
        if not name.startswith("conv") or "_" not in name:
            raise ValueError(f"plan: conv layers must be named conv<block>_<index>; got {name!r}")
        this_block = name[len("conv"):].split("_")[0]
        if block is not None and this_block != block:
            sequence.append((f"pool{block}", "pool"))
        sequence += [(name, "conv"), ("relu" + name[len("conv"):], "relu")]
        block = this_block
    return sequence + [(f"pool{block}", "pool")]


def layer_costs(conv_shapes, size, *, deepest="relu5_1", pooling="avg", pool_pad=VGG_POOL_PAD,
                batch=1, itemsize=4, device="cpu"):
    """The LayerCost of every layer from the input down to ``deepest`` (included).

    conv_shapes: [(name, (O, C, KH, KW))] as ``net.conv_shapes()`` gives; size: (H, W);
    pool_pad: the pools' (top, bottom, left, right) padding; device: "cpu" or "gpu", where
    conv.py's and winograd.py's buffers differ in size.
    """
    sequence = vgg_layer_sequence([name for name, _ in conv_shapes])
    _check_deepest(deepest, [name for name, _ in sequence])
    _check_fits_in_pools(size, deepest, sequence, pool_pad)
    shapes, costs = dict(conv_shapes), []
    x_shape = (batch, conv_shapes[0][1][1], *size)          # (N, C, H, W) of the layer's input
    for name, kind in sequence:
        if kind == "conv":
            cost = _conv_cost(name, shapes[name], x_shape, itemsize=itemsize, device=device)
        elif kind == "relu":
            cost = _relu_cost(name, x_shape, itemsize=itemsize)
        else:
            cost = _pool_cost(name, x_shape, pooling=pooling, pool_pad=pool_pad,
                              itemsize=itemsize)
        costs.append(cost)
        if name == deepest:
            return costs
        x_shape = cost.shape                                # this output is the next input
    raise AssertionError("unreachable: deepest was checked")


def _conv_cost(name, W_shape, x_shape, *, itemsize, device):
    """A 'same' conv's LayerCost: (N, C, H, W) in, (N, O, H, W) out, N*H*W*O*C*KH*KW MACs."""
    (o, c_in, kh, kw), (n, c, h, w) = W_shape, x_shape
    if c_in != c:
        raise ValueError(f"plan: {name} expects {c_in} input channels but gets {c}")
    memory = conv_memory(n, c, h, w, o, kh, kw, device=device, itemsize=itemsize)
    return LayerCost(name, "conv", (n, o, h, w), n * h * w * o * c * kh * kw,
                     n * o * h * w * itemsize, saved_bytes=0, **memory)


def _relu_cost(name, x_shape, *, itemsize):
    """A ReLU's LayerCost: same shape in and out, its boolean mask kept (1 byte per element)."""
    out = int(np.prod(x_shape))
    return LayerCost(name, "relu", tuple(x_shape), 0, out * itemsize, saved_bytes=out,
                     grad_bytes=out * itemsize)


def _pool_cost(name, x_shape, *, pooling, pool_pad, itemsize):
    """A 2x2, stride-2 pool's LayerCost: (N, C, H, W) in, (N, C, OH, OW) out."""
    n, c, h, w = x_shape
    oh, ow = pooled(h, pool_pad[:2]), pooled(w, pool_pad[2:])
    memory = pool_memory(n, c, h, w, oh, ow, pooling=pooling, pool_pad=pool_pad,
                         itemsize=itemsize)
    return LayerCost(name, "pool", (n, c, oh, ow), 0, n * c * oh * ow * itemsize, **memory)


def pooled(side, pads):
    """A side's length after a 2x2, stride-2 pool padded by ``pads`` = (before, after).

    1 + (side + before + after - 2) // 2: side // 2 without padding; rounding up (Caffe's ceil
    mode) with VGG's (0, 1). 0 when the padded side is shorter than the window.
    """
    padded = side + pads[0] + pads[1]
    return 0 if padded < POOL else 1 + (padded - POOL) // POOL


def _check_deepest(deepest, names):
    if deepest not in names:
        raise UserError(f"there is no layer {deepest!r} in this network; use one of "
                        f"{', '.join(names)}")


def _check_fits_in_pools(size, deepest, sequence, pool_pad):
    names = [name for name, _ in sequence]
    pools = sum(kind == "pool" for _, kind in sequence[:names.index(deepest)])

    def reaches(side, pads):
        for _ in range(pools):
            side = pooled(side, pads)
        return side > 0

    if not (reaches(size[0], pool_pad[:2]) and reaches(size[1], pool_pad[2:])):
        need = next(side for side in range(1, POOL ** pools + 1)
                    if reaches(side, pool_pad[:2]) and reaches(side, pool_pad[2:]))
        raise UserError(f"a {size[0]}x{size[1]} image is too small to reach {deepest}, which "
                        f"needs at least {need} pixels on each side; use a larger --size")


def plan_iteration(conv_shapes, size, *, deepest="relu5_1", pooling="avg", pool_pad=VGG_POOL_PAD,
                   batch=1, itemsize=4, style_layers=(), content_layers=(), optimizer="lbfgs",
                   history=10, device="cpu"):
    """The IterationPlan of one iteration at ``size`` = (H, W), down to ``deepest``.

    style_layers, content_layers: the layers the losses read (Gram matrices, their memory);
    device: "cpu" or "gpu", where conv.py's and winograd.py's buffers differ in size.
    """
    if pooling not in ("avg", "max"):
        raise ValueError(f"plan: pooling must be 'avg' or 'max', not {pooling!r}")
    layers = layer_costs(conv_shapes, size, deepest=deepest, pooling=pooling, pool_pad=pool_pad,
                         batch=batch, itemsize=itemsize, device=device)
    by_name = {layer.name: layer for layer in layers}
    _check_loss_layers([*style_layers, *content_layers], by_name, deepest)
    image_shape = (batch, conv_shapes[0][1][1], *size)     # (N, C, H, W) of the image
    targets, kept, forward, backward = memory_peaks(layers, style_layers, content_layers,
                                                    image_shape, itemsize=itemsize)
    image = int(np.prod(image_shape)) * itemsize
    return IterationPlan(
        tuple(size), batch, deepest, pooling, itemsize, tuple(layers), tuple(style_layers),
        gram_macs=sum(n * c * c * h * w for n, c, h, w in (by_name[s].shape for s in style_layers)),
        image_bytes=image,
        weight_bytes=sum((o * c * kh * kw + o) * itemsize for _, (o, c, kh, kw) in conv_shapes),
        kernel_bytes=sum(la.kernel_bytes for la in layers), target_bytes=targets,
        kept_bytes=kept, forward_peaks=tuple(forward), backward_peaks=tuple(backward),
        state_bytes=optimizer_state_bytes(image // itemsize, optimizer=optimizer,
                                          history=history, itemsize=itemsize),
        optimizer=optimizer, history=history)


def _check_loss_layers(names, by_name, deepest):
    missing = [name for name in names if name not in by_name]
    if missing:
        raise UserError(f"the layer {missing[0]} is deeper than {deepest}; use {deepest} or a "
                        "shallower layer for the losses")


# -- sizes that fit, and the check before a run ----------------------------------------------------
def scaled_size(size, longest):
    """(H, W) scaled so that its longer side is ``longest`` pixels, keeping the aspect ratio."""
    scale = longest / max(size)
    return tuple(max(1, round(side * scale)) for side in size)


def largest_size_that_fits(conv_shapes, available_bytes, *, shape=(1, 1), **options):
    """The longest side (pixels) whose plan's peak memory fits in ``available_bytes``; 0 if none.

    shape: the image's (H, W), for its aspect ratio; options: those of :func:`plan_iteration`.
    Bisection: the peak grows with the size.
    """
    def fits(longest):
        try:
            plan = plan_iteration(conv_shapes, scaled_size(shape, longest), **options)
        except UserError:           # too small to reach the deepest layer
            return False
        return plan.peak_bytes <= available_bytes

    low, high = 0, 1 << 16                          # fits(low) holds (or low == 0); fits(high) not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def check_memory(conv_shapes, size, *, device="cpu", available=None, **options):
    """Raise UserError if one iteration at ``size`` is estimated not to fit; return the plan.

    available: free bytes (measured with :func:`available_memory_bytes` when None; no check at
    all when the system does not say). options: those of :func:`plan_iteration`.
    """
    plan = plan_iteration(conv_shapes, size, device=device, **options)
    if available is None:
        available = available_memory_bytes(device)
    if available is None or plan.peak_bytes <= available:
        return plan
    where = "GPU memory" if device == "gpu" else "RAM"
    longest = largest_size_that_fits(conv_shapes, available, shape=size, device=device, **options)
    advice = f"use --size {longest} or less" if longest else "free some memory"
    raise UserError(f"one iteration at {size[1]}x{size[0]} needs about "
                    f"{format_bytes(plan.peak_bytes)} but only {format_bytes(available)} of "
                    f"{where} is free; {advice}")
