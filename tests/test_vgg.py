"""minivgg.vgg: VGG-19 from both layouts, orientation, a loop reference, the random net, search."""
import numpy as np
import pytest

import miniautograd as ag
from matfiles import TINY_CHANNELS, tiny_weights, write_tiny_vgg19_mat
from minivgg.errors import UserError
from minivgg.matfile import VGG19_LAYERS
from minivgg.vgg import VGG19_CHANNELS, load_vgg19, random_vgg19
from naive import avg_pool_naive, conv2d_naive, max_pool_naive


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real weights anywhere: empty cwd, private cache dir, no $MINIVGG_WEIGHTS."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MINIVGG_WEIGHTS", raising=False)


def image(h=16, w=24, seed=0):
    """A (1, 3, H, W) float32 input in the preprocessed range (about -120..130)."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (1, 3, h, w)) - 120).astype(np.float32)


def tiny_net(tmp_path, layout="current", pooling="avg", **options):
    path = tmp_path / f"tiny-{layout}.mat"
    written = write_tiny_vgg19_mat(path, layout, **options)
    return load_vgg19(str(path), pooling=pooling), written


def test_names_shapes_mean_and_source(tmp_path):
    net, written = tiny_net(tmp_path)
    assert net.layer_names == list(VGG19_LAYERS) and len(net.layer_names) == 37
    assert net.layer_names[0] == "conv1_1" and net.layer_names[-1] == "pool5"
    shapes = net.conv_shapes()
    assert [name for name, _ in shapes] == [n for n in VGG19_LAYERS if n.startswith("conv")]
    assert shapes[0][1] == (TINY_CHANNELS[0], 3, 3, 3)
    assert shapes[2][1] == (TINY_CHANNELS[2], TINY_CHANNELS[1], 3, 3)
    assert net.mean.dtype == np.float32 and net.mean.shape == (3,)
    np.testing.assert_allclose(net.mean, [123.68, 116.779, 103.939], rtol=1e-6)
    assert net.source.endswith("tiny-current.mat") and net.pooling == "avg"
    out = net(ag.Tensor(image()), ["pool5", "relu1_1", "conv3_2"])
    assert list(out) == ["pool5", "relu1_1", "conv3_2"]              # in the order asked for
    assert out["relu1_1"].shape == (1, TINY_CHANNELS[0], 16, 24)
    assert out["conv3_2"].shape == (1, TINY_CHANNELS[5], 4, 6)
    assert out["pool5"].shape == (1, TINY_CHANNELS[-1], 1, 1)       # 16x24 -> .. -> 1x1 (ceil)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_both_layouts_give_the_same_activations(tmp_path, pooling):
    current, _ = tiny_net(tmp_path, "current", pooling, seed=4)
    old, _ = tiny_net(tmp_path, "old", pooling, seed=4)
    layers = ["relu1_1", "pool1", "conv3_1", "relu4_4", "pool5"]
    x = ag.Tensor(image(32, 64))                                     # even sizes down to pool5
    a, b = current(x, layers), old(x, layers)
    for name in layers:
        np.testing.assert_array_equal(a[name].data, b[name].data)


def test_orientation_with_an_asymmetric_kernel(tmp_path):
    """conv1_1 filter 0 is one tap at row 0, column 2 of the 3x3 window (HWIO index [0, 2, 0, 0]).

    Correlation with pad 1 gives y[r, s] = x[r - 1, s + 1] (red channel), zero off the image.
    A height/width swap would move the tap to [2, 0] and give x[r + 1, s - 1] instead.
    """
    kernel, bias = tiny_weights()["conv1_1"]
    kernel, bias = kernel.copy(), bias.copy()
    kernel[..., 0], bias[0] = 0.0, 0.0
    kernel[0, 2, 0, 0] = 1.0
    net, _ = tiny_net(tmp_path, overrides={"conv1_1": (kernel, bias)})
    x = np.arange(5 * 7, dtype=np.float32).reshape(5, 7) + 1.0      # distinct, non-zero
    rgb = np.stack([x, 100 + x, 200 + x])[None]                       # (1, 3, 5, 7)
    y = net(ag.Tensor(rgb), ["conv1_1"])["conv1_1"].data[0, 0]
    expected = np.zeros((5, 7), dtype=np.float32)
    expected[1:, :-1] = x[:-1, 1:]                                    # y[r, s] = x[r - 1, s + 1]
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_activations_match_a_loop_reference(tmp_path, pooling):
    net, written = tiny_net(tmp_path, pooling=pooling, seed=2)
    x = image(6, 10, seed=1).astype(np.float64)
    layers = ["relu1_1", "pool1", "conv2_1"]
    out = net(ag.Tensor(x.astype(np.float32)), layers)

    def conv(h, name):
        W = written["kernels"][name].transpose(3, 2, 0, 1).astype(np.float64)  # HWIO -> OIHW
        return conv2d_naive(h, W, written["biases"][name], (1, 1), (1, 1, 1, 1))

    pool = avg_pool_naive if pooling == "avg" else max_pool_naive
    relu1_1 = np.maximum(conv(x, "conv1_1"), 0)
    pool1 = pool(np.maximum(conv(relu1_1, "conv1_2"), 0), (2, 2), (2, 2), (0, 1, 0, 1))
    expected = {"relu1_1": relu1_1, "pool1": pool1, "conv2_1": conv(pool1, "conv2_1")}
    for name in layers:   # the net runs in float32, the reference in float64
        np.testing.assert_allclose(out[name].data, expected[name], rtol=1e-4, atol=1e-3)


def test_runs_only_as_deep_as_needed_and_keeps_weights_frozen(tmp_path, monkeypatch):
    net, _ = tiny_net(tmp_path)
    applied = []
    original = net.apply
    monkeypatch.setattr(net, "apply",
                        lambda spec, h, **kw: applied.append(spec.name) or original(spec, h, **kw))
    x = ag.Tensor(image(), requires_grad=True)
    out = net(x, ["relu2_1", "conv1_2"])
    assert applied == list(VGG19_LAYERS[:VGG19_LAYERS.index("relu2_1") + 1])
    out["relu2_1"].sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert all(W.grad is None and not W.requires_grad for W, _ in net.params.values())


def test_relu_writes_over_a_convolution_output_only_when_nobody_asked_for_it(tmp_path):
    """relu1_1 overwrites conv1_1's array (not requested); relu1_2 keeps conv1_2's, which was
    asked for, and the values and gradients are those of the out-of-place network."""
    net, _ = tiny_net(tmp_path)
    x = ag.Tensor(image(), requires_grad=True)
    out = net(x, ["relu1_1", "conv1_2", "relu1_2"])
    assert out["conv1_2"].data.min() < 0 <= out["relu1_2"].data.min()   # not overwritten
    assert out["relu1_2"].data is not out["conv1_2"].data
    gy = np.random.default_rng(0).normal(size=out["relu1_2"].shape).astype(np.float32)
    (out["relu1_2"] * ag.Tensor(gy)).sum().backward()
    conv = net.apply(net.layers[0], ag.Tensor(image(), requires_grad=True))
    expected = np.maximum(conv.data, 0)
    np.testing.assert_array_equal(out["relu1_1"].data, expected)
    assert x.grad is not None


def test_the_network_owns_its_winograd_kernels(monkeypatch):
    """Each Winograd layer's kernel is transformed once over many iterations, and kept in
    net.kernels, not on the weight Tensor."""
    from miniautograd import conv_fast
    calls, real = [], conv_fast.transform_kernel4
    monkeypatch.setattr(conv_fast, "transform_kernel4",
                        lambda W, dtype: calls.append(W) or real(W, dtype))
    net = random_vgg19(channels=(4, 4, 256, 256) + (8,) * 12)   # conv2_2: 256 -> 256, F(4x4, 3x3)
    for _ in range(3):
        x = ag.Tensor(image(8, 12), requires_grad=True)
        net(x, ["relu2_2"])["relu2_2"].sum().backward()
    assert len(calls) == 1 and calls[0] is net.params["conv2_2"][0].data
    assert net.kernels["conv2_2"].W is net.params["conv2_2"][0].data
    assert not any(hasattr(W, "winograd") for W, _ in net.params.values())


def test_unknown_layers_and_bad_inputs(tmp_path):
    net, _ = tiny_net(tmp_path)
    with pytest.raises(UserError, match="no layer 'fc6' in VGG-19; use one of conv1_1"):
        net(ag.Tensor(image()), ["relu1_1", "fc6"])
    with pytest.raises(ValueError, match=r"\(1, 1, 16, 24\).*\(N, 3, H, W\)"):
        net(ag.Tensor(image()[:, :1]), ["relu1_1"])
    with pytest.raises(UserError, match="pooling must be one of avg, max, not 'mean'"):
        load_vgg19("random", pooling="mean")


def test_random_net_is_seeded_he_normal_with_the_real_channels():
    a, b, c = load_vgg19("random"), load_vgg19("random"), load_vgg19("random", seed=1)
    assert a.source == "random weights (seed 0)" and c.source == "random weights (seed 1)"
    assert [shape[0] for _, shape in a.conv_shapes()] == list(VGG19_CHANNELS)
    assert a.conv_shapes()[0][1] == (64, 3, 3, 3) and a.conv_shapes()[-1][1] == (512, 512, 3, 3)
    W0, b0 = a.params["conv5_4"]
    np.testing.assert_array_equal(W0.data, b.params["conv5_4"][0].data)
    assert not np.array_equal(W0.data, c.params["conv5_4"][0].data)
    std = np.sqrt(2.0 / (512 * 9))                                   # He: sqrt(2 / fan_in)
    assert abs(W0.data.std() / std - 1) < 0.02 and abs(W0.data.mean()) < 0.01 * std
    assert not np.any(b0.data) and W0.dtype == np.float32
    assert a.layers[4].pad == (0, 1, 0, 1)
    out = a(ag.Tensor(image(16, 16)), ["pool5"])["pool5"]
    assert out.shape == (1, 512, 1, 1) and np.all(np.isfinite(out.data))


def test_fallback_to_random_weights_prints_one_notice(capsys):
    net = load_vgg19(seed=3, pooling="max")
    assert net.source == "random weights (seed 3)" and net.pooling == "max"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "random weights (seed 3)" in err
    assert "python -m minivgg.weights download" in err


def test_search_order(tmp_path, monkeypatch):
    cache_file = tmp_path / "xdg" / "minivgg" / "imagenet-vgg-verydeep-19.mat"
    local_file = tmp_path / "weights" / "imagenet-vgg-verydeep-19.mat"
    env_file = tmp_path / "elsewhere.mat"
    for seed, path in enumerate([cache_file, local_file, env_file]):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tiny_vgg19_mat(path, seed=seed)
    assert load_vgg19().source == str(local_file)                    # ./weights before the cache
    monkeypatch.setenv("MINIVGG_WEIGHTS", str(env_file))
    assert load_vgg19().source == str(env_file)                      # $MINIVGG_WEIGHTS first
    assert load_vgg19(str(cache_file)).source == str(cache_file)     # an explicit path above all
    monkeypatch.delenv("MINIVGG_WEIGHTS")
    local_file.unlink()
    assert load_vgg19().source == str(cache_file)                    # the user cache dir last
    monkeypatch.setenv("MINIVGG_WEIGHTS", str(tmp_path / "missing.mat"))
    with pytest.raises(UserError, match=r"missing.mat \(\$MINIVGG_WEIGHTS\) does not exist"):
        load_vgg19()


def test_explicit_missing_path_says_where_and_how(tmp_path):
    with pytest.raises(UserError) as info:
        load_vgg19(str(tmp_path / "nope.mat"))
    message = str(info.value)
    assert "nope.mat" in message and "python -m minivgg.weights download" in message
    assert str(tmp_path / "xdg" / "minivgg") in message


@pytest.mark.gpu
def test_to_gpu_and_back(tmp_path):
    if not ag.gpu_available():
        pytest.skip("CuPy with a CUDA device is not available")
    cupy = ag.require_gpu()
    net, _ = tiny_net(tmp_path)
    x = image()
    expected = net(ag.Tensor(x), ["relu3_1"])["relu3_1"].data
    assert net.to_gpu() is net
    assert all(ag.get_array_module(W.data) is cupy for W, _ in net.params.values())
    got = net(ag.Tensor(x).to_gpu(), ["relu3_1"])["relu3_1"]
    np.testing.assert_allclose(ag.to_cpu(got.data), expected, rtol=1e-4, atol=1e-4)
    net.to_cpu()
    assert all(isinstance(W.data, np.ndarray) for W, b in net.params.values())
