"""A walk through one forward and one backward pass of a tiny conv net, printed step by step.

    python examples/walkthrough.py

The net is the style-transfer pipeline in miniature: an image x goes through conv2d -> relu ->
max_pool2d, the Gram matrix of the pooled features is compared with a target Gram matrix A, and
the loss is

    L = sum((G / M - A)^2),    G = gram(F), M = the pooled map's H*W positions.

The script prints every step's shapes, backpropagates from L, and checks one entry of dL/dW and
one of dL/dx against central finite differences, (L(w + eps) - L(w - eps)) / (2 eps): the two
numbers it prints must agree to about 1e-8. Everything is float64 (finite differences need the
precision) and NumPy; it runs in well under a second. Exit status: 0 if both checks pass, 1 if not.

Relies on miniautograd only: Tensor, conv2d, relu, max_pool2d, gram, sum_squared_error.
Notation: N batch, C channels, H, W height and width, O filters, KH, KW kernel, OH, OW output.
"""
import sys

import numpy as np

import miniautograd as ag

N, C, H, W = 1, 3, 6, 8          # non-square on purpose: a swapped H and W would show
O, KH, KW = 4, 3, 3
EPS = 1e-6                        # finite-difference step
TOLERANCE = 1e-6                  # largest relative error accepted


def make_inputs(seed=0):
    """The image x (N, C, H, W), the filters Wt (O, C, KH, KW), bias b (O,), target A (N, O, O)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    Wt = rng.standard_normal((O, C, KH, KW)) / np.sqrt(C * KH * KW)
    b = 0.1 * rng.standard_normal(O)
    A = 0.1 * rng.standard_normal((N, O, O))
    A = A + A.transpose(0, 2, 1)              # (N, O, O) -> (N, O, O): a Gram matrix is symmetric
    return x, Wt, b, A


def forward(x, Wt, b, A, *, show=False):
    """L for Tensors (or arrays) x, Wt, b and a constant target A; prints each step if show."""
    steps = []
    y = ag.conv2d(x, Wt, b, pad=1)            # (N, C, H, W) -> (N, O, H, W): pad 1 keeps the size
    steps.append(("conv2d 3x3, pad 1", x, y))
    r = ag.relu(y)
    steps.append(("relu", y, r))
    F = ag.max_pool2d(r, 2)                   # (N, O, H, W) -> (N, O, H/2, W/2)
    steps.append(("max_pool2d 2x2", r, F))
    G = ag.gram(F)                            # (N, O, H/2, W/2) -> (N, O, O)
    steps.append(("gram", F, G))
    M = F.shape[2] * F.shape[3]
    L = ag.sum_squared_error(G / float(M), A)
    steps.append(("sum((G/M - A)^2)", G, L))
    if show:
        for name, a, out in steps:
            print(f"  {name:<20} {str(tuple(a.shape)):<14} -> {tuple(out.shape)}")
    return L


def backward_order(L):
    """The Functions of L's graph in the order backward() calls them: deepest generation first."""
    seen, stack = {}, [L.creator]
    while stack:
        f = stack.pop()
        if f is not None and id(f) not in seen:
            seen[id(f)] = f
            stack.extend(t.creator for t in f.inputs)
    return sorted(seen.values(), key=lambda f: -f.generation)


def finite_difference(x, Wt, b, A, which, index):
    """Central difference of L with respect to entry ``index`` of x (which='x') or Wt ('W')."""
    def loss(delta):
        xs = {"x": x.copy(), "W": Wt.copy()}
        xs[which][index] += delta
        return forward(xs["x"], xs["W"], b, A).item()
    return (loss(EPS) - loss(-EPS)) / (2 * EPS)


def check(name, analytic, numeric):
    """Print both numbers and their relative error; True when it is within TOLERANCE."""
    error = abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-12)
    verdict = "ok" if error <= TOLERANCE else "MISMATCH"
    print(f"  {name:<22} backprop {analytic: .10f}   finite diff {numeric: .10f}   "
          f"relative error {error:.1e}  {verdict}")
    return error <= TOLERANCE


def main():
    x, Wt, b, A = make_inputs()
    xt = ag.Tensor(x, requires_grad=True, name="x")
    Wtt = ag.Tensor(Wt, requires_grad=True, name="W")
    bt = ag.Tensor(b, name="b")               # frozen: no gradient is computed for it
    print("1. forward: each op, its input shape -> output shape")
    L = forward(xt, Wtt, bt, A, show=True)
    print(f"  loss L = {L.item():.6f}")
    print("2. backward: L.backward() calls each op's backward, deepest generation first")
    print("  " + " -> ".join(f"{f.name}[{f.generation}]" for f in backward_order(L)))
    L.backward()
    print(f"  x.grad {xt.grad.shape}, W.grad {Wtt.grad.shape}, b.grad {bt.grad} (b is frozen)")
    print(f"3. one entry of each gradient against finite differences (eps = {EPS:g})")
    iw, ix = (2, 1, 0, 2), (0, 1, 3, 5)
    ok = check(f"dL/dW{list(iw)}", Wtt.grad[iw], finite_difference(x, Wt, b, A, "W", iw))
    ok &= check(f"dL/dx{list(ix)}", xt.grad[ix], finite_difference(x, Wt, b, A, "x", ix))
    print("all gradients agree" if ok else "a gradient disagrees with finite differences")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
