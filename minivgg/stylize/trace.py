"""``--trace``: watch one iteration run, op by op, forward and then backward.

For the first iteration the objective is evaluated once more on the starting image, and every
Function in its graph is listed: forward in graph order (by generation, a valid order to run them),
each op re-run on the arrays the re-run before it produced and timed alone; then backward, in
exactly the order ``Tensor.backward`` visits the functions (a max-heap on generation), each
``backward`` timed through the ``hook`` that Tensor.backward offers. For each op: its name (and the
layer, when the network named its output), input and output shapes, milliseconds, the bytes of its
output (forward) or of the gradients it returns (backward), and the bytes it keeps for backward
(arrays it saved, views of other arrays included).

No global state: the graph is read from the tensors (``creator``, ``inputs``, ``generation``).
"""
import sys
import time

import miniautograd as ag
from miniautograd.backend import synchronize

MIB = 1024 ** 2


def graph_functions(y):
    """The Functions of the graph that made y, by generation (an order in which they can run)."""
    seen, found, stack = set(), [], [y.creator]
    while stack:
        f = stack.pop()
        if f is None or id(f) in seen:
            continue
        seen.add(id(f))
        found.append(f)
        stack.extend(x.creator for x in f.inputs)
    return sorted(found, key=lambda f: f.generation)


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


def trace_forward(y, layer_of, out):
    """Re-run and time each op of y's graph, leaves first; print one line per op.

    The graph keeps only leaf inputs' arrays, so each op is fed what the re-run of the op that
    made its input returned. ``layer_of`` maps id(function) to the layer name of its output.
    """
    xp = ag.get_array_module(y.data)
    print(f"{'forward':<10}{'op':<18}{'layer':<10}{'inputs':<30}{'output':<16}{'ms':>8}"
          f"{'out MiB':>9}{'kept MiB':>10}", file=out)
    outputs, total_ms = {}, 0.0
    for i, f in enumerate(graph_functions(y), start=1):
        xs = [x.data if x.creator is None else outputs[id(x.creator)] for x in f.inputs]
        result, ms = _timed(xp, lambda: f.forward(*xs))
        outputs[id(f)] = result
        total_ms += ms
        inputs = ", ".join(_shape(x.shape) for x in f.inputs)
        print(f"{i:<10}{f.name:<18}{layer_of.get(id(f), ''):<10}{inputs:<30}"
              f"{_shape(result.shape):<16}{ms:8.2f}{result.nbytes / MIB:9.2f}"
              f"{kept_bytes(f) / MIB:10.2f}", file=out)
    return total_ms


def trace_backward(y, layer_of, out):
    """y.backward(), timing and printing each op's backward; returns the total milliseconds."""
    xp = ag.get_array_module(y.data)
    print(f"{'backward':<10}{'op':<18}{'layer':<10}{'gy':<16}{'gradients':<30}{'ms':>8}"
          f"{'grad MiB':>9}", file=out)
    steps = []

    def timed_backward(f, gy):
        gxs, ms = _timed(xp, lambda: f.backward(gy))
        steps.append(ms)
        shapes = ", ".join("-" if g is None else _shape(g.shape) for g in gxs)
        nbytes = sum(g.nbytes for g in gxs if g is not None)
        print(f"{len(steps):<10}{f.name:<18}{layer_of.get(id(f), ''):<10}{_shape(gy.shape):<16}"
              f"{shapes:<30}{ms:8.2f}{nbytes / MIB:9.2f}", file=out)
        return gxs

    y.backward(hook=timed_backward)
    return sum(steps)


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
    responses = named_responses(objective, xt)
    layer_of = {id(t.creator): name for name, t in responses.items()}
    y = objective.terms(xt, responses)["total"]
    del responses                      # let the arrays go, as in a normal iteration
    print(f"trace of one iteration at {_shape(x.shape)}: forward ({len(graph_functions(y))} ops, "
          "each re-run alone)", file=out)
    forward_ms = trace_forward(y, layer_of, out)
    print(f"forward total {forward_ms:.1f} ms\n", file=out)
    backward_ms = trace_backward(y, layer_of, out)
    print(f"backward total {backward_ms:.1f} ms; loss {y.item():.6g}\n", file=out)
    return xt.grad
