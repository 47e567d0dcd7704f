"""minivgg.optim and linesearch: L-BFGS against SciPy's L-BFGS-B, the strong-Wolfe search, Adam,
the loss terms of the accepted point, exact resumption, non-finite losses.

Tolerances on iterative results are derived from the problem (its conditioning, where the loss
stops resolving a step), never from the trajectory of one CPU: another BLAS sums dot products in
another order and the last digits of every step differ (AVX-512 vs AVX2, cuBLAS)."""
import math

import numpy as np
import pytest
import scipy.optimize as so

from miniautograd import get_array_module, to_cpu

from minivgg.linesearch import Trial, strong_wolfe
from minivgg.optim import LBFGS, Adam, NonFiniteLoss

EPS = np.finfo(np.float64).eps


def rosenbrock(x):
    """The Rosenbrock function in float64 whatever x's dtype; the gradient in x's dtype."""
    x64 = np.asarray(x, dtype=np.float64)
    return float(so.rosen(x64)), so.rosen_der(x64).astype(x.dtype)


def rosen_start(n, dtype=np.float64):
    x0 = np.full(n, -1.2, dtype=dtype)
    x0[1::2] = 1.0
    return x0


def make_quadratic(shape, seed=0):
    """f(x) = 1/2 x^T A x - b^T x on x of any shape (flattened), A SPD with condition ~100."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = q @ np.diag(np.geomspace(1.0, 100.0, n)) @ q.T
    b = rng.normal(size=n)

    def fn(x):
        xp = get_array_module(x)
        flat = x.reshape(-1)                                      # (shape) -> (n,)
        g = xp.asarray(A) @ flat - xp.asarray(b)
        return float(0.5 * flat @ (g - xp.asarray(b))), g.reshape(x.shape)   # (n,) -> (shape)
    return fn, np.linalg.solve(A, b).reshape(shape)


def resolution(fn, minimiser, smallest_eigenvalue=1.0):
    """How near the minimiser a descent method can get on a quadratic in float64: a step that
    moves by delta along the flattest direction lowers f by 1/2 lambda delta^2, which the loss
    cannot resolve below its rounding, eps |f*|. So delta = sqrt(2 eps |f*| / lambda_min)."""
    return math.sqrt(2 * EPS * abs(fn(minimiser)[0]) / smallest_eigenvalue)


def run(opt, steps, gtol=None):
    for _ in range(steps):
        opt.step()
        if opt.converged or (gtol and float(abs(opt.grad).max()) < gtol):
            break
    return opt


# ------------------------------------------------------------------------ L-BFGS vs SciPy
@pytest.mark.parametrize("n", [2, 5, 10])
def test_lbfgs_matches_scipy_on_rosenbrock(n):
    x0 = rosen_start(n)
    ref = so.minimize(rosenbrock, x0, jac=True, method="L-BFGS-B",
                      options=dict(maxcor=10, gtol=1e-9, ftol=0.0))
    opt = run(LBFGS(x0, rosenbrock, history=10), 500, gtol=1e-9)
    # Both stop at a gradient below 1e-9 per entry; the Hessian's smallest eigenvalue at the
    # minimiser is 0.4, so both are within sqrt(n) 1e-9 / 0.4 < 1e-8 of it: 1e-6 has room to spare.
    np.testing.assert_allclose(opt.x, ref.x, atol=1e-6)
    np.testing.assert_allclose(opt.x, np.ones(n), atol=1e-6)
    # the same ballpark: another CPU's rounding shifts the counts by a few iterations
    assert 0.5 * ref.nit - 5 <= opt.iteration <= 1.5 * ref.nit + 5
    assert opt.n_evals <= 2 * ref.nfev + 10
    assert opt.loss == pytest.approx(rosenbrock(opt.x)[0])


def test_lbfgs_on_a_convex_quadratic_of_any_shape():
    fn, minimiser = make_quadratic((3, 4))
    x0 = np.zeros((3, 4))
    ref = so.minimize(lambda v: fn(v.reshape(3, 4))[:1] + (fn(v.reshape(3, 4))[1].ravel(),),
                      x0.ravel(), jac=True, method="L-BFGS-B", options=dict(gtol=1e-10, ftol=0.0))
    opt = run(LBFGS(x0, fn), 200, gtol=1e-10)
    assert opt.x.shape == (3, 4)
    # No step can lower f any more once within ~resolution (2.4e-8 here) of the minimiser, and
    # where exactly L-BFGS stops depends on rounding: allow 4 resolutions (f's own rounding is a
    # few eps |f*|). SciPy stops by the same limit; 1e-5 is far above both.
    np.testing.assert_allclose(opt.x, minimiser, atol=4 * resolution(fn, minimiser))
    np.testing.assert_allclose(opt.x.ravel(), ref.x, atol=1e-5)
    assert opt.iteration <= 1.5 * ref.nit + 5


def test_lbfgs_in_float32_stays_float32_and_converges():
    opt = LBFGS(rosen_start(6, np.float32), rosenbrock)
    losses = [opt.step() for _ in range(150)]         # converged after ~55 here: room for others
    assert opt.x.dtype == np.float32 and opt.grad.dtype == np.float32
    # float32 steps reach the minimiser up to cond(H) * eps32 = 3400 * 1.2e-7 = 4e-4 (the valley)
    np.testing.assert_allclose(opt.x, 1.0, atol=1e-3)
    assert all(b <= a for a, b in zip(losses, losses[1:]))           # a descent method


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lbfgs_with_half_history_converges_like_full(dtype):
    # float16 pairs only change how well H approximates the inverse Hessian: Rosenbrock's
    # minimiser is reached to the same tolerance as in test_lbfgs_in_float32_stays_float32...,
    # within twice the iterations the full history needs (here 50-53 for both).
    full = run(LBFGS(rosen_start(6, dtype), rosenbrock), 300, gtol=1e-5)
    half = run(LBFGS(rosen_start(6, dtype), rosenbrock, half_history=True), 300, gtol=1e-5)
    np.testing.assert_allclose(half.x, 1.0, atol=1e-3)
    assert half.iteration <= 2 * full.iteration and half.x.dtype == dtype


def test_lbfgs_steps_satisfy_the_strong_wolfe_conditions():
    calls = []

    def fn(x):
        calls.append(x.copy())
        return rosenbrock(x)
    opt = LBFGS(rosen_start(4), fn)
    opt.step()
    for _ in range(10):
        x, loss, g = opt.x.copy(), opt.loss, opt.grad.copy()
        opt.step()
        s = opt.x - x                       # the step taken: a * d, up to eps |x| per entry
        assert opt.loss <= loss + 1e-4 * float(g @ s) + rounding(g, x, s)      # sufficient decrease
        assert abs(float(opt.grad @ s)) <= 0.9 * abs(float(g @ s)) + rounding(opt.grad, x, s)


def rounding(g, x, s):
    """A bound on |g^T s - a g^T d| when s = (x + a d) - x is rounded: eps (|x| + |s|) per entry."""
    return 2 * EPS * float(np.abs(g) @ (np.abs(x) + np.abs(s)))


def test_curvature_pairs_with_non_positive_s_y_are_skipped():
    opt = LBFGS(np.zeros(3), lambda x: (0.0, np.zeros(3)))
    opt._remember(np.array([1.0, 0, 0]), np.array([-1.0, 0, 0]))      # s^T y < 0
    opt._remember(np.array([1.0, 0, 0]), np.array([0.0, 0, 0]))       # y = 0
    assert len(opt.pairs) == 0
    opt._remember(np.array([1.0, 0, 0]), np.array([2.0, 0, 0]))
    assert len(opt.pairs) == 1 and opt.pairs.rho == [0.5]


@pytest.mark.parametrize("half", [False, True], ids=["full", "half"])
def test_two_loop_recursion_equals_the_bfgs_inverse_hessian(half):
    # With pairs from a quadratic, the two-loop result must equal H g for the explicitly built
    # BFGS inverse: H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T, from H0 = gamma I.
    # With half_history, H is built from the rounded pairs, which are what L-BFGS then uses.
    rng = np.random.default_rng(1)
    opt = LBFGS(np.zeros(5), lambda x: (0.0, x), history=3, half_history=half)
    A = np.diag([1.0, 2.0, 3.0, 5.0, 8.0])
    for _ in range(4):
        s = rng.normal(size=5)
        opt._remember(s, A @ s)
    pairs = [(s.astype(np.float64), y.astype(np.float64)) for s, y, _ in opt.pairs.pairs()]
    assert len(pairs) == 3                                             # the oldest was dropped
    s, y = pairs[-1]
    H = float(s @ y / (y @ y)) * np.eye(5)                             # gamma I
    for s, y in pairs:
        rho = 1.0 / float(s @ y)
        V = np.eye(5) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    g = rng.normal(size=5)
    np.testing.assert_allclose(opt._direction(g), -H @ g, rtol=1e-10)


def test_stationary_point_converges_without_moving():
    opt = LBFGS(np.ones(4), lambda x: (1.0, np.zeros(4)))
    assert opt.step() == 1.0 and opt.converged and opt.iteration == 1
    opt.step()
    np.testing.assert_array_equal(opt.x, 1.0)
    assert opt.iteration == 2 and opt.n_evals == 1


# ------------------------------------------------------------------------- the line search
def parabola(a):
    """phi(a) = (a - 3)^2: minimum at 3, phi(0) = 9, phi'(0) = -6."""
    return Trial(a, (a - 3.0) ** 2, 2.0 * (a - 3.0), f"point {a}")


def test_strong_wolfe_returns_a_step_meeting_both_conditions():
    start, probed = parabola(0.0), []
    trial = strong_wolfe(lambda a: probed.append(a) or parabola(a), start, 0.1, c1=1e-4, c2=0.1)
    assert trial.f <= start.f + 1e-4 * trial.a * start.dg                # sufficient decrease
    assert abs(trial.dg) <= 0.1 * abs(start.dg)                          # flat enough
    assert probed[0] == 0.1 and len(probed) > 1 and trial.at == f"point {trial.a}"


def test_strong_wolfe_gives_back_the_start_when_nothing_decreases():
    def rising(a):                                     # the slope at 0 says down; f goes up
        return Trial(a, 1.0 + a, 1.0, "uphill")
    trial = strong_wolfe(rising, Trial(0.0, 1.0, -1.0, None), 1.0, max_evals=60)
    assert trial.a == 0 and trial.at is None


def test_strong_wolfe_stops_after_max_evals_at_the_best_step_seen():
    calls = []

    def steep(a):                                      # f keeps falling steeply: no Wolfe point
        calls.append(a)
        return Trial(a, -10.0 * a, -10.0, a)
    trial = strong_wolfe(steep, Trial(0.0, 0.0, -10.0, None), 1.0, max_evals=4)
    assert len(calls) == 4 and trial.a == calls[-1] > calls[0]


# ----------------------------------------------------------- the terms of the accepted point
def with_terms(fn, evaluated):
    """fn, also returning terms that name the point; ``evaluated`` collects every x it saw."""
    def wrapped(x):
        evaluated.append(np.array(x))
        loss, g = fn(x)
        return loss, g, {"total": loss, "first": float(x[0]), "last": np.float32(x[-1])}
    return wrapped


@pytest.mark.parametrize("make", [lambda fn: LBFGS(np.zeros(6), fn, max_evals=3),
                                  lambda fn: Adam(np.zeros(6), fn, lr=0.01)],
                         ids=["lbfgs", "adam"])
def test_the_terms_kept_are_those_of_the_accepted_point(make):
    evaluated = []
    opt = make(with_terms(make_quadratic((6,))[0], evaluated))
    not_last = 0
    for _ in range(30):
        loss = opt.step()
        assert opt.terms == {"total": loss, "first": float(opt.x[0]),
                             "last": float(np.float32(opt.x[-1]))}
        assert all(type(v) is float for v in opt.terms.values())
        not_last += not np.array_equal(evaluated[-1], opt.x)
    if isinstance(opt, LBFGS):                   # the search often ended on an earlier trial
        assert not_last > 0


def test_terms_survive_the_state_dict_and_plain_objectives_have_none(tmp_path):
    opt = LBFGS(rosen_start(4), with_terms(rosenbrock, []))
    for _ in range(3):
        opt.step()
    np.savez(tmp_path / "state.npz", **opt.state_dict())
    again = LBFGS(np.zeros(4), rosenbrock)
    again.load_state_dict(np.load(tmp_path / "state.npz"))          # no pickle needed
    assert again.terms == opt.terms
    plain = LBFGS(rosen_start(4), rosenbrock)
    plain.step()
    assert plain.terms is None and "term_names" not in plain.state_dict()
    with pytest.raises(ValueError, match="4 values"):
        LBFGS(np.ones(2), lambda x: (1.0, x, {}, "extra")).step()


# ------------------------------------------------------------------------------- Adam
def test_adam_first_step_is_lr_times_the_sign_of_the_gradient():
    # Bias correction makes m_hat = g and v_hat = g^2 on step 1, so x moves by -lr * g / |g|.
    x0 = np.array([1.0, -2.0, 3.0])
    opt = Adam(x0, lambda x: (float(x @ x), 2 * x * np.array([1.0, 10.0, 0.1])), lr=0.05)
    opt.step()
    np.testing.assert_allclose(opt.x, x0 - 0.05 * np.sign(x0), rtol=1e-6)
    assert opt.loss == pytest.approx(float(opt.x @ opt.x)) and opt.n_evals == 2


def test_adam_minimises_a_quadratic():
    fn, minimiser = make_quadratic((6,), seed=3)
    opt = Adam(np.zeros(6), fn, lr=0.02, betas=(0.9, 0.99))
    start = fn(np.zeros(6))[0]
    run(opt, 3000)
    assert opt.loss < start
    # With a constant lr Adam does not settle on the minimiser: each coordinate moves by about
    # lr * |m_hat| / sqrt(v_hat) <= ~lr per step and keeps circling within that distance of it
    # (x[3] ends 1.2e-3 away on an Intel Xeon, 1e-4 on an AMD EPYC), so the bound is lr itself.
    # The exact arithmetic is checked by test_adam_matches_the_written_update_rule.
    np.testing.assert_allclose(opt.x, minimiser, atol=opt.lr)


def test_adam_matches_the_written_update_rule():
    rng = np.random.default_rng(2)
    c = rng.normal(size=(2, 3))
    fn = lambda x: (float(((x - c) ** 4).sum()), 4 * (x - c) ** 3)   # noqa: E731
    opt = Adam(np.zeros((2, 3)), fn, lr=0.1, betas=(0.8, 0.9), eps=1e-3)
    x, m, v = np.zeros((2, 3)), 0.0, 0.0
    for t in range(1, 6):
        g = fn(x)[1]
        m, v = 0.8 * m + 0.2 * g, 0.9 * v + 0.1 * g * g
        x = x - 0.1 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.9 ** t)) + 1e-3)
        opt.step()
    np.testing.assert_allclose(opt.x, x, rtol=1e-12)
    assert opt.iteration == 5


# ----------------------------------------------------------------------- state round trip
@pytest.mark.parametrize("make", [lambda x0, fn: LBFGS(x0, fn, history=4),
                                  lambda x0, fn: LBFGS(x0, fn, history=4, half_history=True),
                                  lambda x0, fn: Adam(x0, fn, lr=0.01)],
                         ids=["lbfgs", "lbfgs-half", "adam"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_resuming_from_a_saved_state_gives_the_same_trajectory(tmp_path, make, dtype):
    x0 = rosen_start(6, dtype)
    straight = make(x0, rosenbrock)
    losses = [straight.step() for _ in range(14)]
    first = make(x0, rosenbrock)
    resumed_losses = [first.step() for _ in range(7)]
    np.savez(tmp_path / "state.npz", **first.state_dict())            # through a file, as stylize
    second = make(np.zeros(6, dtype), rosenbrock)
    second.load_state_dict(np.load(tmp_path / "state.npz"))
    resumed_losses += [second.step() for _ in range(7)]
    assert resumed_losses == losses
    np.testing.assert_array_equal(second.x, straight.x)
    assert (second.iteration, second.n_evals) == (straight.iteration, straight.n_evals)
    assert second.x.dtype == dtype


def test_state_dict_holds_plain_values_and_loads_before_the_first_step():
    opt = LBFGS(np.ones(3), rosenbrock)
    state = opt.state_dict()
    assert "grad" not in state and state["s"].shape == (0, 3)
    opt.step()
    state = opt.state_dict()
    for key, value in state.items():
        assert isinstance(value, (int, float, bool, str, np.ndarray)), key
    other = LBFGS(np.zeros(3), rosenbrock)
    other.load_state_dict(LBFGS(np.full(3, 2.0), rosenbrock).state_dict())
    np.testing.assert_array_equal(other.x, 2.0)
    assert other.grad is None


def test_load_state_dict_refuses_the_wrong_optimiser_or_shape():
    adam = Adam(np.ones(3), rosenbrock)
    with pytest.raises(ValueError, match="adam"):
        LBFGS(np.ones(3), rosenbrock).load_state_dict(adam.state_dict())
    with pytest.raises(ValueError, match="shape"):
        Adam(np.ones(4), rosenbrock).load_state_dict(adam.state_dict())


# ------------------------------------------------------------------- non-finite and errors
def nan_after(k, fn):
    """fn, but NaN from the (k+1)-th call on."""
    calls = [0]

    def wrapped(x):
        calls[0] += 1
        loss, g, *terms = fn(x)
        return (math.nan, g, *terms) if calls[0] > k else (loss, g, *terms)
    return wrapped


@pytest.mark.parametrize("make", [lambda fn: LBFGS(rosen_start(4), fn),
                                  lambda fn: Adam(rosen_start(4), fn, lr=0.01)],
                         ids=["lbfgs", "adam"])
def test_non_finite_loss_raises_and_keeps_the_last_finite_point(make):
    opt = make(nan_after(12, with_terms(rosenbrock, [])))
    with pytest.raises(NonFiniteLoss, match="non-finite"):
        for _ in range(100):
            x, loss, iteration = opt.x.copy(), opt.loss, opt.iteration
            opt.step()
    np.testing.assert_array_equal(opt.x, x)
    assert opt.loss == loss and math.isfinite(opt.loss) and opt.iteration == iteration
    assert opt.terms["first"] == float(x[0])            # the terms of that point
    assert np.isfinite(opt.state_dict()["x"]).all()


def test_non_finite_at_the_start_raises():
    bad_grad = lambda x: (1.0, np.full_like(x, np.inf))                # noqa: E731
    for opt in (LBFGS(np.ones(2), bad_grad), Adam(np.ones(2), bad_grad)):
        with pytest.raises(NonFiniteLoss):
            opt.step()
        assert opt.grad is None and opt.iteration == 0


def test_lbfgs_backs_off_from_steps_that_overflow():
    # f(x) = exp(x) - 2x has its minimum at log 2; far left the slope barely changes, so the
    # quasi-Newton step is huge and lands where f is reported as infinite. The search must shrink.
    blown = [0]

    def fn(x):
        if x[0] > 3.0:
            blown[0] += 1
            return math.inf, np.array([math.inf])
        return float(np.exp(x[0]) - 2 * x[0]), np.exp(x) - 2
    opt = run(LBFGS(np.array([-10.0]), fn), 60, gtol=1e-10)
    assert blown[0] > 0
    assert opt.x[0] == pytest.approx(math.log(2), abs=1e-8)


def test_bad_arguments():
    with pytest.raises(TypeError, match="float"):
        LBFGS(np.arange(3), rosenbrock)
    with pytest.raises(ValueError, match="c1"):
        LBFGS(np.ones(3), rosenbrock, c1=0.95)
    with pytest.raises(ValueError, match="lr"):
        Adam(np.ones(3), rosenbrock, lr=-1.0)
    with pytest.raises(ValueError, match="shape"):
        LBFGS(np.ones(3), lambda x: (1.0, np.ones(4))).step()


# ------------------------------------------------------------------------------ on the GPU
@pytest.mark.parametrize("cls, options", [(LBFGS, {}), (Adam, {"lr": 0.05})])
def test_optimisers_stay_on_the_array_module_of_x0(xp, cls, options):
    fn, minimiser = make_quadratic((2, 5), seed=4)
    on_device = run(cls(xp.zeros((2, 5)), fn, **options), 40)
    on_host = run(cls(np.zeros((2, 5)), fn, **options), 40)
    assert type(on_device.x) is type(xp.zeros(1)) and type(on_device.grad) is type(on_device.x)
    # After 40 steps L-BFGS is at the loss's resolution: each run stops anywhere within ~4 of
    # them of the minimiser, as cuBLAS's and the CPU's rounding decide, so they agree to 8.
    # Adam's two paths differ by rounding only.
    np.testing.assert_allclose(to_cpu(on_device.x), on_host.x, rtol=1e-6,
                               atol=8 * resolution(fn, minimiser))
    state = on_device.state_dict()
    assert isinstance(state["x"], np.ndarray)
    again = cls(xp.zeros((2, 5)), fn, **options)
    again.load_state_dict(state)
    assert type(again.x) is type(on_device.x)
