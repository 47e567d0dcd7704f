"""The strong-Wolfe line search that L-BFGS (optim.py) runs along each search direction.

Along a direction d from x, with phi(a) = f(x + a d) and its slope phi'(a) = g(x + a d)^T d
(phi'(0) < 0: d points downhill), find a step a > 0 meeting the strong Wolfe conditions

    phi(a) <= phi(0) + c1 a phi'(0)         (sufficient decrease;  c1 = 1e-4)
    |phi'(a)| <= c2 |phi'(0)|               (the slope has flattened enough;  c2 = 0.9)

Nocedal & Wright, Numerical Optimization, Algorithm 3.5 (grow a until an interval holding such a
step is bracketed) and 3.6 (zoom into it), each new trial chosen by safeguarded cubic
interpolation (eq. 3.59). The search knows nothing of x or f: the caller's ``probe(a)`` evaluates
phi and phi' and returns a ``Trial``, whose ``at`` carries whatever the caller wants back for the
accepted step (optim.py keeps the point, its gradient and its loss terms there). A trial that
blew up (NaN or infinity) is reported as f = inf: "too far", and the search shrinks.

    trial = strong_wolfe(probe, Trial(0.0, f0, slope0, None), 1.0, c1=1e-4, c2=0.9, max_evals=25)
    if trial.a > 0: ...    # accepted; a = 0 (the start) means no trial lowered f
"""
import math
from collections import namedtuple

Trial = namedtuple("Trial", "a f dg at")     # phi(a), phi'(a) and the caller's data for that step


def strong_wolfe(probe, start, a, *, c1=1e-4, c2=0.9, max_evals=25):
    """The first trial meeting both strong Wolfe conditions, searched from step ``a``.

    start: the Trial at a = 0 (phi(0), phi'(0) < 0). At most ``max_evals`` calls of probe. If they
    run out, the lowest trial with sufficient decrease found so far is returned; if there is none,
    ``start`` itself (a = 0).
    """
    return _Search(probe, start, c1, c2, max_evals).bracket(a)


class _Search:
    """One search: the start, the constants and the evaluations left (shared by both phases)."""

    def __init__(self, probe, start, c1, c2, max_evals):
        self.probe, self.start, self.c1, self.c2 = probe, start, c1, c2
        self.evals_left = max_evals

    def _trial(self, a):
        self.evals_left -= 1
        return self.probe(a)

    def _decreases_enough(self, t):
        return t.f <= self.start.f + self.c1 * t.a * self.start.dg

    def _flat_enough(self, t):
        return abs(t.dg) <= -self.c2 * self.start.dg

    def bracket(self, a):
        """N&W Algorithm 3.5: try larger steps until [lo, hi] brackets a Wolfe step, then zoom."""
        prev = self.start
        while self.evals_left > 0:
            cur = self._trial(a)
            if not self._decreases_enough(cur) or (prev.a > 0 and cur.f >= prev.f):
                return self._zoom(prev, cur)
            if self._flat_enough(cur):
                return cur
            if cur.dg >= 0:                      # passed a minimum of phi: it lies in [prev, cur]
                return self._zoom(cur, prev)
            a = _cubic_min(prev, cur, cur.a + 0.01 * (cur.a - prev.a), 10.0 * cur.a)
            prev = cur                           # still going down steeply: look further out
        return prev                              # out of evaluations: the best step seen

    def _zoom(self, lo, hi):
        """N&W Algorithm 3.6: shrink [lo, hi] (lo: the lowest f with sufficient decrease so far,
        its slope pointing towards hi) until a trial meets both conditions."""
        while self.evals_left > 0:
            left, right = min(lo.a, hi.a), max(lo.a, hi.a)
            width = right - left
            if width <= 1e-12 * right:
                break                            # the interval is below rounding: give up
            cur = self._trial(_cubic_min(lo, hi, left + 0.1 * width, right - 0.1 * width))
            if not self._decreases_enough(cur) or cur.f >= lo.f:
                hi = cur
                continue
            if self._flat_enough(cur):
                return cur
            if cur.dg * (hi.a - lo.a) >= 0:
                hi = lo
            lo = cur
        return lo                                # sufficient decrease only (or the start, a = 0)


def _cubic_min(p, q, low, high):
    """The minimiser of the cubic through (a, f, slope) at p and q, clipped to [low, high].

    N&W eq. 3.59: d1 = f'_p + f'_q - 3 (f_p - f_q) / (a_p - a_q), d2 = sign(a_q - a_p)
    sqrt(d1^2 - f'_p f'_q), a = a_q - (a_q - a_p) (f'_q + d2 - d1) / (f'_q - f'_p + 2 d2).
    Falls back to the middle of [low, high] when the cubic has no minimiser or a value is not
    finite (a trial that blew up).
    """
    values = (p.f, q.f, p.dg, q.dg)
    if not all(math.isfinite(v) for v in values) or p.a == q.a:
        return 0.5 * (low + high)
    d1 = p.dg + q.dg - 3.0 * (p.f - q.f) / (p.a - q.a)
    disc = d1 * d1 - p.dg * q.dg
    if disc < 0:
        return 0.5 * (low + high)
    d2 = math.copysign(math.sqrt(disc), q.a - p.a)
    denom = q.dg - p.dg + 2.0 * d2
    if denom == 0:
        return 0.5 * (low + high)
    a = q.a - (q.a - p.a) * (q.dg + d2 - d1) / denom
    return min(max(a, low), high) if math.isfinite(a) else 0.5 * (low + high)
