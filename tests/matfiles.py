"""Small VGG-shaped MatConvNet .mat files, nested exactly as ``loadmat`` returns the real one.

``write_tiny_vgg19_mat(path)`` writes the 43 layers of imagenet-vgg-verydeep-19.mat (conv1_1 ..
pool5, fc6-fc8 as 1x1 convs, prob) with few channels, in the ``current`` layout (variables
``layers`` and ``meta``, bias (O, 1), pool pad [0 1 0 1], 1x1x3 mean, zlib-compressed) or the
``old`` beta16 one (``layers``, ``classes``, ``normalization``, bias (1, O), pool pad [0 0 0 0],
224x224x3 mean, uncompressed), with each layout's struct field order. Through ``savemat`` a dict
becomes a 1x1 struct, a (1, L) object array a cell of them, a str a char array, a bool a logical
(uint8 after loadmat), and a (1, 2) object array the cell {kernel, bias}.
"""
import numpy as np
import scipy.io

from minivgg.matfile import CONVS_PER_BLOCK, vgg_layer_names

TINY_CHANNELS = (4, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8)
FC_CHANNELS = (("fc6", 10), ("fc7", 10), ("fc8", 5))      # 1x1 convs here, 7x7/1x1 in the file
IMAGENET_MEAN = (123.68, 116.779, 103.939)


def cell(items):
    """A MATLAB cell row {a, b, ...}: a (1, n) object array."""
    out = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        out[0, i] = item
    return out


def row(*numbers):
    """A MATLAB double row vector [a b ...]: (1, n) float64."""
    return np.array([numbers], dtype=np.float64)


def conv_record(name, kernel, bias, layout, *, pad=1):
    """A conv layer; kernel (KH, KW, C, O) float32, bias (O,) stored (O, 1) or (1, O)."""
    weights = cell([kernel.astype(np.float32), bias.astype(np.float32).reshape(
        (-1, 1) if layout == "current" else (1, -1))])
    pad = row(pad, pad, pad, pad)
    if layout == "old":
        return {"weights": weights, "pad": pad, "type": "conv", "name": name, "stride": row(1, 1)}
    return {"name": name, "type": "conv", "weights": weights, "size": row(*kernel.shape),
            "pad": pad, "stride": row(1, 1), "precious": False, "dilate": 1.0,
            "opts": np.empty((0, 0), dtype=object)}


def simple_record(name, kind, layout):
    """A relu, pool (2x2, stride 2, max) or softmax layer in the layout's field order."""
    if kind == "pool" and layout == "old":
        return {"name": name, "stride": row(2, 2), "pad": row(0, 0, 0, 0), "type": "pool",
                "method": "max", "pool": row(2, 2)}
    if kind == "pool":
        return {"name": name, "type": "pool", "method": "max", "pool": row(2, 2),
                "stride": row(2, 2), "pad": row(0, 1, 0, 1), "precious": False,
                "opts": np.empty((0, 0), dtype=object)}
    if layout == "old":
        return {"type": kind, "name": name}
    extra = {"leak": 0.0} if kind == "relu" else {}
    return {"name": name, "type": kind, **extra, "precious": False}


def top_level(layout, mean):
    """The variables beside ``layers``: meta (current) or classes + normalization (old)."""
    classes = {"name": cell(["n01440764", "n01443537"]),
               "description": cell(["tench", "goldfish"])}
    if layout == "current":
        norm = {"imageSize": row(224, 224, 3), "averageImage": np.reshape(mean, (1, 1, 3)),
                "keepAspect": True, "border": row(32, 32), "cropSize": 0.875,
                "interpolation": "bilinear"}
        return {"meta": {"inputs": {"name": "data", "size": row(224, 224, 3, 10)},
                         "classes": classes, "normalization": norm}}
    image = np.broadcast_to(np.asarray(mean, dtype=np.float64), (224, 224, 3)).copy()
    norm = {"averageImage": image, "keepAspect": True, "border": row(32, 32),
            "imageSize": row(224, 224, 3), "interpolation": "bilinear"}
    return {"classes": classes, "normalization": norm}


def write_mat(path, records, *, layout="current", mean=IMAGENET_MEAN, shuffle_seed=None):
    """Write layer records (dicts) and the layout's other variables as MatConvNet would.

    shuffle_seed: permute every record's field order (the 2015-16 files had yet another order).
    """
    if shuffle_seed is not None:
        rng = np.random.default_rng(shuffle_seed)
        records = [dict(sorted(r.items(), key=lambda _: rng.random())) for r in records]
    scipy.io.savemat(str(path), {"layers": cell(records), **top_level(layout, mean)},
                     do_compression=(layout == "current"))


def tiny_weights(channels=TINY_CHANNELS, *, seed=0, convs_per_block=CONVS_PER_BLOCK["VGG-19"]):
    """{conv name: (kernel (3, 3, C, O) float32, bias (O,) float32)}, He-scaled, seeded."""
    rng = np.random.default_rng(seed)
    names = [n for n in vgg_layer_names(convs_per_block) if n.startswith("conv")]
    weights, c = {}, 3
    for name, o in zip(names, channels):
        kernel = rng.standard_normal((3, 3, c, o)) * np.sqrt(2.0 / (9 * c))
        bias = 0.1 * rng.standard_normal(o)
        weights[name] = (kernel.astype(np.float32), bias.astype(np.float32))
        c = o
    return weights


def vgg_records(weights, layout, *, convs_per_block=CONVS_PER_BLOCK["VGG-19"], fc=True):
    """The layer records of a VGG: convs from ``weights``, relus, pools, then fc6-fc8 and prob."""
    records = []
    for name in vgg_layer_names(convs_per_block):
        kind = name[:4]
        records.append(conv_record(name, *weights[name], layout) if kind == "conv"
                       else simple_record(name, kind, layout))
    if fc:
        c = list(weights.values())[-1][0].shape[3]
        for name, o in FC_CHANNELS:
            records.append(conv_record(name, np.ones((1, 1, c, o)), np.zeros(o), layout, pad=0))
            if name != "fc8":
                records.append(simple_record("relu" + name[2:], "relu", layout))
            c = o
        records.append(simple_record("prob", "softmax", layout))
    return records


def write_tiny_vgg19_mat(path, layout="current", channels=TINY_CHANNELS, seed=0, *,
                         overrides=None, mean=IMAGENET_MEAN, shuffle_seed=None):
    """Write a VGG-19-shaped .mat with few channels; return what was written.

    overrides: {conv name: (kernel (3, 3, C, O), bias (O,))} replacing the random ones.
    Returns {"kernels": {name: (KH, KW, C, O)}, "biases": {name: (O,)}, "mean": (3,)}.
    """
    weights = {**tiny_weights(channels, seed=seed), **(overrides or {})}
    write_mat(path, vgg_records(weights, layout), layout=layout, mean=mean,
              shuffle_seed=shuffle_seed)
    return {"kernels": {n: k for n, (k, _) in weights.items()},
            "biases": {n: b for n, (_, b) in weights.items()},
            "mean": np.asarray(mean, dtype=np.float32)}


def write_tiny_vgg16_mat(path, layout="current", seed=0):
    """A VGG-16-shaped file (13 convs): a well-formed .mat that is not VGG-19."""
    blocks = CONVS_PER_BLOCK["VGG-16"]
    weights = tiny_weights(TINY_CHANNELS[:13], seed=seed, convs_per_block=blocks)
    write_mat(path, vgg_records(weights, layout, convs_per_block=blocks), layout=layout)
