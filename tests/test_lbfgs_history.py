"""minivgg.lbfgs_history: L-BFGS's pairs in full and in half precision (float16 with a scale).

The optimiser's use of them (the two-loop recursion, resuming, convergence) is in test_optim.py."""
import numpy as np
import pytest

from minivgg.lbfgs_history import PairHistory
from minivgg.optim import optimizer_state_bytes


# rho is 1 / s^T y summed over 1000 float32 products whose sum is dominated by its positive
# terms (y ~ 2 s): any summation order is within n eps32 = 1000 * 6e-8 = 6e-5 of the exact sum
SUM_RTOL = 1e-4


def stored_pair(half, dtype=np.float32, seed=0):
    """A PairHistory holding one pair of 1000 values spread over 8 decades, and the pair."""
    rng = np.random.default_rng(seed)
    s = (rng.normal(size=1000) * np.logspace(-6, 2, 1000)).astype(dtype)
    y = (2.0 * s + 1e-3 * rng.normal(size=1000)).astype(dtype)      # s^T y > 0
    history = PairHistory(half=half)
    assert history.add(s, y)
    return history, s, y


def test_full_precision_keeps_the_vectors_as_given():
    history, s, y = stored_pair(half=False)
    (s1, y1, rho), = history.pairs()
    assert s1 is s and y1 is y
    assert rho == pytest.approx(1.0 / float(s.astype(np.float64) @ y), rel=SUM_RTOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_half_precision_rounds_each_entry_within_float16s_resolution(dtype):
    history, s, y = stored_pair(half=True, dtype=dtype)
    assert history.s[0][0].dtype == np.float16 and history.y[0][0].dtype == np.float16
    (s1, y1, rho), = history.pairs()
    assert s1.dtype == dtype and y1.dtype == dtype
    for v, v1 in ((s, s1), (y, y1)):
        c = np.abs(v).max()
        # v / c in [-1, 1]: float16 rounds to half its 2^-10 spacing relative to the entry,
        # and to 2^-25 absolutely below its smallest normal number, 2^-14 (times the scale c).
        bound = 2.0 ** -11 * np.abs(v) + 2.0 ** -25 * c
        assert np.all(np.abs(v1.astype(np.float64) - v) <= bound)
        assert np.abs(v1 - v).max() > 0                              # it did round
    # rho comes from the rounded vectors, the ones the two-loop recursion uses
    assert rho == pytest.approx(1.0 / float(s1.astype(np.float64) @ y1), rel=SUM_RTOL)


def test_half_precision_takes_half_the_bytes():
    history, s, _ = stored_pair(half=True)
    stored = sum(a.nbytes for a, _ in history.s + history.y)
    assert stored == 2 * s.size * 2                                  # 2 bytes a value
    n = 1000
    assert optimizer_state_bytes(n, history=10, half_history=True) == (2 * 10 * 2 + 4 * 4) * n
    assert optimizer_state_bytes(n, history=10) == (2 * 10 + 4) * 4 * n


@pytest.mark.parametrize("half", [False, True])
def test_pairs_without_clear_positive_curvature_are_refused(half):
    history = PairHistory(half=half)
    s = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    assert not history.add(s, -s)                                    # s^T y < 0
    assert not history.add(s, np.zeros(3, dtype=np.float32))         # y = 0
    assert len(history) == 0
    assert history.add(s, 2 * s) and history.rho == [0.5]


@pytest.mark.parametrize("half", [False, True])
def test_state_dict_round_trip_restores_the_stored_pairs(half):
    history, _, _ = stored_pair(half=half)
    state = history.state_dict(np.zeros(1000, dtype=np.float32))
    assert state["s"].dtype == (np.float16 if half else np.float32)
    back = PairHistory()
    back.load_state_dict(state, np, np.float32)
    assert back.half == half and back.rho == history.rho
    for (s, y, _), (s1, y1, _) in zip(history.pairs(), back.pairs()):
        np.testing.assert_array_equal(s, s1)
        np.testing.assert_array_equal(y, y1)


def test_a_state_saved_without_scales_loads_as_full_precision():
    # the layout of checkpoints written before half precision existed: s, y, rho only
    s = np.ones((1, 4), dtype=np.float32)
    old = {"s": s, "y": 2 * s, "rho": np.array([0.125])}
    history = PairHistory(half=True)
    history.load_state_dict(old, np, np.float32)
    assert not history.half
    (s1, y1, rho), = history.pairs()
    np.testing.assert_array_equal(y1, 2.0)
    assert rho == 0.125
