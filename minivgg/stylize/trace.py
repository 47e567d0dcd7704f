"""``--trace``: watch one iteration run, op by op, forward and then backward.

For the first iteration the objective is evaluated once more on the starting image, and every
Function in its graph is listed: forward in graph order (by generation, a valid order to run them),
each op re-run on its recorded inputs and timed alone; then backward, in exactly the order
``Tensor.backward`` visits the functions (a max-heap on generation), each ``backward`` timed alone.
For each op: its name (and the layer, when the network named its output), input and output shapes,
milliseconds, the bytes of its output (forward) or of the gradients it returns (backward), and the
bytes it keeps for backward (arrays it saved, views of other arrays included).

No global state and no hook in the engine: the graph is read from the tensors (``creator``,
``inputs``, ``generation``) and ``trace_backward`` repeats Tensor.backward's loop with a clock
around each call; a test checks that it gives the same gradient as ``Tensor.backward``.
"""
import heapq
import sys
import time

import miniautograd as ag
from miniautograd.backend import synchronize

MIB = 1024 ** 2


def graph_functions(y):
    """[(function, its output Tensor)] of the graph that made y, by generation (a run order)."""
    seen, found, stack = set(), [], [y]
    while stack:
        t = stack.pop()
        f = t.creator
        if f is None or id(f) in seen:
            continue
        seen.add(id(f))
        found.append((f, t))
        stack.extend(f.inputs)
    return sorted(found, key=lambda pair: pair[0].generation)


def kept_bytes(f):
    """Bytes of the arrays a Function holds for its backward (attributes with .nbytes)."""
    return sum(v.nbytes for v in vars(f).values() if hasattr(v, "nbytes") and hasattr(v, "shape"))


def _shape(s):
    return "x".join(str(n) for n in s) or "()"


def _timed(xp, call):
    synchronize(xp)
    start = time.perf_counter()
    result = call()
    synchronize(xp)
    return result, 1000 * (time.perf_counter() - start)


def trace_forward(y, out):
    """Re-run and time each op of y's graph on its recorded inputs; print one line per op."""
    xp = ag.get_array_module(y.data)
    print(f"{'forward':<10}{'op':<18}{'layer':<10}{'inputs':<30}{'output':<16}{'ms':>8}"
          f"{'out MiB':>9}{'kept MiB':>10}", file=out)
    total_ms = 0.0
    for i, (f, t) in enumerate(graph_functions(y), start=1):
        xs = [x.data for x in f.inputs]
        _, ms = _timed(xp, lambda: f.forward(*xs))
        total_ms += ms
        inputs = ", ".join(_shape(x.shape) for x in f.inputs)
        print(f"{i:<10}{f.name:<18}{t.name or '':<10}{inputs:<30}{_shape(t.shape):<16}{ms:8.2f}"
              f"{t.data.nbytes / MIB:9.2f}{kept_bytes(f) / MIB:10.2f}", file=out)
    return total_ms


def trace_backward(y, leaf, out):
    """Tensor.backward's loop from scalar y, timing each op's backward; returns dL/d(leaf)."""
    xp = ag.get_array_module(y.data)
    print(f"{'backward':<10}{'op':<18}{'layer':<10}{'gy':<16}{'gradients':<30}{'ms':>8}"
          f"{'grad MiB':>9}", file=out)
    outputs = {id(f): t for f, t in graph_functions(y)}
    pending = {y.creator: xp.ones_like(y.data)}
    heap = [(-y.generation, id(y.creator), y.creator)]
    grad, step, total_ms = None, 0, 0.0
    while heap:
        _, _, f = heapq.heappop(heap)
        gy = pending.pop(f)
        gxs, ms = _timed(xp, lambda: f.backward(gy))
        step, total_ms = step + 1, total_ms + ms
        shapes = ", ".join("-" if g is None else _shape(g.shape) for g in gxs)
        nbytes = sum(g.nbytes for g in gxs if g is not None)
        print(f"{step:<10}{f.name:<18}{outputs[id(f)].name or '':<10}{_shape(gy.shape):<16}"
              f"{shapes:<30}{ms:8.2f}{nbytes / MIB:9.2f}", file=out)
        for x, gx in zip(f.inputs, gxs):
            if gx is None or not x.requires_grad:
                continue
            if x is leaf:
                grad = gx if grad is None else grad + gx
            elif x.creator is not None and x.creator in pending:
                pending[x.creator] = pending[x.creator] + gx
            elif x.creator is not None:
                pending[x.creator] = gx
                heapq.heappush(heap, (-x.generation, id(x.creator), x.creator))
    return grad, total_ms


def named_responses(objective, x):
    """The net's responses to x at every layer down to the deepest one used, each Tensor named.

    One forward pass, the same one the objective makes; naming the outputs lets the trace print
    the layer (conv1_1, relu1_1, ...) beside each op.
    """
    names = objective.net.layer_names
    deepest = max(names.index(layer) for layer in objective.layers)
    out = objective.net(x, names[:deepest + 1])
    for name, t in out.items():
        t.name = name
    return out


def print_trace(objective, x, *, out=None):
    """Trace one evaluation of ``objective`` (losses.Objective) at the image array x.

    Prints the forward and the backward tables and their totals; returns dL/dx.
    """
    out = out or sys.stdout
    xt = ag.Tensor(x, requires_grad=True, name="image")
    y = objective.terms(xt, named_responses(objective, xt))["total"]
    print(f"trace of one iteration at {_shape(x.shape)}: forward ({len(graph_functions(y))} ops, "
          "each re-run alone on its recorded inputs)", file=out)
    forward_ms = trace_forward(y, out)
    print(f"forward total {forward_ms:.1f} ms\n", file=out)
    grad, backward_ms = trace_backward(y, xt, out)
    print(f"backward total {backward_ms:.1f} ms; loss {y.item():.6g}\n", file=out)
    return grad
