"""The cost model of minivgg/plan.py (multiply-adds, shapes, the walk over net.layers, the
smallest image) and minivgg/memory.py (memory terms), fits.py's memory check, and the text of
--explain (minivgg/explain.py). Measured peaks: test_plan_measured.py."""
import math
from types import SimpleNamespace

import pytest

from miniautograd.backend import CHUNK_ELEMENTS
from miniautograd.shifted import BAND_ELEMENTS
from minivgg import explain as E
from minivgg import fits as F
from minivgg.image import longest_shape
from minivgg import plan as P
from minivgg.errors import UserError
from minivgg.matfile import LayerSpec

# VGG-19's channel plan, written out here rather than read from the code under test.
BLOCKS = [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4]
STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CURRENT_PAD = (0, 1, 0, 1)            # the current file's pools; the old file's are unpadded


def vgg19(*, pool_pad=CURRENT_PAD, pooling="avg", blocks=BLOCKS):
    """A network as plan.py reads one: its LayerSpecs (file order and conventions) and pooling."""
    layers, c = [], 3
    for b, block in enumerate(blocks, start=1):
        for i, o in enumerate(block, start=1):
            layers += [LayerSpec(f"conv{b}_{i}", "conv", (3, 3, c, o), (1, 1, 1, 1), (1, 1)),
                       LayerSpec(f"relu{b}_{i}", "relu")]
            c = o
        layers.append(LayerSpec(f"pool{b}", "pool", (2, 2), pool_pad, (2, 2), "max"))
    return SimpleNamespace(layers=tuple(layers), pooling=pooling)


def conv_shapes(net):
    return [(s.name, (s.kernel[3], s.kernel[2], 3, 3)) for s in net.layers if s.kind == "conv"]


@pytest.fixture
def net():
    return vgg19()


def test_512_forward_to_relu5_1_is_361152_macs_per_pixel(net):
    plan = P.plan_iteration(net, (512, 512), deepest="relu5_1")
    assert plan.forward_macs == 361_152 * 512 * 512
    assert E.format_count(plan.forward_macs) == "94.7 G"
    assert plan.flop == 2 * 2 * 361_152 * 512 * 512            # no style layers: no Gram term
    text = E.explain_text(plan)
    assert "361,152 per pixel" in text and "722,304 per pixel" in text and "94.7 G" in text


def naive_macs(size, deepest_block, convs_in_last, *, ceil):
    """Multiply-adds counted layer by layer from the channel plan, independently of plan.py."""
    (h, w), c, total = size, 3, 0
    for b, block in enumerate(BLOCKS[:deepest_block], start=1):
        for o in block[:convs_in_last if b == deepest_block else None]:
            total += h * w * o * c * 9
            c = o
        h, w = (-(-h // 2), -(-w // 2)) if ceil else (h // 2, w // 2)
    return total


@pytest.mark.parametrize("pool_pad, ceil", [(CURRENT_PAD, True), ((0, 0, 0, 0), False)])
@pytest.mark.parametrize("size, deepest, block, convs", [
    ((100, 70), "relu4_2", 4, 2), ((37, 53), "conv3_1", 3, 1), ((64, 48), "relu5_1", 5, 1)])
def test_macs_and_shapes_follow_the_pools_of_net_layers(size, deepest, block, convs, pool_pad,
                                                        ceil):
    layers = P.layer_costs(vgg19(pool_pad=pool_pad), size, deepest=deepest, batch=2)
    assert layers[-1].name == deepest
    assert sum(layer.macs for layer in layers) == 2 * naive_macs(size, block, convs, ceil=ceil)
    h, w = size
    for pool in [layer for layer in layers if layer.kind == "pool"]:
        h, w = (-(-h // 2), -(-w // 2)) if ceil else (h // 2, w // 2)   # 2x2, stride 2
        assert pool.shape[2:] == (h, w)
    for layer in layers:
        assert layer.out_bytes == 4 * math.prod(layer.shape)


def test_walks_the_specs_it_is_given_not_vgg_names():
    """A pool with a 3x3 window and stride 3: the plan takes the spec's, not a fixed 2x2/2."""
    net = vgg19()
    layers = list(net.layers)
    layers[4] = LayerSpec("pool1", "pool", (3, 3), (0, 0, 0, 0), (3, 3), "max")
    odd = SimpleNamespace(layers=tuple(layers), pooling="max")
    costs = P.layer_costs(odd, (60, 45), deepest="conv2_1")
    assert [c.name for c in costs] == [s.name for s in layers[:6]]
    assert costs[4].shape == (1, 64, 20, 15) and costs[4].saved_bytes == 64 * 20 * 15   # argmax
    assert P.pixels_needed(odd.layers[:6]) == 3


def test_stops_at_the_deepest_layer_which_defaults_to_the_losses(net):
    full = P.plan_iteration(net, (64, 64), deepest="relu5_1")
    short = P.plan_iteration(net, (64, 64), deepest="relu4_2")
    assert [la.name for la in short.layers] == [la.name for la in full.layers][:len(short.layers)]
    assert short.layers[-1].name == "relu4_2" and short.forward_macs < full.forward_macs
    losses = P.plan_iteration(net, (64, 64), style_layers=["relu1_1", "relu3_1"],
                              content_layers=["relu4_2"])
    assert losses.deepest == "relu4_2" and losses.layers == short.layers


def test_user_errors_for_unknown_layer_and_small_image(net):
    with pytest.raises(UserError, match="no layer 'relu6_1' in VGG-19"):
        P.plan_iteration(net, (64, 64), deepest="relu6_1")
    with pytest.raises(UserError, match="no layer 'fc7' in VGG-19"):
        P.plan_iteration(net, (64, 64), style_layers=["fc7"])
    with pytest.raises(UserError, match="at least 16 pixels"):
        P.plan_iteration(net, (15, 300), deepest="relu5_1")
    with pytest.raises(UserError, match="at least 8 pixels"):
        P.plan_iteration(net, (300, 7), deepest="conv4_1")
    P.plan_iteration(net, (16, 16), deepest="relu5_1")                     # just enough
    with pytest.raises(UserError, match="deeper than relu3_1"):
        P.plan_iteration(net, (64, 64), deepest="relu3_1", style_layers=STYLE)
    with pytest.raises(ValueError, match="loss layers, or deepest"):
        P.plan_iteration(net, (64, 64))


def test_the_smallest_image_is_the_same_for_the_plan_and_for_stylize(net):
    """Bug: prepare.pixels_needed asked 16 px for relu5_1 while plan_iteration accepted 3x3
    (ceil mode reaches relu5_1 from one pixel). One rule now, padding of pools not counted, so
    both layouts of the weights file take the same sizes."""
    unpadded = vgg19(pool_pad=(0, 0, 0, 0))
    for deepest, need in (("relu1_1", 1), ("pool1", 2), ("relu3_1", 4), ("relu5_1", 16),
                          ("pool5", 32)):
        assert P.pixels_needed(P.layers_to(net, deepest)) == need
        assert P.pixels_needed(P.layers_to(unpadded, deepest)) == need
    with pytest.raises(UserError, match="at least 16 pixels"):
        P.plan_iteration(net, (3, 3), deepest="relu5_1")


def test_shape_errors_name_the_problem(net):
    layers = list(net.layers)
    layers[2] = LayerSpec("conv1_2", "conv", (3, 3, 32, 64), (1, 1, 1, 1), (1, 1))
    with pytest.raises(ValueError, match="conv1_2 expects 32 input channels but gets 64"):
        P.plan_iteration(SimpleNamespace(layers=tuple(layers), pooling="avg"), (64, 64),
                         deepest="relu5_1")
    with pytest.raises(ValueError, match="optimizer"):
        P.plan_iteration(net, (64, 64), deepest="relu5_1", optimizer="sgd")


def test_gram_macs_of_style_layers(net):
    plan = P.plan_iteration(net, (128, 96), style_layers=STYLE)
    by_name = {la.name: la for la in plan.layers}
    expected = sum(c * c * h * w for _, c, h, w in (by_name[s].shape for s in STYLE))
    assert plan.gram_macs == expected
    assert plan.flop == 4 * (plan.forward_macs + expected)
    assert 0.03 < plan.gram_macs / plan.forward_macs < 0.07       # "about 5%", as the issue says


def test_memory_terms(net):
    avg = P.plan_iteration(net, (64, 32), deepest="relu5_1", optimizer="lbfgs", history=10)
    mx = P.plan_iteration(vgg19(pooling="max"), (64, 32), deepest="relu5_1")
    adam = P.plan_iteration(net, (64, 32), deepest="relu5_1", optimizer="adam")
    image = 3 * 64 * 32 * 4
    assert avg.image_bytes == image and avg.pooling == "avg" and mx.pooling == "max"
    assert avg.state_bytes == (2 * 10 + 4) * image and adam.state_bytes == 4 * image
    relu_masks = sum(math.prod(la.shape) for la in avg.layers if la.kind == "relu")
    tv = 4 * 3 * (63 * 32 + 64 * 31)                               # dv and dh
    assert avg.target_bytes == 0 and avg.kept_bytes == relu_masks + tv   # TV only: no layers
    argmax = sum(math.prod(la.shape) for la in mx.layers if la.kind == "pool")    # uint8
    assert mx.kept_bytes == avg.kept_bytes + argmax
    weights = sum((o * c * 9 + o) * 4 for _, (o, c, _, _) in conv_shapes(net))
    kernels = sum((36 if min(o, c) >= 128 else 0) * o * c * 4   # F(4x4, 3x3) from 128 channels
                  for _, (o, c, _, _) in conv_shapes(net)[:13])   # to conv5_1
    assert avg.weight_bytes == weights and avg.kernel_bytes == kernels
    assert E.format_bytes(kernels) == "195.8 MiB"
    assert avg.peak_bytes == (weights + kernels + avg.state_bytes + avg.kept_bytes
                              + avg.transient_bytes)
    losses = P.plan_iteration(net, (64, 32), style_layers=STYLE, content_layers=["relu4_2"])
    by_name = {la.name: la for la in losses.layers}
    grams = 4 * (64 ** 2 + 128 ** 2 + 256 ** 2 + 512 ** 2 + 512 ** 2)
    relu4_2 = 4 * 512 * 8 * 4
    assert losses.target_bytes == grams + relu4_2
    features = sum(by_name[name].out_bytes for name in STYLE)         # Gram keeps F
    assert losses.kept_bytes == relu_masks + features + grams + relu4_2 + tv   # G/M - A
    double = P.plan_iteration(net, (64, 32), deepest="relu5_1", itemsize=8)
    assert double.kept_bytes == 2 * avg.kept_bytes - relu_masks        # masks stay 1 byte


def test_algorithms_and_layer_peaks(net):
    plan = P.plan_iteration(net, (64, 32), style_layers=["relu1_1"], deepest="relu5_1")
    algorithms = [la.algorithm for la in plan.layers if la.kind == "conv"]
    assert algorithms == ["im2col"] + ["shifted"] * 2 + ["winograd4"] * 10   # C, O >= 64; 128
    conv1_1, relu1_1, conv1_2 = plan.layers[:3]
    assert plan.forward_peaks[0] == conv1_1.out_bytes + conv1_1.forward_bytes   # no input
    assert plan.forward_peaks[1] == 2 * relu1_1.out_bytes + relu1_1.saved_bytes
    # conv1_2's forward: relu1_1's output is its input, the mask is kept
    assert plan.forward_peaks[2] == (relu1_1.saved_bytes + relu1_1.out_bytes
                                     + conv1_2.out_bytes + conv1_2.forward_bytes)
    last = plan.layers[-1]
    assert plan.backward_peaks[-1] == plan.kept_bytes + last.out_bytes + last.grad_bytes
    # relu1_1's gradient from the loss comes first (the loss was recorded last) and waits
    # while conv1_2's backward runs
    assert plan.backward_peaks[2] == (plan.kept_bytes + plan.layers[3].grad_bytes
                                      + relu1_1.out_bytes + conv1_2.grad_bytes
                                      + conv1_2.backward_bytes)
    assert plan.peak_layer == ("conv1_2", "backward")
    assert plan.transient_bytes == max(*plan.forward_peaks, *plan.backward_peaks) \
        - plan.kept_bytes


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_work_buffers_are_chunked_at_large_sizes(net, device):
    chunk = CHUNK_ELEMENTS[device]
    conv1_1, _, conv1_2 = P.layer_costs(net, (2048, 2048), deepest="conv1_2", device=device)
    assert (conv1_1.algorithm, conv1_2.algorithm) == ("im2col", "shifted")
    full = 2048 * 2048 * 3 * 9 * 4                              # the unchunked col, 432 MiB
    assert conv1_1.buffer_bytes <= 4 * chunk < full
    assert conv1_1.buffer_bytes % (3 * 9 * 2048 * 4) == 0       # whole output rows
    assert 2 * conv1_1.buffer_bytes > 4 * chunk                 # as many rows as fit
    # shifted views: S (3*64, R*2050 + 2), wide and tmp (64, R*2050) for R output rows, within
    # the smaller of the chunk and shifted.BAND_ELEMENTS
    budget = 4 * min(chunk, BAND_ELEMENTS)
    rows = (conv1_2.buffer_bytes // 4 - 3 * 64 * 2) / ((3 * 64 + 2 * 64) * 2050)
    assert rows == int(rows) and conv1_2.buffer_bytes <= budget
    assert 4 * (rows + 1) * (3 * 64 + 2 * 64) * 2050 > budget       # one row more would not fit


def test_peak_grows_with_size(net):
    plans = [P.plan_iteration(net, (s, s), deepest="relu5_1") for s in (32, 64, 128, 256, 512)]
    peaks = [plan.peak_bytes - plan.weight_bytes - plan.kernel_bytes for plan in plans]
    assert all(a < b for a, b in zip(peaks, peaks[1:]))
    # about linear in the pixel count, less than 4x: the chunked work buffers (a col of at most
    # 16 MB, 1 MB bands) do not grow with the image; 3.39 since padding is built per chunk
    assert 3.2 < peaks[4] / peaks[3] < 4.0
    gpu = P.plan_iteration(net, (512, 512), deepest="relu5_1", device="gpu")
    assert gpu.transient_bytes > plans[4].transient_bytes     # larger im2col chunks on the GPU


def test_largest_size_that_fits_is_the_boundary(net):
    options = dict(style_layers=STYLE, content_layers=["relu4_2"])
    budget = P.plan_iteration(net, (300, 200), **options).peak_bytes
    longest = F.largest_size_that_fits(net, budget, shape=(3, 2), **options)
    assert longest >= 300
    assert P.plan_iteration(net, longest_shape((3, 2), longest), **options).peak_bytes <= budget
    assert P.plan_iteration(net, longest_shape((3, 2), longest + 1), **options).peak_bytes \
        > budget
    assert F.largest_size_that_fits(net, 1000, shape=(3, 2), **options) == 0
    assert longest_shape((300, 200), 600) == (600, 400)


def test_check_memory_refuses_with_the_size_that_fits(net):
    options = dict(style_layers=STYLE)
    plan = F.check_memory(net, (128, 128), available=10 * F.GIB, **options)
    assert plan.size == (128, 128)
    budget = P.plan_iteration(net, (256, 256), **options).peak_bytes
    with pytest.raises(UserError) as info:
        F.check_memory(net, (512, 512), available=budget, **options)
    message = str(info.value)
    longest = F.largest_size_that_fits(net, budget, shape=(512, 512), **options)
    assert f"--size {longest} or less" in message and 256 <= longest < 512
    assert "of RAM is free" in message
    assert message.count(". ") == 0 and "\n" not in message     # one sentence
    with pytest.raises(UserError, match="GPU memory is free; free some memory"):
        F.check_memory(net, (512, 512), available=1000, device="gpu", **options)


def test_explain_text_lists_every_layer_and_the_totals(net):
    plan = P.plan_iteration(net, (96, 128), deepest="relu4_2", style_layers=STYLE[:4])
    text = E.explain_text(plan, gflops=100.0)
    rows = [line.split()[0] for line in text.splitlines()[3:3 + len(plan.layers)]]
    assert rows == [la.name for la in plan.layers]
    assert "512 x 12 x 16" in text                              # relu4_2 after three pools
    seconds = plan.flop / 100e9
    assert f"{seconds:.2f} s" in text and "Gram matrices" in text
    assert E.format_bytes(plan.peak_bytes) in text
    assert "estimated time" not in E.explain_text(plan)


def test_formatting():
    assert E.format_bytes(512) == "512 B" and E.format_bytes(1536) == "1.5 KiB"
    assert E.format_bytes(3 * F.GIB) == "3.0 GiB" and E.format_bytes(5 * 1024 ** 4) == "5120.0 GiB"
    assert E.format_count(94_730_452_992) == "94.7 G" and E.format_count(999) == "999"
