"""--style-masks: the guided Gram matrices' op and loss (gradient checks, float64), the conventions
of guided.py's docstring, the masks at each layer, the checks of bad masks (one sentence, exit 2,
nothing written), the notices, the plan's count and a run with masks that resumes exactly."""
import numpy as np
import pytest
from PIL import Image

import miniautograd as ag
import minivgg
from minivgg import explain, guided, losses, masks, plan
from minivgg.errors import UserError
from minivgg.meancov import meancov_target
from minivgg.stylize.options import Options, validate
from minivgg.vgg import random_vgg19
from test_stylize_options import refused
from test_stylize_run import pixels, run

RNG = np.random.default_rng(0)


def features(shape=(2, 3, 5, 7), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def style_target(loss, C=3, seed=1):
    """A style's target of ``loss`` from random features (C channels, 6x4 positions)."""
    F = features((1, C, 6, 4), seed) + 0.5
    mu, R = F.reshape(1, C, 24).mean(axis=2, keepdims=True), F.reshape(1, C, 24) @ \
        F.reshape(1, C, 24).swapaxes(1, 2) / 24                   # (1, C, 1), (1, C, C)
    return R if loss == "gram" else meancov_target(mu, R)


# -- the op and the loss ------------------------------------------------------------------------
def test_weighted_gram_backward_matches_finite_differences():
    m = RNG.uniform(0, 1, (1, 1, 5, 7))
    result = ag.gradcheck(lambda x: guided.weighted_gram(x, m), features())
    assert result.ok, result.errors


def test_a_wrong_weighted_gram_backward_is_rejected(monkeypatch):
    m = RNG.uniform(0.2, 1, (1, 1, 5, 7))
    right = guided.WeightedGram.backward
    def sqrt_weighted(self, gG):                                   # sqrt(m) where m is right
        return (right(self, gG)[0] * np.sqrt(self.m.reshape(1, 1, 5, 7)),)
    monkeypatch.setattr(guided.WeightedGram, "backward", sqrt_weighted)
    assert not ag.gradcheck(lambda x: guided.weighted_gram(x, m), features()).ok


@pytest.mark.parametrize("loss", ["gram", "meancov"])
def test_guided_layer_loss_gradient(loss):
    shape = (1, 3, 5, 7)
    left = np.zeros((1, 1, 5, 7))
    left[..., :4] = 1.0
    soft = RNG.uniform(0, 1, (1, 1, 5, 7))
    target = guided.GuidedTarget((left, soft), (style_target(loss), style_target(loss, seed=2)),
                                 loss)
    result = ag.gradcheck(lambda F: guided.guided_layer_loss(F, target), features(shape) + 1)
    assert result.ok, result.errors


def test_a_binary_mask_is_the_plain_loss_of_its_region():
    F, A = features((1, 3, 5, 8)), style_target("gram")
    left = np.zeros((1, 1, 5, 8))
    left[..., :3] = 1.0
    target = guided.GuidedTarget((left,), (A,), "gram")
    guided_loss = guided.guided_layer_loss(ag.Tensor(F), target).item()
    assert guided_loss == pytest.approx(losses.style_layer_loss(ag.Tensor(F[..., :3]), A).item())


def test_a_uniform_grey_mask_is_the_plain_loss_whatever_its_grey():
    F, A = features((1, 3, 5, 8)), style_target("gram")
    plain = losses.style_layer_loss(ag.Tensor(F), A).item()
    for grey in (0.25, 1.0):
        target = guided.GuidedTarget((np.full((1, 1, 5, 8), grey),), (A,), "gram")
        assert guided.guided_layer_loss(ag.Tensor(F), target).item() == pytest.approx(plain)


# -- masks at each layer ------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_layer_masks_are_pooled_like_the_features(pooling):
    net = random_vgg19(pooling=pooling, channels=[2] * 16)
    mask = RNG.uniform(0, 1, (36, 48)).astype(np.float32)
    layers = ["relu1_1", "relu2_1", "relu3_1"]
    found = masks.layer_masks(net, mask, layers)
    out = net(ag.Tensor(np.zeros((1, 3, 36, 48), np.float32)), layers)
    for name in layers:
        assert found[name].shape[2:] == out[name].shape[2:]
    pool = ag.avg_pool2d if pooling == "avg" else ag.max_pool2d
    once = pool(ag.Tensor(mask[None, None]), 2, stride=2).data
    np.testing.assert_allclose(found["relu2_1"][..., :18, :24], once[..., :18, :24], atol=1e-6)


def test_masks_at_resizes_to_any_image_size():
    net = random_vgg19(channels=[2] * 16)
    mask = np.zeros((30, 40), np.float32)
    mask[:, :20] = 1.0
    (found,) = masks.masks_at(net, [mask], (60, 80), ["relu1_1", "relu3_1"])
    assert found["relu1_1"].shape == (1, 1, 60, 80) and found["relu3_1"].shape == (1, 1, 15, 20)
    assert found["relu1_1"].dtype == np.float32
    full = found["relu1_1"][0, 0]
    assert full[:, :38].min() > 0.95 and full[:, 42:].max() < 0.05


# -- bad masks, notices -------------------------------------------------------------------------
def write_mask(path, width=48, height=36, value=255, left=None):
    a = np.full((height, width), value, np.uint8)
    if left is not None:
        a[:, left:] = 0
    Image.fromarray(a).save(path)
    return path


def test_bad_masks_are_refused_in_one_sentence(capsys, images, tmp_path):
    content, style = images
    good = write_mask(tmp_path / "good.png")
    line = refused(capsys, [content, style, style, "--style-masks", good], tmp_path)
    assert "1 mask(s) for 2 style image(s)" in line
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert "broken.png" in refused(capsys, [*images, "--style-masks", "broken.png"], tmp_path)
    assert "does not exist" in refused(capsys, [*images, "--style-masks", "nowhere.png"], tmp_path)
    write_mask(tmp_path / "wide.png", width=60)
    line = refused(capsys, [*images, "--style-masks", "wide.png"], tmp_path)
    assert "proportions" in line and "resize or crop the mask" in line
    write_mask(tmp_path / "black.png", value=0)
    assert "black everywhere" in refused(capsys, [*images, "--style-masks", "black.png"], tmp_path)


def test_a_mask_within_one_percent_of_the_contents_proportions_is_taken():
    masks.check_mask(np.ones((36, 48)), "m", (36, 48))
    masks.check_mask(np.ones((100, 134)), "m", (300, 400))             # 0.5% wider
    with pytest.raises(UserError, match="resize or crop"):
        masks.check_mask(np.ones((100, 136)), "m", (300, 400))         # 2% wider


def test_notices_uncovered_pixels_and_ignored_blend_weights():
    half = np.zeros((36, 48), np.float32)
    half[:, :24] = 1.0
    lines = masks.notices([half], (36, 48), blend_weights=None)
    assert len(lines) == 1
    assert lines[0].startswith("50.0% of the image is black in every style mask")
    assert masks.notices([half, 1 - half], (36, 48), blend_weights=None) == []
    lines = masks.notices([half, 1 - half], (36, 48), blend_weights=[1, 2])
    assert lines == ["--style-blend-weights is ignored with --style-masks: each style is matched "
                     "on its own region"]


def test_options_take_one_mask_alone():
    opts = validate(Options(demo=True, style_masks="m.png"))
    assert opts.style_masks == ["m.png"]


# -- plan, run ----------------------------------------------------------------------------------
def test_the_plan_counts_one_mask_per_style_per_style_layer():
    net = random_vgg19(channels=[2] * 16)
    layers = ("relu1_1", "relu2_1")
    without = plan.plan_iteration(net, (32, 48), style_layers=layers)
    with_masks = plan.plan_iteration(net, (32, 48), style_layers=layers, masks=2)
    assert with_masks.mask_bytes == 2 * 4 * (32 * 48 + 16 * 24)
    assert with_masks.peak_bytes - without.peak_bytes == with_masks.mask_bytes
    assert with_masks.gram_macs == 2 * without.gram_macs                # one Gram per style
    assert "style masks (one per style and layer) 15.0 KiB" in explain.explain_text(with_masks)
    assert "style masks" not in explain.explain_text(without)


def test_a_run_with_masks_differs_from_one_without_and_resumes_exactly(tiny_mat, images,
                                                                       tmp_path, capsys):
    content, style = images
    half = write_mask(tmp_path / "half.png", left=24)
    opt = ["--init", "noise", "--style-masks", half]
    assert run(tiny_mat, images, "--init", "noise", "-o", "plain.png", iterations=4) == 0
    assert run(tiny_mat, images, *opt, "-o", "full.png", iterations=4) == 0
    assert run(tiny_mat, images, *opt, "-o", "part.png", "--checkpoint-every", "2",
               iterations=2) == 0
    assert run(tiny_mat, images, *opt, "-o", "part.png", "--resume", iterations=4) == 0
    assert (tmp_path / "part.png").read_bytes() == (tmp_path / "full.png").read_bytes()
    plain, masked = (pixels(tmp_path / p).astype(float) for p in ("plain.png", "full.png"))
    assert np.abs(plain - masked).mean() > 1.0


@pytest.mark.parametrize("colour", [{"preserve_colors": True}, {"match_colors": True},
                                    {"style_loss": "meancov"}])
def test_masks_given_as_arrays_work_with_the_colour_options_and_meancov(tiny_mat, images, colour):
    content, style = images
    half = np.zeros((36, 48), np.float32)
    half[:, :24] = 255.0
    result = minivgg.stylize(content, [style, style], weights=str(tiny_mat), size=32,
                             iterations=2, quiet=True, style_masks=[half, 255 - half], **colour)
    assert result.size == (32, 24)


def test_masks_are_resized_at_every_scale_of_the_schedule(tiny_mat, images, monkeypatch):
    """Each scale's objective gets the masks at that scale's size (from the masks as read)."""
    from minivgg.stylize import objective as run_module
    content, style = images
    seen = []
    real = run_module.masks.masks_at

    def spy(net, masks_read, shape, layers, **kw):
        seen.append(tuple(shape))
        return real(net, masks_read, shape, layers, **kw)
    monkeypatch.setattr(run_module.masks, "masks_at", spy)
    half = np.zeros((36, 48), np.float32)
    half[:, :24] = 255.0
    result = minivgg.stylize(content, [style, style], weights=str(tiny_mat), size=48,
                             start_size=24, coarse_iterations=1, iterations=1, quiet=True,
                             style_masks=[half, 255 - half])
    assert result.size == (48, 36)
    assert seen == [(18, 24), (26, 34), (36, 48)]
