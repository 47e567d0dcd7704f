"""L-BFGS's memory: the last pairs s_i = x_{i+1} - x_i, y_i = g_{i+1} - g_i (optim.LBFGS).

With m pairs of an image of n values the history is 2 m n values: at 2048 x 2048 px and m = 10,
about 1 GiB in float32, the largest part of a tiled run's memory (tile_plan.py). So it can be
kept in full precision (x's dtype, as given) or in half, as float16, for half the bytes.

Half precision: a vector v is kept as the float16 array v / c with c = max_j |v_j|, so every entry
lies in [-1, 1], where float16 keeps 11 significant bits (relative rounding <= 2^-11, about
4.9e-4; entries below 2^-14 c keep fewer bits, below 2^-25 c they round to 0). L-BFGS then uses
the rounded pairs v' = c * float16(v / c) throughout: rho_i = 1 / (s'_i^T y'_i), the curvature
check and gamma come from them too. The two-loop recursion is then exactly L-BFGS's for a slightly
different set of pairs, each with s'^T y' > 0, so H stays positive definite and -H g a descent
direction; what changes is only how well H approximates the inverse Hessian.
"""
import numpy as np

from miniautograd import get_array_module, to_cpu


class PairHistory:
    """The (s_i, y_i, rho_i) L-BFGS keeps, oldest first; ``half``: store s and y as float16.

    ``add(s, y)`` keeps a pair only when its curvature s^T y is clearly positive; ``pairs()``
    gives each as (s, y, rho) in the dtype of the vectors added (half: expanded copies)."""

    def __init__(self, *, half=False):
        self.half = bool(half)
        self.dtype = None                    # of the vectors added: the expanded pairs' dtype
        self.s, self.y = [], []              # stored: (array, scale c); the vector is c * array
        self.rho = []                        # rho_i = 1 / (s_i^T y_i), of the stored vectors

    def __len__(self):
        return len(self.rho)

    def clear(self):
        self.s, self.y, self.rho = [], [], []

    def drop_oldest(self):
        del self.s[0], self.y[0], self.rho[0]

    def add(self, s, y, *, tiny=1e-10):
        """Keep (s, y) unless s^T y <= tiny * y^T y or <= 0 (in the stored precision): without
        positive curvature it would make H indefinite. Returns whether it was kept."""
        self.dtype = s.dtype
        s, y = self._store(s), self._store(y)
        s_full, y_full = self._expand(s), self._expand(y)
        xp = get_array_module(s_full)
        sy, yy = float(xp.vdot(s_full, y_full)), float(xp.vdot(y_full, y_full))
        if sy <= tiny * yy or sy <= 0:
            return False
        self.s.append(s)
        self.y.append(y)
        self.rho.append(1.0 / sy)
        return True

    def _store(self, v):
        """(array, c) with v = c * array: v itself and 1 in full precision, else float16 v / c."""
        if not self.half:
            return v, 1.0
        c = float(get_array_module(v).abs(v).max())
        c = c if c > 0 else 1.0
        return (v * (1.0 / c)).astype(np.float16), c

    def pairs(self, *, newest_first=False):
        """Yield (s_i, y_i, rho_i), oldest first (or newest first), s and y as vectors."""
        order = range(len(self) - 1, -1, -1) if newest_first else range(len(self))
        for i in order:
            yield self._expand(self.s[i]), self._expand(self.y[i]), self.rho[i]

    def _expand(self, stored):
        """The vector c * array of a ``stored`` (array, c): the array itself in full precision
        (c = 1); from float16 a new array of the dtype the vectors were added in."""
        a, c = stored
        if not self.half:
            return a
        return get_array_module(a).multiply(a, c, dtype=self.dtype)

    def gamma(self):
        """s^T y / y^T y of the newest pair: H0 = gamma I (Nocedal & Wright, eq. 7.20)."""
        y = self._expand(self.y[-1])
        return 1.0 / (self.rho[-1] * float(get_array_module(y).vdot(y, y)))

    def state_dict(self, like):
        """{"s", "y": NumPy arrays (k, *shape) as stored, "s_scale", "y_scale", "rho": (k,)};
        ``like``: an array of the vectors' shape and dtype (x), for k = 0."""
        state = {"rho": np.array(self.rho, dtype=np.float64)}
        for name, stored in (("s", self.s), ("y", self.y)):
            state[name] = _stack([a for a, _ in stored], like, self.half)
            state[name + "_scale"] = np.array([c for _, c in stored], dtype=np.float64)
        return state

    def load_state_dict(self, state, xp, dtype):
        """Restore ``state_dict``'s pairs into array module ``xp``, as float16 if they were
        saved so, else as ``dtype`` (x's). A state without scales (saved before half precision
        existed) holds full vectors."""
        self.half = bool(np.asarray(state["s"]).dtype == np.float16)
        self.dtype = dtype
        kind = np.float16 if self.half else dtype

        def stored(name):
            arrays = np.asarray(state[name])                         # (k, ...) -> k x (...)
            scales = state.get(name + "_scale", np.ones(len(arrays)))
            return [(xp.array(a, dtype=kind), float(c)) for a, c in zip(arrays, scales)]
        self.s, self.y = stored("s"), stored("y")
        self.rho = [float(r) for r in np.asarray(state["rho"])]


def _stack(arrays, like, half):
    """k arrays of one shape -> one NumPy array (k, *shape); k may be 0 (shape: like's)."""
    if arrays:
        return to_cpu(get_array_module(arrays[0]).stack(arrays))       # k x (...) -> (k, ...)
    return np.zeros((0,) + like.shape, dtype=np.float16 if half else like.dtype)
