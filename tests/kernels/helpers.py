"""References shared by the kernel tests: plain float computations, no packing."""

import torch
import torch.nn.functional as F


def sign_ref(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1, -1).float()


def matmul_ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sign(a) @ sign(b).T in float (exact for |result| < 2**24), as int32."""
    return (sign_ref(a.cpu()) @ sign_ref(b.cpu()).T).to(torch.int32)


def conv_ref(x, w, stride=1, padding=0, dilation=1) -> torch.Tensor:
    return F.conv2d(sign_ref(x.cpu()), sign_ref(w.cpu()), stride=stride, padding=padding, dilation=dilation).to(
        torch.int32
    )


# (M, N, K): K not a multiple of 32, M or N = 1, odd word counts, and for the cpu
# kernel (4 rows x 32 columns tiles, panels of 8 columns): row and column tails, and
# both ways of splitting the work between threads (by rows; by columns when M is small).
MATMUL_SHAPES = [
    (1, 1, 1),
    (1, 7, 31),
    (5, 1, 33),
    (3, 4, 32),
    (6, 9, 100),
    (8, 8, 64),
    (9, 13, 2304),
    (1, 16, 4608),
    (17, 6, 4608),
    (33, 41, 95),
    (2, 100, 64),
    (6, 70, 300),
    (37, 45, 1000),
]
