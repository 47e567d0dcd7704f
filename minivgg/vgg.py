"""VGG-19 (Simonyan & Zisserman 2015) up to pool5, as style transfer uses it.

    net = load_vgg19()                         # the file if found, else random weights (a notice)
    feats = net(x, ["relu1_1", "conv4_2"])     # x: (1, 3, H, W) Tensor, RGB 0-255 minus net.mean

The network is 16 3x3 convolutions (pad 1, stride 1), each followed by a ReLU, in five blocks
(2, 2, 4, 4, 4 convs) closed by a 2x2 stride-2 pool. Layer names are the file's: conv1_1,
relu1_1, ..., pool5. The classifier (fc6-fc8) is not kept. Pools use the file's pad,
[0 1 0 1] (top, bottom, left, right) in the current file: Caffe's ceil mode, the same as no pad
on even sizes. ``pooling="avg"`` replaces max pooling by average pooling, as Gatys et al. do.

The weights are frozen: Tensors with requires_grad=False, so backpropagation computes gradients
with respect to the image only. Being frozen, each conv's Winograd transforms are made once and
kept here, beside the weights they belong to (``net.kernels``, passed to every conv2d call).
The input is in the preprocessed space: RGB in 0..255 minus the mean pixel ``net.mean``
(123.68, 116.779, 103.939 for the published file).
"""
import sys

import numpy as np

import miniautograd as ag

from .errors import UserError
from .matfile import VGG19_LAYERS, LayerSpec
from .weights_cache import load_weights
from .weights_location import DOWNLOAD_CMD, find_weights

VGG19_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
IMAGENET_MEAN = (123.68, 116.779, 103.939)


class VGG19:
    """VGG-19 conv1_1 .. pool5 with frozen weights.

    layers: 37 LayerSpecs in order; params: name -> (W (O, C, KH, KW), b (O,)) NumPy float32;
    mean: RGB mean pixel (3,); pooling: 'avg' or 'max'; source: where the weights came from.
    kernels: name -> ag.TransformedKernels of that conv's W (each transform made on first use,
    by the layers conv2d runs with Winograd), remade whenever the weights move.
    """

    def __init__(self, layers, params, mean, *, pooling="avg", source=""):
        check_pooling(pooling)
        self.layers = tuple(layers)
        self.layer_names = [spec.name for spec in self.layers]
        self.set_params({name: (ag.Tensor(W), ag.Tensor(b)) for name, (W, b) in params.items()})
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3)
        self.pooling = pooling
        self.source = source

    def __repr__(self):
        return f"VGG19(pooling={self.pooling!r}, source={self.source!r})"

    def __call__(self, x, layers, *, after=None):
        """{name: activation Tensor} for the requested layers, running only as deep as needed.
        after: None, or a function (spec, h) -> h given each layer's output as it is made, whose
        result goes on (tiled.py crops a tile's window to what the deeper layers still need)."""
        wanted = self.check_layers(layers)
        x = x if isinstance(x, ag.Tensor) else ag.Tensor(x)
        if x.ndim != 4 or x.shape[1] != self.layers[0].kernel[2]:
            raise ValueError(f"VGG19: the input has shape {x.shape}; expected (N, 3, H, W) in the "
                             "preprocessed space (RGB 0..255 minus net.mean)")
        deepest = max(self.layer_names.index(name) for name in wanted)
        found, h, before = {}, x, None
        for spec in self.layers[:deepest + 1]:
            # a ReLU may write over a convolution's output that nobody asked for (its backward
            # needs only the mask, the convolution's only its W): one array fewer, no new pages
            inplace = before is not None and before.kind == "conv" and before.name not in wanted
            h = self.apply(spec, h, inplace=inplace)
            if after is not None:
                h = after(spec, h)
            if spec.name in wanted:
                found[spec.name] = h
            before = spec
        return {name: found[name] for name in wanted}

    def check_layers(self, layers):
        """The requested names as a list (a single name allowed); UserError for unknown ones."""
        names = [layers] if isinstance(layers, str) else list(layers)
        if not names:
            raise UserError(f"no VGG-19 layer was requested; use some of "
                            f"{', '.join(self.layer_names)}")
        check_layer_names(names, self.layer_names)
        return names

    def apply(self, spec, h, *, inplace=False):
        """One layer: conv (+ bias), relu (over h's array if ``inplace``), or the 2x2 pool with
        the file's pad and stride."""
        if spec.kind == "conv":
            W, b = self.params[spec.name]
            return ag.conv2d(h, W, b, stride=spec.stride, pad=spec.pad,
                             kernels=self.kernels[spec.name])
        if spec.kind == "relu":
            return ag.relu(h, inplace=inplace)
        pool = ag.avg_pool2d if self.pooling == "avg" else ag.max_pool2d
        return pool(h, spec.kernel, stride=spec.stride, pad=spec.pad)

    def conv_shapes(self):
        """[(name, (O, C, KH, KW))] of the 16 convolutions, in order."""
        return [(s.name, tuple(self.params[s.name][0].shape)) for s in self.layers
                if s.kind == "conv"]

    def set_params(self, params):
        """Use ``params`` (name -> (W, b) frozen Tensors) and new, empty Winograd kernels."""
        self.params = params
        self.kernels = {name: ag.TransformedKernels(W.data) for name, (W, _) in params.items()}

    def to_gpu(self):
        """Move every weight to the GPU (raises with a sentence if there is none); returns self."""
        self.set_params({n: (W.to_gpu(), b.to_gpu()) for n, (W, b) in self.params.items()})
        return self

    def to_cpu(self):
        """Move every weight back to the CPU; returns self."""
        self.set_params({n: (W.to_cpu(), b.to_cpu()) for n, (W, b) in self.params.items()})
        return self


POOLINGS = ("avg", "max")     # the pooling kinds VGG19 runs its pools with


def check_pooling(pooling, *, what="pooling"):
    """UserError unless ``pooling`` is one of POOLINGS: the one check of a pooling kind."""
    if pooling not in POOLINGS:
        raise UserError(f"{what} must be one of {', '.join(POOLINGS)}, not {pooling!r}")


def check_layer_names(names, valid=VGG19_LAYERS, *, what=""):
    """UserError naming the first of ``names`` not in ``valid`` (a network's layer names, in
    order): the one check of layer names. ``what``: the option they came from, e.g.
    "--style-layers", to start the sentence with."""
    for name in names:
        if name not in valid:
            raise UserError(f"{what + ': ' if what else ''}there is no layer {name!r} in VGG-19; "
                            f"use one of {', '.join(valid)}")


def random_vgg19(*, pooling="avg", seed=0, channels=VGG19_CHANNELS):
    """VGG-19 with seeded He-normal filters (std sqrt(2 / (C*KH*KW))) and zero biases.

    Pools get [0 1 0 1] padding as in the current file; the mean is ImageNet's.
    """
    rng = np.random.default_rng(seed)
    layers, params = vgg19_layer_specs(channels), {}
    for spec in layers:
        if spec.kind == "conv":
            KH, KW, C, O = spec.kernel
            std = np.float32(np.sqrt(2.0 / (C * KH * KW)))
            params[spec.name] = (rng.standard_normal((O, C, KH, KW), dtype=np.float32) * std,
                                 np.zeros(O, dtype=np.float32))
    return VGG19(layers, params, IMAGENET_MEAN, pooling=pooling,
                 source=f"random weights (seed {seed})")


def vgg19_layer_specs(channels=VGG19_CHANNELS):
    """VGG-19's layers as LayerSpecs, without weights: 3x3 "same" convolutions with ``channels``
    outputs, ReLUs, and 2x2 stride-2 pools padded [0 1 0 1] as in the current file. What a run
    knows of the network before the weights file is read (the sizes it needs, say)."""
    layers, c = [], 3
    convs = iter(channels)
    for name in VGG19_LAYERS:
        kind = name[:4]
        if kind == "conv":
            o = next(convs)
            layers.append(LayerSpec(name, kind, (3, 3, c, o), (1, 1, 1, 1), (1, 1)))
            c = o
        elif kind == "pool":
            layers.append(LayerSpec(name, kind, (2, 2), (0, 1, 0, 1), (2, 2), "max"))
        else:
            layers.append(LayerSpec(name, kind))
    return layers


def load_vgg19(path=None, *, pooling="avg", seed=0):
    """VGG-19 from the weights file: path, or searched when None; path="random" for random weights.

    The search: $MINIVGG_WEIGHTS, weights/imagenet-vgg-verydeep-19.mat under the current
    directory, the user cache dir. When nothing is found, random weights (seed ``seed``) are used
    and one line on stderr says so. Bad files raise UserError.
    """
    check_pooling(pooling)                          # before seconds of loading or generating
    if isinstance(path, str) and path == "random":
        return random_vgg19(pooling=pooling, seed=seed)
    found = find_weights(path)
    if found is None:
        print(f"minivgg: no VGG-19 weights file found, so random weights (seed {seed}) are used "
              "(they still carry colour and brush texture over; the real ones give better results: "
              f"{DOWNLOAD_CMD})", file=sys.stderr)
        return random_vgg19(pooling=pooling, seed=seed)
    weights = load_weights(found)
    return VGG19(weights.layers, weights.params, weights.mean, pooling=pooling,
                 source=str(found))
