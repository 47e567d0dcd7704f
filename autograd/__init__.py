"""miniautograd: a from-scratch autograd engine on NumPy (CPU) and CuPy (GPU).

Installed from the folder ``autograd/`` under the name ``miniautograd`` (``autograd`` is the HIPS
package's name on PyPI). Import it as ``import miniautograd as ag``.

Reading order: README.md's "Reading the source" is the source of it; this list repeats the
engine's part for readers of the installed package (tests/test_docs.py checks that they agree).
Each file opens with what it teaches.
  1. tensor.py     - Tensor, Function, and backpropagation over the graph with a heap on generation
  2. activation.py - relu, one whole op: forward, backward, and only a boolean mask kept for it
  3. arith.py      - + - * / ** sum mean reshape transpose @, and broadcasting undone in backward
  4. gradcheck/__init__.py - finite differences against every backward
                     (python -m miniautograd.gradcheck checks every op)
  5. backend.py    - how one code base runs on NumPy and CuPy: the device follows the data
  6. im2col.py     - sliding windows as strided-slice copies, and col2im, their adjoint
  7. conv.py       - convolution as a matrix product and its backward passes: the reference
  8. shifted.py    - the same convolution copying the kernel rows only, its columns as views
  9. winograd.py   - the same 3x3 convolution with 2.25x fewer multiplications
 10. winograd4.py  - 4x fewer with 6x6 tiles, the transforms as two matrix products
 11. conv_fast.py  - conv2d as called: im2col, shifted or Winograd per layer, gx as a conv of gy
 12. pooling.py    - average and max pooling, looped over the window offsets
 13. gram.py       - the Gram matrix G = F F^T of style transfer, backward (gG + gG^T) F
 14. sqrtm.py      - the symmetric square root of a covariance, backward by a Sylvester equation
 15. reductions.py - sum_squared_error and total_variation: one hand-derived node per loss
The derivations are in docs/ (one page per topic) and in each backward's docstring.
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
from .conv_fast import conv2d  # noqa: E402
from .winograd import TransformedKernels  # noqa: E402
from .pooling import avg_pool2d, max_pool2d  # noqa: E402
from .activation import relu  # noqa: E402
from .gram import gram  # noqa: E402
from .sqrtm import cast, sqrtm_psd  # noqa: E402
from .reductions import sum_squared_error, total_variation  # noqa: E402
from .gradcheck import GradcheckResult, gradcheck  # noqa: E402
