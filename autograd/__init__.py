"""miniautograd: a from-scratch autograd engine on NumPy (CPU) and CuPy (GPU).

Installed from the folder ``autograd/`` under the name ``miniautograd`` (``autograd`` is the HIPS
package's name on PyPI). Import it as ``import miniautograd as ag``.

Reading order (each file opens with what it teaches):
  1. tensor.py    - Tensor, Function, and backpropagation over the graph with a heap on generation
  2. arith.py     - the simplest ops: + - * / ** sum mean reshape transpose @, and broadcasting
  3. backend.py   - how one code base runs on NumPy and CuPy: the device follows the data
"""
if __name__ != "miniautograd":
    raise ImportError(
        f"this engine must be imported as 'miniautograd', not '{__name__}': install it with "
        "`pip install -e .` from the project root and write `import miniautograd`; the name "
        "'autograd' belongs to the HIPS autograd package on PyPI")

from .backend import get_array_module, gpu_available, require_gpu, to_cpu, to_gpu  # noqa: E402
from .tensor import Function, Tensor, as_tensor  # noqa: E402
from .arith import (add, div, matmul, mean, mul, neg, power, reshape, sub,  # noqa: E402
                    sum, sum_to, transpose)
