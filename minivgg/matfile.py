"""Reading MatConvNet's imagenet-vgg-verydeep-19.mat: VGG19_LAYERS, LayerSpec, the pure parser
of what ``scipy.io.loadmat`` returns, and the checked file read. (Where the file lives is
weights_location.py; the .npz cache and ``load_weights``, weights_cache.py.)

What ``scipy.io.loadmat`` returns for the published file (default options):
``data["layers"]`` is a (1, 43) object array; entry i is a (1, 1) struct, so
``data["layers"][0][i][0][0]`` is one record. Strings are 1-element arrays
(``array(['conv1_1'])``), numbers 1 x N float64 rows, logicals uint8, and a conv's ``weights``
is the MATLAB cell ``{kernel, bias}``: a (1, 2) object array. Two layouts exist (``detect_layout``):

- current (MatConvNet >= beta17): variables ``layers`` and ``meta``; bias (O, 1); pool pad
  [0 1 0 1]; the mean pixel is ``meta.normalization.averageImage``, a 1 x 1 x 3 array.
- old (beta16): variables ``layers``, ``classes``, ``normalization``; bias (1, O); pool pad
  [0 0 0 0]; ``normalization.averageImage`` is a 224 x 224 x 3 image, every pixel the same.

Field order differs between files, so every field is looked up by name. Kernels are float32
(KH, KW, C, O) ("HWIO") in both layouts; the engine wants (O, C, KH, KW), so the only transpose
is ``kernel.transpose(3, 2, 0, 1)``: height and width are never swapped. Pads are MatConvNet's
[top bottom left right], the engine's order too. Only conv1_1 .. pool5 are kept: fc6-fc8 (86%
of the bytes) and the classifier are dropped as soon as the layers are parsed.
"""
import dataclasses
import zlib
from pathlib import Path

import numpy as np

from .errors import UserError
from .weights_location import DOWNLOAD_CMD, DOWNLOAD_HINT, MANIFEST

CONVS_PER_BLOCK = {"VGG-19": (2, 2, 4, 4, 4), "VGG-16": (2, 2, 3, 3, 3)}


def vgg_layer_names(convs_per_block):
    """['conv1_1', 'relu1_1', ..., 'pool5']: conv and relu pairs, a pool closing each block."""
    names = []
    for block, n in enumerate(convs_per_block, start=1):
        for i in range(1, n + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


VGG19_LAYERS = tuple(vgg_layer_names(CONVS_PER_BLOCK["VGG-19"]))   # the 37 layers kept


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer as the file describes it.

    kind: 'conv', 'relu', 'pool' or the file's other type names; kernel: (KH, KW, C, O) for a conv
    (as stored), (PH, PW) for a pool, () otherwise; pad: (top, bottom, left, right);
    stride: (SH, SW); method: 'max' or 'avg' for a pool, '' otherwise.
    """
    name: str
    kind: str
    kernel: tuple = ()
    pad: tuple = (0, 0, 0, 0)
    stride: tuple = (1, 1)
    method: str = ""


@dataclasses.dataclass
class VGGWeights:
    """What minivgg keeps of the file: 37 LayerSpecs, conv params (W (O, C, KH, KW), b (O,))
    in float32, and the RGB mean pixel (3,) float32."""
    layout: str
    layers: tuple
    params: dict
    mean: np.ndarray


# -- the pure parser ----------------------------------------------------------------------
def detect_layout(data):
    """'current' (layers + meta) or 'old' (layers + normalization); UserError otherwise."""
    keys = sorted(k for k in data if not k.startswith("__"))
    if "layers" in data and "meta" in data:
        return "current"
    if "layers" in data and "normalization" in data:
        return "old"
    raise UserError(f"the file is a MATLAB file but not a MatConvNet network (it holds the "
                    f"variables {', '.join(keys) or 'none'}); {DOWNLOAD_HINT}")


def field(record, name, default=None):
    """record.name, looked up by name (never by position); ``default`` when absent."""
    names = record.dtype.names or ()
    return record[name] if name in names else default


def as_string(value):
    """MATLAB char array (a 1-element string array) -> str ('' when empty or absent)."""
    if value is None or isinstance(value, str):
        return value or ""
    value = np.asarray(value)
    return str(value.flat[0]) if value.size else ""


def as_ints(value, sizes, what):
    """A MATLAB number row -> tuple of ints; a single value is repeated to the longest size."""
    numbers = np.asarray(value, dtype=np.float64).ravel()
    if numbers.size not in sizes or np.any(numbers != np.round(numbers)) or np.any(numbers < 0):
        raise UserError(f"the file's {what} is {numbers.tolist()}, which minivgg cannot use; "
                        f"{DOWNLOAD_HINT}")
    if numbers.size == 1:
        numbers = np.repeat(numbers, max(sizes))
    return tuple(int(n) for n in numbers)


def layer_records(data):
    """The list of layer records: a (1, L) object array of (1, 1) structs, or a struct array."""
    layers = np.asarray(data["layers"])
    if layers.dtype.names:
        return list(layers.flat)
    records = []
    for entry in layers.flat:
        if not (isinstance(entry, np.ndarray) and entry.dtype.names and entry.size == 1):
            raise UserError("the file's 'layers' is not a list of MatConvNet layer structs; "
                            f"{DOWNLOAD_HINT}")
        records.append(entry.flat[0])
    return records


def conv_arrays(record):
    """(kernel (KH, KW, C, O), bias) of a conv record, as stored; a 3-D kernel means O = 1."""
    weights = field(record, "weights")
    if weights is None or np.asarray(weights).size != 2:
        raise UserError(f"conv layer '{as_string(field(record, 'name'))}' has no {{kernel, bias}} "
                        f"weights; {DOWNLOAD_HINT}")
    kernel, bias = np.asarray(weights).flat
    kernel = np.asarray(kernel)
    return (kernel[..., None] if kernel.ndim == 3 else kernel), np.asarray(bias)


def describe_layer(record):
    """The LayerSpec of any MatConvNet SimpleNN layer record (used by ``inspect`` too)."""
    name, kind = as_string(field(record, "name")), as_string(field(record, "type"))
    pad = field(record, "pad")
    pad = as_ints(pad, (1, 4), f"pad of layer '{name}'") if pad is not None else (0, 0, 0, 0)
    stride = field(record, "stride")
    stride = as_ints(stride, (1, 2), f"stride of layer '{name}'") if stride is not None else (1, 1)
    if kind == "conv":
        return LayerSpec(name, kind, conv_arrays(record)[0].shape, pad, stride)
    if kind == "pool":
        window = as_ints(field(record, "pool", 1), (1, 2), f"pool size of layer '{name}'")
        method = as_string(field(record, "method")) or "max"
        return LayerSpec(name, kind, window, pad, stride, method)
    return LayerSpec(name, kind)


def describe_network(names):
    """A few words naming a network that is not VGG-19, for error messages."""
    if tuple(names[:31]) == tuple(vgg_layer_names(CONVS_PER_BLOCK["VGG-16"])):
        return "VGG-16 (13 conv layers, conv1_1 ... conv5_3)"
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return f"a network of {len(names)} layers ({shown or 'none'})"


def check_vgg19(specs):
    """Raise UserError unless specs start with VGG-19's 37 layers, with chained channel counts."""
    names = [spec.name for spec in specs]
    if tuple(names[:37]) != VGG19_LAYERS:
        raise UserError(f"the file holds {describe_network(names)}, not VGG-19; minivgg needs "
                        f"imagenet-vgg-verydeep-19.mat ({DOWNLOAD_HINT})")
    channels = 3
    for spec in specs[:37]:
        expected = spec.name[:4]                      # conv, relu or pool, from the name
        if spec.kind != expected:
            raise UserError(f"layer '{spec.name}' has type '{spec.kind}', not '{expected}', so "
                            f"this is not the VGG-19 file minivgg knows; {DOWNLOAD_HINT}")
        if spec.kind == "conv":
            if len(spec.kernel) != 4 or spec.kernel[2] != channels:
                raise UserError(f"layer '{spec.name}' has a kernel of shape {spec.kernel} but "
                                f"{channels} input channels; {DOWNLOAD_HINT}")
            channels = spec.kernel[3]


def mean_pixel(data, layout):
    """The RGB mean pixel (3,) float32 from (meta.)normalization.averageImage."""
    holder = data["meta"].flat[0] if layout == "current" else None
    norm = field(holder, "normalization") if holder is not None else data["normalization"]
    image = field(np.asarray(norm).flat[0], "averageImage") if norm is not None else None
    image = np.asarray(image if image is not None else [], dtype=np.float64)
    if image.size == 3:
        return image.reshape(3).astype(np.float32)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.reshape(-1, 3).mean(axis=0).astype(np.float32)   # (H*W, 3) -> (3,)
    raise UserError(f"the file has no usable averageImage (found shape {image.shape}); "
                    f"{DOWNLOAD_HINT}")


def parse_vgg19(data):
    """VGGWeights from a ``loadmat`` dictionary: conv1_1 .. pool5, weights in engine layout.

    The kernel (KH, KW, C, O) becomes W = kernel.transpose(3, 2, 0, 1), (O, C, KH, KW),
    float32 and contiguous; the bias ((O, 1) or (1, O)) becomes (O,).
    """
    layout = detect_layout(data)
    records = layer_records(data)
    specs = [describe_layer(record) for record in records]
    check_vgg19(specs)
    params = {}
    for record, spec in zip(records[:37], specs[:37]):
        if spec.kind == "conv":
            kernel, bias = conv_arrays(record)
            W = kernel.transpose(3, 2, 0, 1)          # (KH, KW, C, O) -> (O, C, KH, KW)
            W = np.ascontiguousarray(W, dtype=np.float32)
            b = np.asarray(bias, dtype=np.float32).reshape(-1)       # (O, 1) or (1, O) -> (O,)
            if b.size != W.shape[0]:
                raise UserError(f"layer '{spec.name}' has {b.size} biases for {W.shape[0]} "
                                f"filters; {DOWNLOAD_HINT}")
            params[spec.name] = (W, b)
    return VGGWeights(layout, tuple(specs[:37]), params, mean_pixel(data, layout))


# -- the file read ------------------------------------------------------------------------
def sniff(path):
    """Raise UserError when the first bytes show that path is not a MATLAB v5/v7 file."""
    with open(path, "rb") as f:
        head = f.read(128)
    if head.startswith(b"MATLAB 5.0 MAT-file") and len(head) == 128:
        return
    if head.startswith(b"MATLAB 7.3") or head.startswith(b"\x89HDF\r\n\x1a\n"):
        raise UserError(f"{path} is a MATLAB v7.3 (HDF5) file, which minivgg cannot read; use the "
                        f"published v7 file ({DOWNLOAD_HINT}) or re-save it in MATLAB with -v7")
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or path.suffix in (".pth", ".pt"):
        raise UserError(f"{path} looks like a PyTorch checkpoint (or another zip/pickle file), "
                        f"not MatConvNet's imagenet-vgg-verydeep-19.mat; {DOWNLOAD_HINT}")
    if path.suffix == ".caffemodel" or head[:1] == b"\x0a":
        raise UserError(f"{path} looks like a Caffe .caffemodel, not MatConvNet's "
                        f"imagenet-vgg-verydeep-19.mat; {DOWNLOAD_HINT}")
    if head.startswith(b"MATLAB 5.0 MAT-file") or not head:
        raise damaged(path)
    raise UserError(f"{path} is not a MATLAB .mat file; minivgg needs MatConvNet's "
                    f"imagenet-vgg-verydeep-19.mat ({DOWNLOAD_HINT})")


def damaged(path):
    """The UserError for a truncated or corrupt file, with its size and the published size."""
    size, full = path.stat().st_size, MANIFEST["current"]["size"]
    return UserError(f"{path} is incomplete or damaged ({size:,} of {full:,} bytes could be "
                     f"found); delete it and download it again with {DOWNLOAD_CMD}")


def read_mat(path):
    """``scipy.io.loadmat`` of a checked file, its failures turned into one-sentence UserErrors."""
    import scipy.io                                 # scipy only when a file is really read
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; give the .mat file itself")
    sniff(path)
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:                     # scipy's answer to v7.3
        raise UserError(f"{path} is a MATLAB v7.3 (HDF5) file, which minivgg cannot read; "
                        f"{DOWNLOAD_HINT}") from None
    except (OSError, EOFError, ValueError, TypeError, IndexError, zlib.error,
            scipy.io.matlab.MatReadError):
        raise damaged(path) from None


def describe_file(path):
    """(layout, [LayerSpec of every layer], data) of any MatConvNet SimpleNN file, for inspect."""
    data = read_mat(path)
    try:
        layout = detect_layout(data)
        return layout, [describe_layer(record) for record in layer_records(data)], data
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
