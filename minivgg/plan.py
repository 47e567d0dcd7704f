"""The cost model: what one style-transfer iteration costs, worked out before running it.

Used by ``python -m minivgg.stylize CONTENT STYLE --explain`` (explain.py prints the plan) and
by the memory check before a real run (fits.py). Pure arithmetic on the network's
own layers (``net.layers``: each conv's shape, each pool's kernel, stride and padding, and
``net.pooling``), the image size and the layers the losses read; memory.py gives the bytes
(from the ops' own ``*_buffers`` functions), device.py the size of the work buffers.

Notation: N images, C input channels, H x W input size, O output channels, KH x KW kernel,
OH x OW output size. VGG's convolutions are 3x3 with stride 1 and padding 1, so OH = H, OW = W;
its 2x2 pools with stride 2 halve H and W, rounding up with the current file's [0 1 0 1] pad.

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
memory.py's model; this file adds what the whole run holds besides: the weights, Winograd's
transformed kernels and the optimiser's state (optim.optimizer_state_bytes).
"""
import math
from dataclasses import dataclass

from miniautograd import conv, pooling

from .device import Device
from .errors import UserError
from .memory import conv_memory, memory_peaks, pool_memory
from .optim import optimizer_state_bytes
from .vgg import check_layer_names


@dataclass(frozen=True)
class LayerCost:
    """One layer of the plan. ``shape`` is its output (N, C, OH, OW); the rest in bytes."""
    name: str
    kind: str              # "conv", "relu" or "pool"
    shape: tuple
    macs: int              # forward multiply-adds (0 for ReLU and pooling)
    out_bytes: int         # the output array
    saved_bytes: int       # kept by the op until backward ends: ReLU's mask, max pool's argmax
    algorithm: str = ""    # a conv's: "im2col", "shifted", "winograd" or "winograd4"
    buffer_bytes: int = 0  # a conv's forward work buffers: col, or the bands (shifted, Winograd)
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
    mask_bytes: int = 0  # --style-masks: one float32 mask per style per style layer, held (the
    #                      extra C x C targets and differences, one per style, are not counted)
    half_history: bool = False   # L-BFGS's pairs kept as float16 (lbfgs_history.py)

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
                + self.mask_bytes + self.iteration_bytes)


def conv_weight_shape(spec):
    """W's (O, C, KH, KW) of a conv LayerSpec, whose kernel is the file's (KH, KW, C, O)."""
    kh, kw, c, o = spec.kernel
    return (o, c, kh, kw)


def layer_costs(net, size, *, deepest, batch=1, itemsize=4, device="cpu"):
    """The LayerCost of every layer of ``net.layers`` from the input down to ``deepest``.

    net: a VGG19, or anything with its ``layers`` (LayerSpecs in network order) and
    ``pooling`` ("avg" or "max"); size: (H, W); device: "cpu" or "gpu" (device.py), whose
    convolution buffers differ in size. The pools are the specs' own (kernel, stride, pad).
    """
    layers = layers_to(net, deepest)
    check_reaches(layers, size)
    chunk, costs = Device(device).chunk, []
    x_shape = (batch, conv_weight_shape(layers[0])[1], *size)    # (N, C, H, W) of the input
    for spec in layers:
        if spec.kind == "conv":
            cost = _conv_cost(spec, x_shape, itemsize=itemsize, chunk=chunk)
        elif spec.kind == "relu":
            cost = _relu_cost(spec.name, x_shape, itemsize=itemsize)
        else:
            cost = _pool_cost(spec, x_shape, pooling=net.pooling, itemsize=itemsize)
        costs.append(cost)
        x_shape = cost.shape                                    # this output is the next input
    return costs


def _conv_cost(spec, x_shape, *, itemsize, chunk):
    """A conv's LayerCost: (N, C, H, W) in, (N, O, OH, OW) out, N*OH*OW*O*C*KH*KW MACs."""
    (o, c_in, kh, kw), (n, c, _, _) = conv_weight_shape(spec), x_shape
    if c_in != c:
        raise ValueError(f"plan: {spec.name} expects {c_in} input channels but gets {c}")
    W_shape = (o, c, kh, kw)
    oh, ow = conv.conv2d_shapes(x_shape, W_shape, None, spec.stride, spec.pad)
    memory = conv_memory(x_shape, W_shape, spec.stride, spec.pad, chunk=chunk, itemsize=itemsize)
    return LayerCost(spec.name, "conv", (n, o, oh, ow), n * oh * ow * o * c * kh * kw,
                     n * o * oh * ow * itemsize, saved_bytes=0, **memory)


def _relu_cost(name, x_shape, *, itemsize):
    """A ReLU's LayerCost: same shape in and out, its boolean mask kept (1 byte per element),
    gx = gy * mask its only gradient array (autograd/activation.py)."""
    out = math.prod(x_shape)
    return LayerCost(name, "relu", tuple(x_shape), 0, out * itemsize, saved_bytes=out,
                     grad_bytes=out * itemsize)


def _pool_cost(spec, x_shape, *, pooling, itemsize):
    """A pool's LayerCost, with the spec's kernel, stride and pad: (N, C, H, W) in,
    (N, C, OH, OW) out."""
    kernel, stride, pad, (oh, ow) = pool_geometry(spec, x_shape)
    memory = pool_memory(x_shape, kernel, stride, pad, pooling=pooling, itemsize=itemsize)
    n, c = x_shape[:2]
    return LayerCost(spec.name, "pool", (n, c, oh, ow), 0, n * c * oh * ow * itemsize, **memory)


def pool_geometry(spec, x_shape):
    """(kernel, stride, pad, (OH, OW)) of a pool LayerSpec on an (N, C, H, W) input."""
    return pooling.pool_args(x_shape, spec.kernel, spec.stride, spec.pad, op=spec.name)


# -- which layers, and the smallest image that reaches them ---------------------------------------
def deepest_layer(net, names):
    """The deepest of the layer ``names`` in ``net.layers`` (UserError for an unknown one)."""
    order = [spec.name for spec in net.layers]
    check_layer_names(names, order)
    return max(names, key=order.index)


def layers_to(net, deepest):
    """net.layers from the first down to ``deepest`` (included): those a forward to it runs."""
    order = [spec.name for spec in net.layers]
    check_layer_names([deepest], order)
    return net.layers[:order.index(deepest) + 1]


def pixels_needed(layers):
    """The smallest side an image needs to run through ``layers`` (LayerSpecs in order):
    2^pools for VGG-19's 2x2, stride-2 pools (16 px down to relu5_1).

    Walked back from one output pixel: n outputs of a window K, stride S need (n-1)*S + K inputs,
    less a convolution's padding ("same" 3x3 convolutions keep the size). A pool's padding is not
    counted, so every pool window lies wholly in the image, and the answer is the same for both
    layouts of the weights file (one pads its pools [0 1 0 1], the other not at all).
    """
    need = [1, 1]                                               # rows, columns
    for spec in reversed(layers):
        if spec.kind in ("conv", "pool"):
            kernel = conv_weight_shape(spec)[2:] if spec.kind == "conv" else spec.kernel
            pads = spec.pad if spec.kind == "conv" else (0, 0, 0, 0)
            need = [max(1, (n - 1) * s + k - before - after) for n, s, k, before, after
                    in zip(need, spec.stride, kernel, pads[::2], pads[1::2])]
    return max(need)


def check_reaches(layers, size):
    """UserError when an image of ``size`` (H, W) is smaller than pixels_needed(layers)."""
    need = pixels_needed(layers)
    if min(size) < need:
        raise UserError(f"a {size[1]}x{size[0]} image is too small to reach {layers[-1].name}, "
                        f"which needs at least {need} pixels on each side; use a larger --size")


def plan_iteration(net, size, *, style_layers=(), content_layers=(), deepest=None, batch=1,
                   itemsize=4, optimizer="lbfgs", history=10, device="cpu", masks=0,
                   half_history=False):
    """The IterationPlan of one iteration at ``size`` = (H, W) of the network ``net``.

    net: a VGG19 (or its ``layers`` and ``pooling``); style_layers, content_layers: the layers
    the losses read (Gram matrices, their memory); deepest: where the forward stops, by default
    the deepest of those (as VGG19.__call__ stops); device: "cpu" or "gpu" (device.py);
    masks: the number of --style-masks, each held at every style layer's resolution, and one
    guided Gram matrix per mask and style layer; half_history: L-BFGS keeps its pairs as float16.
    """
    loss_layers = [*style_layers, *content_layers]
    if deepest is None:
        if not loss_layers:
            raise ValueError("plan_iteration: give the loss layers, or deepest")
        deepest = deepest_layer(net, loss_layers)
    layers = layer_costs(net, size, deepest=deepest, batch=batch, itemsize=itemsize,
                         device=device)
    by_name = {layer.name: layer for layer in layers}
    _check_loss_layers(loss_layers, by_name, deepest)
    image_shape = (batch, conv_weight_shape(net.layers[0])[1], *size)   # (N, C, H, W)
    targets, kept, forward, backward = memory_peaks(layers, style_layers, content_layers,
                                                    image_shape, itemsize=itemsize)
    image = math.prod(image_shape) * itemsize
    weights = [conv_weight_shape(spec) for spec in net.layers if spec.kind == "conv"]
    return IterationPlan(
        tuple(size), batch, deepest, net.pooling, itemsize, tuple(layers), tuple(style_layers),
        gram_macs=max(masks, 1) * sum(n * c * c * h * w for n, c, h, w in
                                      (by_name[s].shape for s in style_layers)),
        image_bytes=image, weight_bytes=sum((math.prod(W) + W[0]) * itemsize for W in weights),
        kernel_bytes=sum(la.kernel_bytes for la in layers), target_bytes=targets,
        kept_bytes=kept, forward_peaks=tuple(forward), backward_peaks=tuple(backward),
        state_bytes=optimizer_state_bytes(image // itemsize, optimizer=optimizer,
                                          history=history, itemsize=itemsize,
                                          half_history=half_history),
        optimizer=optimizer, history=history, half_history=half_history,
        mask_bytes=masks * sum(h * w * itemsize for _, _, h, w in
                               (by_name[s].shape for s in style_layers)))


def _check_loss_layers(names, by_name, deepest):
    missing = [name for name in names if name not in by_name]
    if missing:
        raise UserError(f"the layer {missing[0]} is deeper than {deepest}; use {deepest} or a "
                        "shallower layer for the losses")
