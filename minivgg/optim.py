"""Optimisers over one array: L-BFGS (Gatys et al.'s choice, the default) and Adam, and the
bytes their state takes (``optimizer_state_bytes``). L-BFGS's line search is in linesearch.py.

Both minimise f given ``fn(x) -> (loss, grad, terms)``, as losses.Objective.value_and_grad is:
``loss`` a number, ``grad`` an array of x's shape, ``terms`` a dict {name: number} of the loss's
parts, kept for the point the optimiser accepts (``fn(x) -> (loss, grad)`` works too: no terms).
``fn`` must not modify x. ``x0`` may be a NumPy or CuPy array of any float dtype and shape; the
work stays in x0's array module and only scalars (the loss, dot products) travel to the host.

    opt = LBFGS(x0, fn, history=10)          # or Adam(x0, fn, lr=1.0)
    for _ in range(500):
        loss = opt.step()                    # one iteration; the loss at the new point opt.x
    state = opt.state_dict()                 # plain numbers and NumPy arrays (np.savez-able)
    opt2 = LBFGS(x, fn); opt2.load_state_dict(state)   # continues exactly where opt stopped

Each object keeps ``x``, ``loss``, ``grad`` and ``terms`` (None if fn gives none) at the current
point, ``iteration`` (steps taken) and ``n_evals`` (calls of fn). A NaN or infinite loss or
gradient raises ``NonFiniteLoss`` and leaves the state at the last finite point.
"""
import math
from collections import namedtuple

import numpy as np

from miniautograd import get_array_module, to_cpu

from .lbfgs_history import PairHistory
from .linesearch import Trial, strong_wolfe


class NonFiniteLoss(ArithmeticError):
    """The objective returned NaN or infinity; the optimiser stayed at the last finite point."""


# One call of fn: x, loss (a float), grad (x's dtype), terms ({name: float} or None), all finite?
_Evaluation = namedtuple("_Evaluation", "x loss grad terms finite")


class _Optimizer:
    """What both optimisers share: the current point, counting, evaluation, and state dicts."""

    kind = None          # "lbfgs" or "adam": stored in the state dict, checked on loading
    settings = ()        # names of the hyperparameters that the state dict carries

    def __init__(self, x0, fn):
        if not hasattr(x0, "dtype") or x0.dtype.kind != "f":
            raise TypeError(f"{type(self).__name__}: x0 must be a float NumPy or CuPy array, got "
                            f"{getattr(x0, 'dtype', type(x0).__name__)}")
        self.xp = get_array_module(x0)
        self.x = self.xp.array(x0, copy=True)
        self.fn = fn
        self.loss, self.grad, self.terms = None, None, None     # at x, once evaluated
        self.iteration, self.n_evals = 0, 0
        self.converged = False                 # L-BFGS sets it when no step can lower f

    def _evaluate(self, x):
        """Call fn at x -> an _Evaluation (nothing of the optimiser's point changes)."""
        loss, grad, *terms = self.fn(x)
        self.n_evals += 1
        grad = self.xp.array(grad, dtype=self.x.dtype)     # a copy: fn may reuse its buffer
        if grad.shape != x.shape or len(terms) > 1:
            raise ValueError(f"{type(self).__name__}: fn must return (loss, grad) or (loss, "
                             f"grad, terms) with grad of x's shape {x.shape}; got "
                             f"{2 + len(terms)} values, grad of shape {grad.shape}")
        terms = None if not terms or terms[0] is None else {str(k): float(v)
                                                             for k, v in terms[0].items()}
        finite = math.isfinite(float(loss)) and bool(self.xp.isfinite(grad).all())
        return _Evaluation(x, float(loss), grad, terms, finite)

    def _move_to(self, e):
        """Accept the evaluated point e: it becomes the current x, loss, grad and terms."""
        self.x, self.loss, self.grad, self.terms = e.x, e.loss, e.grad, e.terms

    def _ensure_evaluated(self):
        """Evaluate fn at the starting point on the first step."""
        if self.grad is None:
            e = self._evaluate(self.x)
            if not e.finite:
                raise self._non_finite(e.loss)
            self._move_to(e)

    def _non_finite(self, loss):
        return NonFiniteLoss(
            f"{type(self).__name__}: the loss or its gradient became non-finite (loss {loss}) "
            f"at iteration {self.iteration + 1}; the last finite point is kept in opt.x")

    def state_dict(self):
        """Everything needed to continue exactly: plain numbers, strings and NumPy arrays (the
        terms as ``term_names`` and ``term_values``)."""
        state = {"optimizer": self.kind, "x": to_cpu(self.x), "iteration": self.iteration,
                 "n_evals": self.n_evals}
        state.update({name: getattr(self, name) for name in self.settings})
        if self.grad is not None:                    # absent before the first evaluation
            state.update(loss=self.loss, grad=to_cpu(self.grad))
        if self.terms is not None:                   # absent if fn gives no terms
            state.update(term_names=np.array(list(self.terms), dtype=str),
                         term_values=np.array(list(self.terms.values()), dtype=np.float64))
        return state

    def load_state_dict(self, state):
        """Restore a ``state_dict`` (also one read back by np.load); arrays go to x's device.
        The hyperparameters saved in ``state`` replace the constructor's."""
        if str(state["optimizer"]) != self.kind:
            raise ValueError(f"{type(self).__name__}: this state dict belongs to a "
                             f"'{state['optimizer']}' optimiser, not '{self.kind}'")
        x = self._to_device(state["x"])
        if x.shape != self.x.shape:
            raise ValueError(f"{type(self).__name__}: the saved x has shape {x.shape}, "
                             f"but this optimiser's x has shape {self.x.shape}")
        self.x = x
        self.iteration, self.n_evals = int(state["iteration"]), int(state["n_evals"])
        for name in self.settings:
            setattr(self, name, type(getattr(self, name))(state[name]))
        has_grad = "grad" in state
        self.loss = float(state["loss"]) if has_grad else None
        self.grad = self._to_device(state["grad"]) if has_grad else None
        names, values = state.get("term_names"), state.get("term_values")
        self.terms = None if names is None else dict(zip(map(str, names), map(float, values)))

    def _to_device(self, a):
        return self.xp.array(np.asarray(a), dtype=self.x.dtype)


# ------------------------------------------------------------------------------------- L-BFGS
class LBFGS(_Optimizer):
    """Limited-memory BFGS with a strong-Wolfe line search (Nocedal & Wright, Alg. 7.4, 3.5, 3.6).

    One step: choose the direction ``d = -H g``, where H approximates the inverse Hessian from
    the last ``history`` pairs ``s_i = x_{i+1} - x_i``, ``y_i = g_{i+1} - g_i``; search along d for
    a step length meeting the strong Wolfe conditions (linesearch.py; c1 = 1e-4, c2 = 0.9), then
    move and remember the new pair. A pair is skipped when ``s^T y <= tiny * y^T y``: without
    positive curvature it would make H indefinite. If the search finds no decrease, the history is
    dropped and steepest descent is tried; if that fails too, ``converged`` becomes True and
    later steps only count. Without history the first trial step is ``a = min(1, 1/|g|)``, else 1.
    ``half_history``: keep the pairs as float16 (lbfgs_history.py), for half their memory.
    """

    kind = "lbfgs"
    settings = ("history", "c1", "c2", "max_evals", "tiny", "converged")

    def __init__(self, x0, fn, *, history=10, c1=1e-4, c2=0.9, max_evals=25, tiny=1e-10,
                 half_history=False):
        super().__init__(x0, fn)
        if int(history) < 1 or not 0 < c1 < c2 < 1 or int(max_evals) < 1:
            raise ValueError(f"LBFGS: need history >= 1, 0 < c1 < c2 < 1 and max_evals >= 1, "
                             f"got history={history}, c1={c1}, c2={c2}, max_evals={max_evals}")
        self.history, self.c1, self.c2 = int(history), float(c1), float(c2)
        self.max_evals, self.tiny = int(max_evals), float(tiny)
        self.pairs = PairHistory(half=half_history)    # the (s_i, y_i, rho_i), oldest first
        self._latest = None                            # the line search's latest evaluation

    def step(self):
        """One iteration (one line search); returns the loss at the new ``x``."""
        self._ensure_evaluated()
        if not self.converged:
            moved = self._try_step()
            if not moved and len(self.pairs):
                self.pairs.clear()                     # the history led nowhere: go downhill
                moved = self._try_step()
            self.converged = not moved
        self.iteration += 1
        return self.loss

    def _direction(self, g):
        """d = -H g by the two-loop recursion, without ever forming H.

        q = g;   for i = newest..oldest:  alpha_i = rho_i s_i^T q;   q -= alpha_i y_i
        r = gamma q,  gamma = s^T y / y^T y of the newest pair (H0 = gamma I, N&W eq. 7.20)
        for i = oldest..newest:  beta = rho_i y_i^T r;   r += (alpha_i - beta) s_i
        Then r = H g; here q starts as -g, so r comes out as d = -H g. With no pairs, d = -g.
        The alpha_i stay on the device (0-d arrays): no host round trip.
        """
        xp = self.xp
        q = -g
        alphas = []
        for s, y, rho in self.pairs.pairs(newest_first=True):
            alpha = rho * xp.vdot(s, q)
            q -= alpha * y
            alphas.append(alpha)
        if len(self.pairs):
            q *= self.pairs.gamma()
        for (s, y, rho), alpha in zip(self.pairs.pairs(), reversed(alphas)):
            beta = rho * xp.vdot(y, q)
            q += (alpha - beta) * s
        return q

    def _try_step(self):
        """Search along -H g (linesearch.strong_wolfe); on success move there, store the new pair
        and return True. NonFiniteLoss if the search ended on a non-finite value."""
        g = self.grad
        d = self._direction(g)
        gtd = float(self.xp.vdot(g, d))
        if not gtd < 0:                        # rounding made -H g point uphill: steepest descent
            self.pairs.clear()
            d, gtd = -g, -float(self.xp.vdot(g, g))
            if gtd == 0:
                return False                   # g = 0: a stationary point
        # without pairs d = -g, and |g| = sqrt(-g^T d)
        a0 = 1.0 if len(self.pairs) else min(1.0, 1.0 / math.sqrt(-gtd))
        trial = strong_wolfe(lambda a: self._probe(d, a), Trial(0.0, self.loss, gtd, None), a0,
                             c1=self.c1, c2=self.c2, max_evals=self.max_evals)
        if trial.a == 0:                       # no step lowered f; the search probed at least once
            if not self._latest.finite:        # and even its smallest step blew up
                raise self._non_finite(self._latest.loss)
            return False
        self._remember(trial.at.x - self.x, trial.at.grad - g)
        self._move_to(trial.at)
        return True

    def _probe(self, d, a):
        """phi(a) = f(x + a d) and phi'(a) = g(x + a d)^T d as a Trial carrying the evaluation
        (kept as _latest too); a non-finite value reads as f = inf ("too far")."""
        e = self._latest = self._evaluate(self.x + a * d)
        if not e.finite:
            return Trial(a, math.inf, math.nan, None)
        return Trial(a, e.loss, float(self.xp.vdot(e.grad, d)), e)

    def _remember(self, s, y):
        """Append the pair (s, y) unless its curvature s^T y is not clearly positive; keep the
        newest ``history`` pairs."""
        if self.pairs.add(s, y, tiny=self.tiny) and len(self.pairs) > self.history:
            self.pairs.drop_oldest()

    def state_dict(self):
        """The base state plus the pairs: s and y stacked as (k, *x.shape) arrays (float16 with
        half_history), their scales and rho (k,) (lbfgs_history.PairHistory.state_dict)."""
        state = super().state_dict()
        state.update(self.pairs.state_dict(self.x))
        return state

    def load_state_dict(self, state):
        """The base state and the pairs, in the precision they were saved in."""
        super().load_state_dict(state)
        self.pairs.load_state_dict(state, self.xp, self.x.dtype)


# --------------------------------------------------------------------------------------- Adam
class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction. With g the gradient at x and t = 1, 2, ...:

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2          (moment estimates)
        x = x - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    Each step evaluates fn once, at the new point (the gradient for the next step), so ``step``
    returns the loss at the new x like L-BFGS does. ``lr`` is in x's units per step (for an image
    in 0..255 values of 1 to 10 are usual); the default 1e-3 is Kingma & Ba's.
    """

    kind = "adam"
    settings = ("lr", "beta1", "beta2", "eps")

    def __init__(self, x0, fn, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(x0, fn)
        beta1, beta2 = betas
        if not (math.isfinite(lr) and lr > 0 and 0 <= beta1 < 1 and 0 <= beta2 < 1 and eps >= 0):
            raise ValueError(f"Adam: need lr > 0, 0 <= betas < 1 and eps >= 0, got lr={lr}, "
                             f"betas={betas}, eps={eps}")
        self.lr, self.eps = float(lr), float(eps)
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.m = self.xp.zeros_like(self.x)          # first moment (mean of g)
        self.v = self.xp.zeros_like(self.x)          # second moment (mean of g^2)

    def step(self):
        """One update; returns the loss at the new ``x``. On a non-finite loss nothing changes."""
        self._ensure_evaluated()
        t, g = self.iteration + 1, self.grad
        m = self.beta1 * self.m + (1.0 - self.beta1) * g
        v = self.beta2 * self.v + (1.0 - self.beta2) * (g * g)
        m_hat = m * (1.0 / (1.0 - self.beta1 ** t))
        v_hat = v * (1.0 / (1.0 - self.beta2 ** t))
        e = self._evaluate(self.x - self.lr * m_hat / (self.xp.sqrt(v_hat) + self.eps))
        if not e.finite:
            raise self._non_finite(e.loss)
        self._move_to(e)
        self.m, self.v, self.iteration = m, v, t
        return self.loss

    def state_dict(self):
        """The base state plus the moments m and v (the step count t is ``iteration``)."""
        state = super().state_dict()
        state.update(m=to_cpu(self.m), v=to_cpu(self.v))
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.m, self.v = self._to_device(state["m"]), self._to_device(state["v"])


# ------------------------------------------------------------------------------------- memory
def optimizer_state_bytes(numel, *, optimizer="lbfgs", history=10, itemsize=4,
                          half_history=False):
    """Bytes the optimiser keeps for an image of ``numel`` elements (plan.py counts them).

    L-BFGS: ``history`` pairs (s, y), of 2 bytes per value with ``half_history``, plus 4 working
    vectors (x, gradient, direction, previous gradient). Adam: the two moments m, v plus x and
    the gradient.
    """
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer_state_bytes: optimizer must be 'lbfgs' or 'adam', not "
                         f"{optimizer!r}")
    if optimizer == "adam":
        return 4 * numel * itemsize
    return 2 * history * numel * (2 if half_history else itemsize) + 4 * numel * itemsize
