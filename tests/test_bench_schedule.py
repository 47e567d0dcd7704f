"""bench/bench_schedule.py at a tiny size on the tiny net: both runs, the table, the pictures."""
import sys

import pytest
from PIL import Image

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
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
