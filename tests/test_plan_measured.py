"""The memory model against what NumPy allocates (tracemalloc sees NumPy's buffers): each conv
path alone, then whole style-transfer iterations (forward and backward of losses.Objective, as
stylize runs it) on small random-weight VGG-19s, with several sizes, both poolings, different
content and style layers, and layers taking im2col (col2im or a convolution of gy) and Winograd."""

import numpy as np
import pytest

import miniautograd as ag
from minivgg import memory as Mem
from minivgg import plan as P
from minivgg.losses import Objective, layer_weights
from minivgg.vgg import random_vgg19
from traced import traced_peak, ufunc_slack


SLACK = ufunc_slack(4)   # float32 arrays


@pytest.mark.parametrize("shape, o, algorithm, asked", [
    ((1, 32, 40, 36), 16, "im2col", "auto"),     # backward as a conv of gy; col in bands of rows
    ((2, 16, 30, 20), 32, "im2col", "auto"),     # O > C: backward by col2im, gx views a padded x
    ((1, 64, 96, 80), 64, "shifted", "auto"), ((2, 64, 30, 21), 128, "shifted", "auto"),  # bands
    ((1, 128, 24, 20), 256, "winograd4", "auto"),
    ((1, 256, 23, 17), 256, "winograd4", "auto"),                      # odd sizes: a crop
    ((1, 256, 24, 20), 256, "winograd", "winograd"),                   # F(2x2, 3x3) by name
    ((1, 256, 23, 17), 512, "winograd", "winograd")])
def test_conv_model_matches_what_conv2d_allocates(shape, o, algorithm, asked):
    rng = np.random.default_rng(0)
    n, c, h, w = shape
    x = ag.Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    W = ag.Tensor(rng.standard_normal((o, c, 3, 3)).astype(np.float32) / 30)
    kernels = ag.TransformedKernels(W.data)       # held by the network, as VGG19.kernels
    ag.conv2d(x, W, pad=1, kernels=kernels, algorithm=asked)    # Winograd's U, made once, held
    memory = Mem.conv_memory(shape, (o, c, 3, 3), (1, 1), (1, 1, 1, 1), chunk=1 << 22,
                             algorithm=asked)
    assert memory["algorithm"] == algorithm
    y_bytes, gx_bytes = 4 * n * o * h * w, memory["grad_bytes"]
    y, forward_peak = traced_peak(lambda: ag.conv2d(x, W, pad=1, kernels=kernels,
                                                    algorithm=asked))
    assert y.creator.chosen == algorithm
    assert forward_peak == pytest.approx(y_bytes + memory["forward_bytes"], abs=SLACK)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    (gx, _), backward_peak = traced_peak(lambda: y.creator.backward(gy))   # (gx, gW: None)
    assert gx.shape == shape and gx_bytes >= gx.nbytes
    assert backward_peak == pytest.approx(gx_bytes + memory["backward_bytes"], abs=SLACK)


# conv1_1 3 -> 32 and conv2_1 16 -> 128: im2col, gradient by col2im (O > C); conv1_2 32 -> 16:
# im2col, gradient as a convolution of gy (O <= C); conv2_2 128 -> 64, conv3_1 and from conv4_1
# on (64 channels): shifted views; conv3_2 to conv3_4 (128): Winograd F(4x4, 3x3).
CHANNELS = (32, 16, 128, 64) + (128,) * 4 + (64,) * 8
STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def objective_for(net, size, style_layers, content_layers):
    """The style-transfer objective at ``size`` with random targets of the right shapes."""
    plan = P.plan_iteration(net, size, style_layers=style_layers, content_layers=content_layers)
    by_name = {la.name: la for la in plan.layers}
    rng = np.random.default_rng(2)
    content = {name: rng.random(by_name[name].shape, dtype=np.float32) for name in content_layers}
    style = {name: rng.random((1, *by_name[name].shape[1:2] * 2), dtype=np.float32)
             for name in style_layers}                                     # (1, C, C)
    return Objective(net, content, style, layer_weights(style_layers), content_weight=1.0,
                     style_weight=1.0, tv_weight=1.0)


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("size, style_layers, content_layers", [
    ((40, 32), STYLE, ["relu4_2"]),                   # stylize's defaults; odd from block 4 on
    ((64, 48), ["relu1_2", "relu3_1"], ["relu2_2"]),  # shallow: stops at relu3_1
    ((80, 60), ["pool2", "relu4_1"], ["relu5_1"]),    # a pool read by a loss; 15 rows at pool2
    ((33, 45), ["relu2_1"], ["relu1_1", "relu3_3"])])  # odd from the start (Winograd's crop)
def test_model_matches_the_memory_of_a_real_iteration(size, style_layers, content_layers,
                                                      pooling):
    """The iteration's modelled peak against what one Objective.value_and_grad allocates."""
    net = random_vgg19(pooling=pooling, channels=CHANNELS)
    objective = objective_for(net, size, style_layers, content_layers)
    x = np.random.default_rng(1).uniform(-100, 100, (1, 3, *size)).astype(np.float32)
    objective.value_and_grad(x)                # the first makes the Winograd kernels, then held
    _, measured = traced_peak(lambda: objective.value_and_grad(x))
    plan = P.plan_iteration(net, size, style_layers=style_layers, content_layers=content_layers)
    deep = "conv3_2" in {la.name for la in plan.layers}          # the Winograd layers reached
    assert ({la.algorithm for la in plan.layers if la.kind == "conv"}
            == {"im2col", "shifted"} | ({"winograd4"} if deep else set()))
    # Within 15% (the issue's bound): small arrays (the losses' scalars, Gram intermediates
    # freed at once) and Python objects are not modelled.
    assert plan.iteration_bytes == pytest.approx(measured, rel=0.15)


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("size, window", [((96, 80), 96), ((150, 130), 48)])
def test_pass_one_model_bounds_what_a_tile_allocates(size, window, pooling):
    """tiled.py's pass 1 (a forward without a graph, each style layer's moments summed as it is
    made) against memory.forward_only_peaks on its largest window: whole (one tile) and cut."""
    from minivgg import tile_plan, tile_runner, tiled, tiles
    net = random_vgg19(pooling=pooling, channels=CHANNELS)
    grid = tiles.layout(net.layers, STYLE + ["relu4_2"], size, window)
    runner = tile_runner.TileRunner(net, STYLE, grid)
    x = np.random.default_rng(1).uniform(-100, 100, (1, 3, *size)).astype(np.float32)
    tiled.moment_sums(runner, x)               # the first makes the Winograd kernels, then held
    _, measured = traced_peak(lambda: tiled.moment_sums(runner, x))
    modelled = tile_plan.forward_only_bytes(net, grid.largest_window,
                                            dict(style_layers=STYLE))
    # Beyond the model: a conv's ufunc slack, as above, and the moments being summed (per style
    # layer mu (C, 1) and R (C, C), a few KiB where the arrays are MiB).
    by_name = {la.name: la for la in P.plan_iteration(net, size, style_layers=STYLE).layers}
    sums = sum(4 * (c * c + c) for c in (by_name[name].shape[1] for name in STYLE))
    assert measured <= modelled + SLACK + sums
    # The peak is at a convolution, which the model counts as the conv test above does; the
    # generous style-layer terms (the uncut output, its cut and the bands at once) stay below
    # it. Bytes, not time: the same on any CPU.
    assert modelled <= 1.25 * measured
