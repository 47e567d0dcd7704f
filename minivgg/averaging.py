"""Iterate averaging: an exponential moving average of the points an optimiser visits.

Adam with a fixed step keeps jittering around a minimum; the average of its recent iterates sits
nearer to it and is smoother (Polyak averaging, in the exponential form of crowsonkb's
style-transfer ``--avg-decay``). With decay d in [0, 1) and x_t the point after step t:

    a_t = d a_{t-1} + (1 - d) x_t,   a_0 = 0;      average_t = a_t / (1 - d^t)

The division is the bias correction (as in Adam's moments): a_t's weights sum to 1 - d^t, so
without it the first averages would be pulled towards 0. d = 0 gives x_t itself; d = 0.9 weights
about the last 10 points. The arrays may be NumPy or CuPy: only arithmetic is used.
"""
from miniautograd import get_array_module, to_cpu


class IterateAverage:
    """The bias-corrected moving average of the arrays passed to ``update``."""

    def __init__(self, decay):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"IterateAverage: decay must be in [0, 1), got {decay}")
        self.decay, self.accumulated, self.count = float(decay), None, 0

    def update(self, x):
        """Fold in the point x (not modified): a = d a + (1 - d) x."""
        if self.accumulated is None:
            self.accumulated = (1.0 - self.decay) * x
        else:
            self.accumulated = self.decay * self.accumulated + (1.0 - self.decay) * x
        self.count += 1

    def value(self):
        """a_t / (1 - d^t): the average of the points so far (None before the first)."""
        if self.accumulated is None:
            return None
        return self.accumulated * (1.0 / (1.0 - self.decay ** self.count))

    def state_dict(self):
        """decay, count and the accumulated sum (a NumPy array, or None before the first point)."""
        a = None if self.accumulated is None else to_cpu(self.accumulated)
        return {"decay": self.decay, "count": self.count, "accumulated": a}

    def load_state_dict(self, state, *, like):
        """Restore a ``state_dict``; the sum goes to ``like``'s array module and dtype."""
        self.decay, self.count = float(state["decay"]), int(state["count"])
        a = state["accumulated"]
        self.accumulated = None if a is None else get_array_module(like).asarray(a, dtype=like.dtype)
