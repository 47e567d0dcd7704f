"""bench/bench_schedule.py at a tiny size on the tiny net: both runs, the table, the pictures;
bench/adam_moments.py (--adam-moments): the carried Adam, the resized moments, the patches."""
import ast
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from minivgg import losses, optim
from minivgg.stylize import objective, run as run_module

sys.path.insert(0, str(ROOT / "bench"))
import adam_moments  # noqa: E402
import bench_schedule  # noqa: E402


def test_the_table_has_both_runs_and_a_loss_per_size(tiny_mat, images, tmp_path, capsys):
    content, style = images
    bench_schedule.main([str(content), str(style), "--size", "48", "--start-size", "24",
                         "--single-iterations", "3", "--coarse-iterations", "2", "--iterations",
                         "2", "--weights", str(tiny_mat), "--out", str(tmp_path / "new")])
    out = capsys.readouterr().out
    assert "schedule: 24, 34, 48 px" in out and "| loss at 24 | loss at 34 | loss at 48 |" in out
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in out.splitlines()
            if line.startswith("| single") or line.startswith("| schedule")}
    assert rows["single-scale"][0].strip() == "3" and rows["schedule"][0].strip() == "2 x 2 + 2"
    for cells in rows.values():
        evaluations, at_final = int(cells[2]), float(cells[3])
        assert evaluations >= 2 and 0 < at_final <= evaluations
        assert cells[4] == cells[-1]                   # the final-scale loss is the one at 48 px
    assert float(rows["schedule"][3]) < int(rows["schedule"][2])   # coarse evaluations are cheaper
    with Image.open(tmp_path / "new" / "pair.png") as pair:      # the folder was made
        assert pair.size == (48 + 8 + 48, 36)


def test_a_bad_setting_is_one_sentence(tiny_mat, images, capsys):
    content, style = images
    with pytest.raises(SystemExit) as exc:
        bench_schedule.main([str(content), str(style), "--size", "48", "--start-size", "64",
                             "--weights", str(tiny_mat)])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: --start-size 64 is larger than --size 48")


def table_rows(out):
    """[(run, iterations, [cells after them])] of the printed table."""
    return [(cells[0].strip(), cells[1].strip(), [c.strip() for c in cells[2:]])
            for cells in (line.split("|")[1:-1] for line in out.splitlines())
            if cells and cells[0].strip() in ("single-scale", "schedule")]


def test_a_snapshot_is_the_run_that_stops_there(tiny_mat, images, capsys):
    """The row after K final-size iterations of a longer run has the losses and evaluations of a
    run with --iterations K: the optimisers do not look ahead at the limit."""
    content, style = images
    common = [str(content), str(style), "--size", "48", "--start-size", "24",
              "--coarse-iterations", "2", "--weights", str(tiny_mat), "--runs", "schedule"]
    bench_schedule.main(common + ["--iterations", "4", "--snapshots", "2", "3"])
    long_run = table_rows(capsys.readouterr().out)
    bench_schedule.main(common + ["--iterations", "2"])
    short_run = table_rows(capsys.readouterr().out)
    assert [row[1] for row in long_run] == ["2 x 2 + 2", "2 x 2 + 3", "2 x 2 + 4"]
    (_, _, snapshot), (_, _, alone) = long_run[0], short_run[0]
    assert snapshot[1:] == alone[1:]        # evaluations and every loss; not the wall time


# -- --adam-moments: reset (the program), resize, rescale ---------------------------------------
def adam_schedule_rows(content, style, tiny_mat, capsys, *flags):
    """(header line, rows) of a tiny Adam schedule run (24, 34, 48 px) with ``flags``."""
    bench_schedule.main([str(content), str(style), "--size", "48", "--start-size", "24",
                         "--coarse-iterations", "3", "--iterations", "3", "--optimizer", "adam",
                         "--weights", str(tiny_mat), "--runs", "schedule", *flags])
    out = capsys.readouterr().out
    return out.splitlines()[0], table_rows(out)


def test_each_size_prints_the_losses_of_each_sizes_result(tiny_mat, images, capsys):
    """One line per size with the losses at it and the smaller sizes; after the last size the
    result is the final image, so its line has the table's losses."""
    content, style = images
    originals = instruments()
    bench_schedule.main([str(content), str(style), "--size", "48", "--start-size", "24",
                         "--coarse-iterations", "2", "--iterations", "2", "--weights",
                         str(tiny_mat), "--runs", "schedule", "--each-size"])
    assert instruments() == originals
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("after ")]
    assert [line.split(":")[0] for line in lines] == ["after 24 px", "after 34 px", "after 48 px"]
    found = [ast.literal_eval(line.split("losses ")[1]) for line in lines]  # {size: loss}
    assert [sorted(f) for f in found] == [[24], [24, 34], [24, 34, 48]]
    cells = table_rows(out)[0][2]
    assert [f"{found[-1][s]:.5g}" for s in (24, 34, 48)] == cells[-3:]


def test_adam_moments_reset_is_the_program_and_the_others_differ(tiny_mat, images, capsys):
    content, style = images
    _, plain = adam_schedule_rows(content, style, tiny_mat, capsys)
    found = {mode: adam_schedule_rows(content, style, tiny_mat, capsys, "--adam-moments", mode)
             for mode in ("reset", "resize", "rescale")}
    for mode, (header, _) in found.items():
        assert header.endswith(f"; --optimizer adam, --learning-rate 10, --adam-moments {mode}")
    losses_of = {mode: rows[0][2][4:] for mode, (_, rows) in found.items()}   # loss columns
    assert found["reset"][1][0][2][1:] == plain[0][2][1:]   # all but the wall time: the same run
    assert losses_of["resize"] != losses_of["reset"] != losses_of["rescale"]
    assert losses_of["resize"] != losses_of["rescale"]


def test_adam_moments_needs_adam(tiny_mat, images, capsys):
    content, style = images
    with pytest.raises(SystemExit) as exc:
        bench_schedule.main([str(content), str(style), "--size", "48", "--start-size", "24",
                             "--weights", str(tiny_mat), "--adam-moments", "resize"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --adam-moments applies to --optimizer adam only")
    assert err.count("\n") == 1 and err.count(". ") == 0         # one sentence


def instruments():
    """What the bench patches while it runs, as found now."""
    return (run_module.make_optimizer, run_module.Run.after_iteration,
            run_module.Run.run_scale, losses.Objective.value_and_grad)


def test_the_patches_are_undone_also_when_the_run_fails(tiny_mat, images, capsys, monkeypatch):
    content, style = images
    originals = instruments()
    assert originals[0] is objective.make_optimizer
    adam_schedule_rows(content, style, tiny_mat, capsys, "--adam-moments", "rescale")
    assert instruments() == originals

    def broken(a, shape):
        raise RuntimeError("resize failed")
    monkeypatch.setattr(adam_moments, "resized_moment", broken)   # fails entering the 2nd scale
    with pytest.raises(RuntimeError, match="resize failed"):
        adam_schedule_rows(content, style, tiny_mat, capsys, "--adam-moments", "resize")
    assert instruments() == originals


def quadratic(shape, seed=0):
    """f(x) = 1/2 sum a (x - c)^2 with a per-element a > 0: (fn, x0), fn(x) -> (loss, grad)."""
    rng = np.random.default_rng(seed)
    a, c = rng.uniform(0.5, 3.0, shape), rng.normal(0, 5.0, shape)
    return (lambda x: (0.5 * float(np.sum(a * (x - c) ** 2)), a * (x - c)),
            rng.normal(0, 5.0, shape))


def test_a_carried_adam_takes_the_steps_adam_would_have_taken():
    fn, x0 = quadratic((1, 3, 4, 5))
    whole, first = optim.Adam(x0, fn, lr=0.3), optim.Adam(x0, fn, lr=0.3)
    for _ in range(6):
        whole.step()
    for _ in range(3):
        first.step()
    after = {}
    for steps_before in (3, 0):           # 0: the bias correction restarts: not Adam's steps
        then = adam_moments.CarriedAdam(first.x, fn, m=first.m, v=first.v, lr=0.3,
                                        steps_before=steps_before)
        for _ in range(3):
            then.step()
        assert then.iteration == 3        # Run counts the scale's iterations with it
        after[steps_before] = then.x
    np.testing.assert_array_equal(after[3], whole.x)
    assert np.abs(after[0] - whole.x).max() > 1e-3


def test_a_resized_moment_is_neither_clipped_nor_negative():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 400.0, (1, 3, 4, 5)).astype(np.float32)       # below 0 and above 255
    v = np.zeros((1, 3, 4, 5), np.float32)
    v[0, :, 1, 2] = 1e4                                               # a spike: cubic rings below 0
    m2, v2 = adam_moments.resized_moment(m, (9, 7)), adam_moments.resized_moment(v, (9, 7))
    assert m2.shape == v2.shape == (1, 3, 9, 7) and m2.dtype == np.float32
    assert m2.min() < -255 and m2.max() > 255
    assert v2.min() >= 0 and v2.max() > 0
    cubic = Image.fromarray(v[0, 0]).resize((7, 9), Image.Resampling.BICUBIC)
    assert np.asarray(cubic).min() < 0                                # what bilinear avoids
    flat = adam_moments.resized_moment(np.full((1, 3, 4, 5), 2.5, np.float32), (9, 7))
    np.testing.assert_allclose(flat, 2.5, rtol=1e-6)                  # weights sum to 1


def test_rescale_scales_the_resized_moments_by_the_pixel_ratio():
    fn, x0 = quadratic((1, 3, 4, 5))
    before = optim.Adam(x0, fn, lr=0.3)
    for _ in range(4):
        before.step()
    big_fn, big_x0 = quadratic((1, 3, 6, 8), seed=1)
    fresh = optim.Adam(big_x0, big_fn, lr=0.3)
    resized = adam_moments.carried(before, fresh, rescale=False)
    rescaled = adam_moments.carried(before, fresh, rescale=True)
    r = (4 * 5) / (6 * 8)
    np.testing.assert_allclose(rescaled.m, r * resized.m, rtol=1e-6)
    np.testing.assert_allclose(rescaled.v, r * r * resized.v, rtol=1e-6)
    assert resized.steps_before == rescaled.steps_before == 4 and resized.iteration == 0
    resized.step()
    assert adam_moments.carried(resized, optim.Adam(x0, fn, lr=0.3),
                                rescale=False).steps_before == 5    # counts over all scales
