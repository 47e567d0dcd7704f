"""The Gram matrix: the style representation of Gatys, Ecker & Bethge (CVPR 2016).

Notation: N batch, C channels, H height, W width. A feature map x of shape (N, C, H, W) is
flattened per image to F of shape (N, C, H*W): row c of F is channel c's response at every pixel.
The Gram matrix G = F F^T, of shape (N, C, C), holds G[n, c, d] = sum_p F[n, c, p] F[n, d, p],
the correlation of channels c and d summed over all positions: it keeps *which* features occur
together and forgets *where*. It is unnormalised here; the style loss divides by what it needs.
"""
from .tensor import Function


class Gram(Function):
    """G = F F^T per image, with F = x.reshape(N, C, H*W).  x: (N, C, H, W) -> G: (N, C, C).

    Backward. G[c, d] = sum_p F[c, p] F[d, p], so F[c, p] appears in row c and in column c:
        dL/dF[c, p] = sum_d gG[c, d] F[d, p] + sum_d gG[d, c] F[d, p],
    that is dL/dF = (gG + gG^T) F,   (N, C, C) @ (N, C, H*W) -> (N, C, H*W),
    reshaped back to (N, C, H, W). Kept for backward: F (a view of x, no copy).
    """

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"gram: the input must have shape (N, C, H, W); got shape {x.shape}")
        N, C, H, W = x.shape
        F = x.reshape(N, C, H * W)                 # (N, C, H, W) -> (N, C, H*W)
        if self.recording:
            self.F, self.x_shape = F, x.shape
        return F @ F.swapaxes(1, 2)                # (N, C, H*W) @ (N, H*W, C) -> (N, C, C)

    def backward(self, gG):
        gG_sym = gG + gG.swapaxes(1, 2)            # gG + gG^T, (N, C, C)
        gF = gG_sym @ self.F                       # (N, C, C) @ (N, C, H*W) -> (N, C, H*W)
        return (gF.reshape(self.x_shape),)         # (N, C, H*W) -> (N, C, H, W)


def gram(x):
    """Unnormalised Gram matrix of a feature map: (N, C, H, W) -> (N, C, C), G = F F^T."""
    return Gram()(x)
