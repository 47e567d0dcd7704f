"""Checkpoint files: nested optimiser state round-trips exactly, no pickle, atomic writes."""
import numpy as np
import pytest

from minivgg.errors import UserError
from minivgg import files
from minivgg.files import atomic_write
from minivgg.stylize import checkpoint as ck


def test_nested_state_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(0)
    state = {"iteration": 7, "lr": 0.5, "name": "lbfgs", "nothing": None, "flag": True,
             "history": [rng.standard_normal((2, 3)).astype(np.float32), np.arange(4)],
             "inner": {"m": rng.standard_normal(5), "pairs": [(1, 2.5), []]},
             "scalar": np.float64(3.25)}
    path = tmp_path / "s.state.npz"
    atomic_write(path, ck.dump_state(state))
    back = ck.load_state(path)
    assert back["iteration"] == 7 and back["lr"] == 0.5 and back["name"] == "lbfgs"
    assert back["nothing"] is None and back["flag"] is True
    for a, b in zip(state["history"], back["history"]):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(back["inner"]["m"], state["inner"]["m"])
    assert back["inner"]["pairs"] == [[1, 2.5], []]
    assert float(back["scalar"]) == 3.25


def test_state_files_load_without_pickle(tmp_path):
    path = tmp_path / "s.state.npz"
    atomic_write(path, ck.dump_state({"x": np.ones(3)}))
    with np.load(path, allow_pickle=False) as f:          # would raise if anything were pickled
        assert sorted(f.files) == ["__meta__", "a0"]


def test_unstorable_values_are_refused():
    with pytest.raises(TypeError, match="cannot store a object"):
        ck.dump_state({"x": object()})


def test_a_damaged_checkpoint_is_a_user_error(tmp_path):
    path = tmp_path / "out_0010.state.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(UserError, match="cannot be read.*run without --resume"):
        ck.load_state(path)


def test_paths_and_the_last_checkpoint(tmp_path):
    out = tmp_path / "out.png"
    assert ck.checkpoint_paths(out, 100) == (tmp_path / "out_0100.png",
                                             tmp_path / "out_0100.state.npz")
    assert ck.checkpoint_paths(out, 7, digits=5)[0].name == "out_00007.png"
    assert ck.find_last(out) is None
    for name in ("out_0100.state.npz", "out_0900.state.npz", "out_10000.state.npz",
                 "other_99999.state.npz", "out_x.state.npz", "out_2000.png"):
        (tmp_path / name).write_bytes(b"")
    assert ck.find_last(out).name == "out_10000.state.npz"


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "log.csv"
    target.write_text("old\n")

    def fail(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]


def test_atomic_write_leaves_nothing_behind_when_interrupted_just_after_the_open(tmp_path,
                                                                                monkeypatch):
    """Ctrl-C between making the temporary file and writing it (seen once in a test of the
    program's Ctrl-C, which rewrites the log at every iteration)."""
    real_open = files.os.open

    def open_then_interrupt(*args, **kwargs):
        real_open(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "log.csv", b"new\n")
    assert list(tmp_path.iterdir()) == []


def test_save_checkpoint_writes_the_image_first_then_the_state(tmp_path):
    written = []

    def write_image(path):
        written.append(path.name)
        assert not (tmp_path / "out_0003.state.npz").exists()
        path.write_bytes(b"png")

    image_path = ck.save_checkpoint(tmp_path / "out.png", 3, {"iteration": 3}, write_image)
    assert image_path == tmp_path / "out_0003.png" and written == ["out_0003.png"]
    assert ck.load_state(tmp_path / "out_0003.state.npz") == {"iteration": 3}
