"""The cost model: what one style-transfer iteration costs, worked out before running it.

Used by ``python -m minivgg.stylize CONTENT STYLE --explain`` (it prints :func:`explain_text`) and
by the memory check before a real run (:func:`check_memory`). Pure arithmetic on VGG-19's conv
shapes, the image size, the deepest layer used and the pooling; it relies on NumPy only (CuPy,
through ``miniautograd.backend``, only for the GPU's rate and free memory).

Notation: N images, C input channels, H x W input size, O output channels, KH x KW kernel,
OH x OW output size. VGG's convolutions are 3x3 with stride 1 and padding 1, so OH = H, OW = W;
its 2x2 pools with stride 2 halve H and W, rounding up: the published file pads them by one row
at the bottom and one column at the right (Caffe's ceil mode; no effect on even sizes).

Multiply-adds. A convolution takes, for each of the N*OH*OW output positions and each of the O
output channels, a dot product of length C*KH*KW:  MACs = N * OH * OW * O * C * KH * KW.
Its input gradient (gcol = gy @ W, then col2im) is the same product transposed and costs the same
again; the weights are frozen, so no weight gradient is computed or counted. One multiply-add is
2 FLOP, so one iteration (forward + input gradient) is 2 x 2 x MACs FLOP. At 512 x 512 down to
relu5_1 that is 361,152 multiply-adds per pixel forward (94.7 G), 722,304 with the gradient.
Pooling, ReLU and the losses are a few operations per element: not counted, except the Gram
matrices of the style layers (N * C * C * H*W multiply-adds each way), shown on their own line.

Memory (bytes, ``itemsize`` per element: 4 for float32). What one iteration holds at its peak:
- the weights and biases of every conv layer (the network holds them all);
- kept for backward: the graph holds every layer's output until backward ends, ReLU adds its
  boolean mask (1 byte per element), max pooling its argmax;
- the losses' constant targets, and what they keep for backward: per style layer the Gram
  matrix, its normalised copy and its difference from the target (N*C*C each), per content layer
  the difference F - P, for the total variation two image-sized differences;
- transient: the largest set of buffers alive at once, which come and go layer by layer: inside
  one convolution (see :func:`conv_buffer_bytes`), or where backward adds a loss's gradient to
  the one coming from deeper layers (the two and their sum, three arrays of the layer's size);
- the optimiser's state: L-BFGS keeps ``history`` pairs (s, y) of image-sized vectors plus a few
  working ones; Adam two moments.
The estimate is a model, not a measurement: bench/bench_iteration.py prints both side by side.
"""
import os
import time
from dataclasses import dataclass

import numpy as np

from miniautograd import conv

from .errors import UserError

POOL = 2                    # VGG's pools: 2x2 windows, stride 2,
VGG_POOL_PAD = (0, 1, 0, 1)  # padded (top, bottom, left, right) as in the published file
GIB = 1024 ** 3


@dataclass(frozen=True)
class LayerCost:
    """One layer of the plan. ``shape`` is its output (N, C, OH, OW)."""
    name: str
    kind: str            # "conv", "relu" or "pool"
    shape: tuple
    macs: int            # forward multiply-adds (0 for ReLU and pooling)
    out_bytes: int       # the output array, kept by the graph until backward ends
    saved_bytes: int     # extra kept for backward: ReLU's mask, max pooling's argmax
    buffer_bytes: int    # the im2col buffer (its largest chunk) for a conv, else 0
    transient_bytes: int  # all buffers this layer holds at once while it runs, beyond the kept


@dataclass(frozen=True)
class IterationPlan:
    """The cost of one iteration: forward to ``deepest``, then the gradient w.r.t. the image."""
    size: tuple          # (H, W) of the image
    batch: int
    deepest: str
    pooling: str
    itemsize: int
    layers: tuple        # LayerCost, in network order
    gram_macs: int       # forward multiply-adds of the style layers' Gram matrices
    image_bytes: int
    weight_bytes: int    # every conv's W and b: the network holds them all
    target_bytes: int    # the losses' constant targets: content responses, style Gram matrices
    loss_bytes: int      # what the losses keep for backward: Gram matrices, differences
    merge_bytes: int     # where a loss reads a layer, backward sums two gradients: 3 arrays
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
    def kept_bytes(self):
        """Allocated by one iteration and held until its backward ends."""
        layers = sum(la.out_bytes + la.saved_bytes for la in self.layers)
        return self.image_bytes + layers + self.loss_bytes

    @property
    def transient_bytes(self):
        return max(self.merge_bytes, *(layer.transient_bytes for layer in self.layers))

    @property
    def peak_bytes(self):
        return (self.weight_bytes + self.target_bytes + self.state_bytes + self.kept_bytes
                + self.transient_bytes)


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


def conv_buffer_bytes(n, c, h, w, o, kh, kw, *, chunk, itemsize=4):
    """(im2col buffer, all transient buffers) in bytes of one 'same' conv (stride 1, pad KH//2).

    Modelled on autograd/conv.py. The col matrix is built chunk by chunk (whole images, or bands
    of output rows) in one reused buffer of at most ``chunk`` elements (conv.py's default differs
    between CPU and GPU): the largest chunk of ``conv.chunks``. Forward holds the padded input
    xpad (N, C, H+2p, W+2p) and that buffer; backward holds gy (N, O, H, W), the zero-padded gx
    being summed (N, C, H+2p, W+2p) and the gcol buffer (the size of col). Backward holds the
    most; that is the transient figure.
    """
    row_elements = c * kh * kw * w                        # col entries of one output row
    images, rows = next(conv.chunks(n, h, row_elements, chunk))   # the first chunk is the largest
    largest = (images.stop - images.start) * (rows.stop - rows.start)
    col = largest * row_elements * itemsize
    padded = n * c * (h + 2 * (kh // 2)) * (w + 2 * (kw // 2)) * itemsize
    gy = n * o * h * w * itemsize
    return col, gy + padded + col


def layer_costs(conv_shapes, size, *, deepest="relu5_1", pooling="avg", pool_pad=VGG_POOL_PAD,
                batch=1, itemsize=4, device="cpu", chunk=None):
    """The LayerCost of every layer from the input down to ``deepest`` (included).

    conv_shapes: [(name, (O, C, KH, KW))] as ``net.conv_shapes()`` gives; size: (H, W);
    pool_pad: the pools' (top, bottom, left, right) padding; chunk: the most elements of an
    im2col buffer (None: conv.py's default on ``device``).
    """
    chunk = chunk or (conv.CHUNK_GPU if device == "gpu" else conv.CHUNK_CPU)
    sequence = vgg_layer_sequence([name for name, _ in conv_shapes])
    _check_deepest(deepest, [name for name, _ in sequence])
    _check_fits_in_pools(size, deepest, sequence, pool_pad)
    shapes = dict(conv_shapes)
    n, (h, w), c = batch, size, conv_shapes[0][1][1]
    costs = []
    for name, kind in sequence:
        macs = buffer = transient = saved = 0
        if kind == "conv":
            o, c_in, kh, kw = shapes[name]
            if c_in != c:
                raise ValueError(f"plan: {name} expects {c_in} input channels but gets {c}")
            macs = n * h * w * o * c * kh * kw
            buffer, transient = conv_buffer_bytes(n, c, h, w, o, kh, kw, chunk=chunk,
                                                  itemsize=itemsize)
            c = o
        elif kind == "relu":
            saved = n * c * h * w                           # the boolean mask, 1 byte each
        else:
            h, w = pooled(h, pool_pad[:2]), pooled(w, pool_pad[2:])
            saved = n * c * h * w if pooling == "max" else 0   # argmax: one uint8 per output
        costs.append(LayerCost(name, kind, (n, c, h, w), macs, n * c * h * w * itemsize,
                               saved, buffer, transient))
        if name == deepest:
            return costs
    raise AssertionError("unreachable: deepest was checked")


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


def optimizer_state_bytes(numel, *, optimizer="lbfgs", history=10, itemsize=4):
    """Bytes the optimiser keeps for an image of ``numel`` elements.

    L-BFGS: ``history`` pairs (s, y) plus 4 working vectors (x, gradient, direction, previous
    gradient). Adam: the two moments m, v plus x and the gradient.
    """
    vectors = {"lbfgs": 2 * history + 4, "adam": 4}
    if optimizer not in vectors:
        raise ValueError(f"plan: optimizer must be 'lbfgs' or 'adam', not {optimizer!r}")
    return vectors[optimizer] * numel * itemsize


def plan_iteration(conv_shapes, size, *, deepest="relu5_1", pooling="avg", pool_pad=VGG_POOL_PAD,
                   batch=1, itemsize=4, style_layers=(), content_layers=(), optimizer="lbfgs",
                   history=10, device="cpu"):
    """The IterationPlan of one iteration at ``size`` = (H, W), down to ``deepest``.

    style_layers, content_layers: the layers the losses read (Gram matrices, their memory);
    device: "cpu" or "gpu", where conv.py's im2col buffers differ in size.
    """
    if pooling not in ("avg", "max"):
        raise ValueError(f"plan: pooling must be 'avg' or 'max', not {pooling!r}")
    layers = layer_costs(conv_shapes, size, deepest=deepest, pooling=pooling, pool_pad=pool_pad,
                         batch=batch, itemsize=itemsize, device=device)
    by_name = {layer.name: layer for layer in layers}
    loss_layers = [*style_layers, *content_layers]
    missing = [name for name in loss_layers if name not in by_name]
    if missing:
        raise UserError(f"the layer {missing[0]} is deeper than {deepest}; use {deepest} or a "
                        "shallower layer for the losses")
    styles = [by_name[name].shape for name in style_layers]
    contents = [by_name[name].out_bytes for name in content_layers]
    image = batch * conv_shapes[0][1][1] * size[0] * size[1] * itemsize
    grams = [n * c * c * itemsize for n, c, _, _ in styles]
    return IterationPlan(
        tuple(size), batch, deepest, pooling, itemsize, tuple(layers),
        gram_macs=sum(n * c * c * h * w for n, c, h, w in styles), image_bytes=image,
        weight_bytes=sum((o * c * kh * kw + o) * itemsize for _, (o, c, kh, kw) in conv_shapes),
        target_bytes=sum(grams) + sum(contents),
        loss_bytes=3 * sum(grams) + sum(contents) + 2 * image,   # G, G/M, G/M - A; F - P; TV
        merge_bytes=3 * max([by_name[name].out_bytes for name in loss_layers], default=0),
        state_bytes=optimizer_state_bytes(image // itemsize, optimizer=optimizer,
                                          history=history, itemsize=itemsize),
        optimizer=optimizer, history=history)


# -- the machine: matrix-multiply rate and free memory ---------------------------------------------
def measure_matmul_gflops(xp=np, *, n=None, repeats=5):
    """The median rate of a float32 n x n matrix product C = A @ B, in GFLOP/s (2 n^3 FLOP each).

    n: 1024 on the CPU, 4096 on the GPU when None (smaller products leave a GPU mostly idle).
    One untimed product first (thread pools, GPU kernels); the GPU is synchronised before every
    clock reading, or only the launch would be timed.
    """
    from miniautograd.backend import synchronize
    n = n or (1024 if xp is np else 4096)
    rng = np.random.default_rng(0)
    a, b = (xp.asarray(rng.standard_normal((n, n), dtype=np.float32)) for _ in range(2))
    c = xp.empty((n, n), dtype=np.float32)
    xp.matmul(a, b, out=c)
    synchronize(xp)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        xp.matmul(a, b, out=c)
        synchronize(xp)
        rates.append(2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return float(np.median(rates))


def available_memory_bytes(device="cpu"):
    """Bytes free for a run: RAM for "cpu", the GPU's memory for "gpu" (None if unknown).

    RAM: MemAvailable from /proc/meminfo (falling back to os.sysconf), capped by a cgroup v2
    memory limit when the process runs under one. GPU: cudaMemGetInfo's free bytes plus the
    blocks CuPy's memory pool holds but does not use.
    """
    if device == "gpu":
        from miniautograd.backend import require_gpu
        cupy = require_gpu()
        free, _total = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())
    if device != "cpu":
        raise ValueError(f"available_memory_bytes: device must be 'cpu' or 'gpu', not {device!r}")
    free = meminfo_available()
    if free is None:
        free = _sysconf_available()
    limit = cgroup_free()
    return free if limit is None else limit if free is None else min(free, limit)


def meminfo_available(path="/proc/meminfo"):
    """MemAvailable in bytes from a Linux meminfo file; None if the file or the line is missing."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024     # the value is in kB
    except OSError:
        return None
    return None


def _sysconf_available():
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_free(folder="/sys/fs/cgroup"):
    """memory.max - memory.current of a cgroup v2 folder in bytes; None without a limit."""
    try:
        with open(os.path.join(folder, "memory.max")) as f:
            limit = f.read().strip()
        with open(os.path.join(folder, "memory.current")) as f:
            used = int(f.read())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


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
    raise UserError(f"one iteration at {size[0]}x{size[1]} needs about "
                    f"{format_bytes(plan.peak_bytes)} but only {format_bytes(available)} of "
                    f"{where} is free; {advice}")


# -- the text of --explain -------------------------------------------------------------------------
def format_bytes(n):
    """1536 -> '1.5 KiB': binary units, one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_count(n):
    """94_730_452_992 -> '94.7 G' (decimal prefixes, as for FLOP)."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {prefix}"
    return f"{n:.0f}"


def explain_text(plan, *, gflops=None, device="cpu"):
    """The plan as a readable table of layers, then the totals per iteration.

    gflops: the measured float32 matmul rate (:func:`measure_matmul_gflops`), for the time
    estimate; left out when None.
    """
    (h, w), n = plan.size, plan.batch
    lines = [f"Plan for one iteration at {h}x{w} (N={n}), forward down to {plan.deepest} "
             f"({plan.pooling} pooling, {8 * plan.itemsize}-bit floats) and the gradient with "
             "respect to the image:", "",
             f"{'layer':<9}{'output C x H x W':>20}{'multiply-adds':>15}{'activation':>13}"
             f"{'kept extra':>13}{'im2col':>12}"]
    for la in plan.layers:
        _, c, oh, ow = la.shape
        lines.append(f"{la.name:<9}{f'{c} x {oh} x {ow}':>20}"
                     f"{format_count(la.macs) if la.macs else '-':>15}"
                     f"{format_bytes(la.out_bytes):>13}"
                     f"{format_bytes(la.saved_bytes) if la.saved_bytes else '-':>13}"
                     f"{format_bytes(la.buffer_bytes) if la.buffer_bytes else '-':>12}")
    return "\n".join(lines + [""] + _totals_lines(plan, gflops, device))


def _totals_lines(plan, gflops, device):
    pixels = plan.batch * plan.size[0] * plan.size[1]
    macs = plan.forward_macs
    optimiser = f"L-BFGS, m={plan.history}" if plan.optimizer == "lbfgs" else "Adam"
    lines = ["Totals per iteration:",
             f"  forward multiply-adds (convolutions)  {format_count(macs)}  "
             f"({macs // pixels:,} per pixel)",
             f"  forward + input gradient              {format_count(2 * macs)}  "
             f"({2 * macs // pixels:,} per pixel)"]
    if plan.gram_macs:
        lines.append(f"  Gram matrices, both ways              {format_count(2 * plan.gram_macs)}"
                     f"  (+{100 * plan.gram_macs / macs:.1f}%)")
    lines += [f"  FLOP (2 x 2 x multiply-adds)          {format_count(plan.flop)}", "",
              f"  network weights (all conv layers)     {format_bytes(plan.weight_bytes)}",
              f"  loss targets (content, Gram)          {format_bytes(plan.target_bytes)}",
              f"  kept for backward (layers, losses)    {format_bytes(plan.kept_bytes)}",
              f"  largest transient buffers             {format_bytes(plan.transient_bytes)}",
              f"  optimiser state ({optimiser + ')':<21}{format_bytes(plan.state_bytes)}",
              f"  peak memory estimate                  {format_bytes(plan.peak_bytes)}"]
    if gflops:
        lines += [f"  estimated time per iteration          {plan.flop / (gflops * 1e9):.2f} s",
                  f"    (every FLOP at this {device.upper()}'s measured float32 matmul rate, "
                  f"{gflops:.0f} GFLOP/s; real runs are slower)"]
    return lines
