"""The square root of a symmetric positive semi-definite matrix, and its hand-derived backward.

Notation: N batch, C the matrices' size. A is (N, C, C), symmetric with eigenvalues >= 0 (a
covariance). Its symmetric square root is the one symmetric PSD S with S S = A: with the
eigendecomposition A = U diag(l) U^T (U orthogonal), S = U diag(sqrt(l)) U^T.

The style loss ``meancov`` of minivgg/losses.py needs it, inside the loss, with a gradient: the
Wasserstein-2 distance between two Gaussians has tr((C_s^1/2 C_x C_s^1/2)^1/2) in it.

Why the eigendecomposition and not Newton-Schulz iterations. Newton-Schulz (Y <- Y (3I - Z Y)/2,
Z <- (3I - Z Y) Z / 2, after scaling A to norm < 1) needs only matrix products, which is why GPU
code likes it; but it converges slowly when A is ill-conditioned, and a layer's covariance nearly
always is (relu features in C = 512 channels over fewer positions than channels have many zero
eigenvalues), it returns an approximation whose quality depends on the iteration count, and its
backward goes through every iteration (each kept for backward). The eigendecomposition is exact
for any PSD matrix, costs one ``eigh`` of O(C^3) (C <= 512: small beside the convolutions), and
gives the backward in closed form from the same U and l, derived below.

Precision. The matrix under the root in the loss, C_s^1/2 C_x C_s^1/2, squares the covariances'
range of eigenvalues; formed in float32 at relu5_1 of a 192-px picture, its smallest eigenvalues
drown in round-off and come out as large negative numbers. So the loss casts to
float64 first with ``cast`` below, whose backward casts the gradient back: the network and its
gradients stay in float32, only the C x C matrices of the loss are float64.
"""
from .backend import get_array_module
from .tensor import Function

ROOT_SUM_FLOOR = 1e-6    # sqrt(l_i) + sqrt(l_j) is at least this times the largest sqrt(l)


class SqrtmPSD(Function):
    """S = A^(1/2) for symmetric PSD A: (N, C, C) -> (N, C, C), S = U diag(sqrt(l)) U^T.

    Forward. A is read as (A + A^T)/2 (so a round-off asymmetry does no harm, and the op is a
    function of every entry); eigenvalues below 0, which are round-off, are taken as 0. The work is
    done in float64 and returned in A's dtype.

    Backward. Differentiate S S = A:  dS S + S dS = dA, a Sylvester equation. In A's eigenbasis
    (write X' = U^T X U; S' = diag(s) with s = sqrt(l)) it decouples entry by entry:
        dS'[i, j] s_j + s_i dS'[i, j] = dA'[i, j],   so   dS'[i, j] = dA'[i, j] / (s_i + s_j).
    The map dA -> dS is thus: rotate by U, divide by K[i, j] = s_i + s_j, rotate back. Its adjoint
    (what backward computes, gA with <gA, dA> = <gS, dS> for every dA) is the same map, since
    rotating by an orthogonal U and dividing by a symmetric K are both self-adjoint:
        gA = U [ (U^T gS_sym U) / (s_i + s_j) ] U^T,   gS_sym = (gS + gS^T) / 2,
    the symmetrisation being the backward of reading A as (A + A^T)/2. (On the diagonal this is
    gS'[i, i] / (2 s_i), the scalar rule d sqrt(l) = dl / (2 sqrt(l)); off it, it is not.)
    Where s_i + s_j = 0 (both eigenvalues 0) the derivative is infinite; s_i + s_j is floored at
    ROOT_SUM_FLOOR times the largest s_i of the matrix. Kept for backward: U and s (float64).
    """

    def forward(self, A):
        if A.ndim != 3 or A.shape[1] != A.shape[2]:
            raise ValueError(f"sqrtm_psd: A must have shape (N, C, C); got shape {A.shape}")
        xp = get_array_module(A)
        A64 = A.astype(xp.float64)
        l, U = xp.linalg.eigh((A64 + A64.swapaxes(1, 2)) / 2)   # l (N, C), U (N, C, C)
        s = xp.sqrt(xp.maximum(l, 0.0))                          # (N, C)
        if self.recording:
            self.U, self.s = U, s
        S = (U * s[:, None, :]) @ U.swapaxes(1, 2)               # U diag(s) U^T, (N, C, C)
        return S.astype(A.dtype)

    def backward(self, gS):
        xp = get_array_module(gS)
        U, s = self.U, self.s
        K = s[:, :, None] + s[:, None, :]                        # K[n, i, j] = s_i + s_j
        floor = ROOT_SUM_FLOOR * s.max(axis=1)[:, None, None]    # (N, 1, 1)
        K = xp.maximum(K, xp.maximum(floor, 1e-300))
        g = gS.astype(xp.float64)
        g_rot = U.swapaxes(1, 2) @ ((g + g.swapaxes(1, 2)) / 2) @ U   # U^T gS_sym U
        gA = U @ (g_rot / K) @ U.swapaxes(1, 2)                       # rotate back
        return (gA.astype(gS.dtype),)


class Cast(Function):
    """y = x as another float dtype (float32 <-> float64).  Backward: gx = gy cast back to x's
    dtype, since the cast is the identity on values. Kept: x's dtype."""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.x_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return (gy.astype(self.x_dtype),)


def cast(x, dtype):
    """x converted to the float dtype ``dtype`` (numpy.float32 or float64), with a gradient."""
    return Cast(dtype)(x)


def sqrtm_psd(A):
    """The symmetric square root of symmetric PSD matrices A (N, C, C): S with S S = A."""
    return SqrtmPSD()(A)
