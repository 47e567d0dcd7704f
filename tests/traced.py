"""The memory a call allocates, as tracemalloc sees it (NumPy reports its arrays to it).

Shared by the tests that hold an op's ``*_buffers`` function, or the plan's model, against what
the code really allocates.
"""
import tracemalloc


def traced_peak(run):
    """(result, peak bytes newly allocated while run() ran), NumPy's buffers included."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = run()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def ufunc_slack(itemsize):
    """Bytes allowed beyond the modelled arrays: NumPy's ufuncs may buffer strided operands (at
    most 8192 elements each, 3 operands), and Python objects take a little."""
    return 3 * 8192 * itemsize + 4096
