"""minivgg.matfile (the parser on both layouts, the file read's one-sentence errors) and
minivgg.weights_cache (load_weights and its .npz cache)."""
import os
import re
import zipfile

import numpy as np
import pytest
import scipy.io

from matfiles import (TINY_CHANNELS, cell, conv_record, write_mat, write_tiny_vgg16_mat,
                      write_tiny_vgg19_mat)
from minivgg import matfile, weights_cache
from minivgg.errors import UserError
from minivgg.matfile import VGG19_LAYERS, parse_vgg19, read_mat
from minivgg.weights_cache import load_weights

LAYOUTS = ["current", "old"]


def one_sentence(message):
    """True for a single line with no sentence break (a full stop, then a capital) inside it."""
    return "\n" not in message and not re.search(r"[.!?]\s+[A-Z]", message)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Keep the user cache dir inside tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture(params=LAYOUTS)
def tiny(request, tmp_path):
    path = tmp_path / f"tiny-{request.param}.mat"
    return request.param, path, write_tiny_vgg19_mat(path, request.param, seed=3)


# -- the builder reproduces loadmat's nesting of the published files ---------------------------
def test_built_files_nest_like_the_published_ones(tiny):
    layout, path, _ = tiny
    data = scipy.io.loadmat(str(path))
    variables = {"current": {"layers", "meta"}, "old": {"layers", "classes", "normalization"}}
    assert {k for k in data if not k.startswith("__")} == variables[layout]
    assert data["layers"].shape == (1, 43) and data["layers"].dtype == object
    conv = data["layers"][0][0][0][0]
    assert data["layers"][0][0].shape == (1, 1)
    assert conv["name"].tolist() == ["conv1_1"] and conv["weights"].shape == (1, 2)
    assert conv["weights"][0, 1].shape == ((4, 1) if layout == "current" else (1, 4))
    assert conv["weights"][0, 0].dtype == np.float32 and conv["pad"].shape == (1, 4)
    first_fields = {"current": "name", "old": "weights"}
    assert conv.dtype.names[0] == first_fields[layout]
    if layout == "current":
        assert conv["precious"].dtype == np.uint8
        assert data["meta"][0, 0]["normalization"][0, 0]["averageImage"].shape == (1, 1, 3)
    else:
        assert data["normalization"][0, 0]["averageImage"].shape == (224, 224, 3)


# -- the parser ---------------------------------------------------------------------------------
def test_parser_keeps_conv1_1_to_pool5_in_engine_layout(tiny):
    layout, path, written = tiny
    weights = parse_vgg19(scipy.io.loadmat(str(path)))
    assert weights.layout == layout
    assert tuple(spec.name for spec in weights.layers) == VGG19_LAYERS
    assert list(weights.params) == [n for n in VGG19_LAYERS if n.startswith("conv")]
    for name, (W, b) in weights.params.items():
        kernel = written["kernels"][name]                      # (KH, KW, C, O) as in the file
        assert W.dtype == np.float32 and W.flags.c_contiguous and b.shape == (kernel.shape[3],)
        for o, c, i, j in [(0, 0, 0, 2), (kernel.shape[3] - 1, kernel.shape[2] - 1, 2, 1)]:
            assert W[o, c, i, j] == kernel[i, j, c, o]         # W (O, C, KH, KW): no H/W swap
        np.testing.assert_array_equal(b, written["biases"][name])
    np.testing.assert_allclose(weights.mean, written["mean"], rtol=1e-6)
    pool_pad = {"current": (0, 1, 0, 1), "old": (0, 0, 0, 0)}[layout]
    assert weights.layers[4].pad == pool_pad and weights.layers[4].stride == (2, 2)
    assert weights.layers[0].pad == (1, 1, 1, 1) and weights.layers[0].stride == (1, 1)


def test_fields_are_found_by_name_whatever_their_order(tmp_path):
    plain, shuffled = tmp_path / "plain.mat", tmp_path / "shuffled.mat"
    write_tiny_vgg19_mat(plain, seed=1)
    write_tiny_vgg19_mat(shuffled, seed=1, shuffle_seed=7)
    record = scipy.io.loadmat(str(shuffled))["layers"][0][0][0][0]
    assert record.dtype.names != scipy.io.loadmat(str(plain))["layers"][0][0][0][0].dtype.names
    a, b = (parse_vgg19(scipy.io.loadmat(str(p))) for p in (plain, shuffled))
    assert a.layers == b.layers
    for name in a.params:
        np.testing.assert_array_equal(a.params[name][0], b.params[name][0])


def test_a_one_filter_kernel_that_matlab_stored_as_3d_is_read_as_o_equal_1():
    record = np.zeros((1, 1), dtype=[("name", object), ("type", object), ("weights", object)])
    record[0, 0] = (np.array(["conv1_1"]), np.array(["conv"]),
                    cell([np.ones((3, 3, 3), np.float32), np.zeros((1, 1), np.float32)]))
    assert matfile.describe_layer(record[0, 0]).kernel == (3, 3, 3, 1)


# -- bad files ------------------------------------------------------------------------------------
def truncated(path, tmp_path, fraction=0.5):
    raw = path.read_bytes()
    bad = tmp_path / "truncated.mat"
    bad.write_bytes(raw[:int(len(raw) * fraction)])
    return bad


def test_truncated_files_say_incomplete_with_the_byte_counts(tiny, tmp_path):
    _, path, _ = tiny
    bad = truncated(path, tmp_path)
    with pytest.raises(UserError) as info:
        read_mat(bad)
    message = str(info.value)
    assert one_sentence(message) and "incomplete" in message
    assert f"{bad.stat().st_size:,} of 534,904,783 bytes" in message and "download" in message


def test_corrupt_compressed_data_is_reported_as_damaged(tmp_path):
    path = tmp_path / "good.mat"
    write_tiny_vgg19_mat(path)
    raw = bytearray(path.read_bytes())
    raw[200:400] = bytes(200)                 # zeros in the middle of the first zlib stream
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="incomplete or damaged"):
        read_mat(path)


BAD_HEADERS = {
    "v73.mat": (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(512),
                "v7.3 (HDF5)"),
    "plain.h5": (b"\x89HDF\r\n\x1a\n" + bytes(600), "v7.3 (HDF5)"),
    "vgg16.caffemodel": (b"\x0a\x05VGG16\x12" + bytes(600), "Caffe"),
    "model.pth": (b"\x80\x02\x8a\x0a" + bytes(600), "PyTorch"),
    "notes.mat": (b"these are not weights\n" * 20, "not a MATLAB .mat file"),
    "empty.mat": (b"", "incomplete"),
}


@pytest.mark.parametrize("name", BAD_HEADERS)
def test_files_that_are_not_matlab_v5_are_named(tmp_path, name):
    content, words = BAD_HEADERS[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(words)) as info:
        read_mat(path)
    assert one_sentence(str(info.value)) and str(path) in str(info.value)


def test_a_pytorch_zip_checkpoint_is_named(tmp_path):
    path = tmp_path / "vgg19.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(UserError, match="PyTorch"):
        read_mat(path)


def test_vgg16_is_named_as_such(tmp_path):
    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    write_tiny_vgg16_mat(path)
    with pytest.raises(UserError, match="VGG-16") as info:
        load_weights(path)
    assert one_sentence(str(info.value)) and "not VGG-19" in str(info.value)


def test_another_network_is_named_by_its_layers(tmp_path):
    path = tmp_path / "alexnet.mat"
    kernel = np.ones((11, 11, 3, 4), np.float32)
    write_mat(path, [conv_record("conv1", kernel, np.zeros(4), "current"),
                     {"name": "relu1", "type": "relu"}])
    with pytest.raises(UserError, match=r"a network of 2 layers \(conv1, relu1\)"):
        load_weights(path)


def test_a_mat_without_layers_lists_its_variables(tmp_path):
    path = tmp_path / "other.mat"
    scipy.io.savemat(str(path), {"features": np.ones((2, 2)), "labels": np.ones(3)})
    with pytest.raises(UserError, match="features, labels"):
        load_weights(path)


def test_channel_counts_that_do_not_chain_are_refused(tmp_path):
    path = tmp_path / "broken.mat"
    bad_kernel = np.ones((3, 3, 5, TINY_CHANNELS[1]), np.float32)   # conv1_2 wants 4 inputs
    write_tiny_vgg19_mat(path, overrides={"conv1_2": (bad_kernel, np.zeros(TINY_CHANNELS[1]))})
    with pytest.raises(UserError, match="conv1_2.*4 input channels"):
        load_weights(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match="does not exist.*download"):
        load_weights(tmp_path / "nope.mat")
    with pytest.raises(UserError, match="is a directory"):
        read_mat(tmp_path)


# -- the cache ----------------------------------------------------------------------------------
def refuse_to_read(*args):
    raise AssertionError("the .mat was read although a valid cache exists")


def test_cache_round_trip_and_invalidation(tmp_path, monkeypatch):
    path = tmp_path / "vgg.mat"
    write_tiny_vgg19_mat(path, seed=5)
    first = load_weights(path)
    assert (tmp_path / "vgg.mat.npz").is_file()
    assert not list(tmp_path.glob("*.tmp"))                     # the temporary file was renamed
    with monkeypatch.context() as m:
        m.setattr(weights_cache, "read_mat", refuse_to_read)
        cached = load_weights(path)
    assert cached.layers == first.layers and cached.layout == first.layout
    np.testing.assert_array_equal(cached.mean, first.mean)
    for name, (W, b) in first.params.items():
        np.testing.assert_array_equal(cached.params[name][0], W)
        np.testing.assert_array_equal(cached.params[name][1], b)
    write_tiny_vgg19_mat(path, seed=6)                          # the .mat changes
    os.utime(path, ns=(1, 1))                                   # even with an odd mtime
    changed = load_weights(path)
    assert not np.array_equal(changed.params["conv1_1"][0], first.params["conv1_1"][0])


def test_unwritable_folder_puts_the_cache_in_the_user_cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "vgg.mat"
    write_tiny_vgg19_mat(path)
    (tmp_path / "vgg.mat.npz").mkdir()                          # the spot beside it is taken
    load_weights(path)
    cached = list((tmp_path / "xdg" / "minivgg").glob("vgg.mat-*.npz"))
    assert len(cached) == 1
    monkeypatch.setattr(weights_cache, "read_mat", refuse_to_read)
    assert load_weights(path).layout == "current"


def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path):
    path = tmp_path / "vgg.mat"
    write_tiny_vgg19_mat(path)
    load_weights(path)
    (tmp_path / "vgg.mat.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert load_weights(path).layout == "current"
    assert zipfile.is_zipfile(tmp_path / "vgg.mat.npz")
