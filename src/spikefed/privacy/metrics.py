"""Leakage metrics: MSE, PSNR, SSIM, label accuracy, Hungarian matching, temporal scores.

Images are ``[B, C, H, W]`` (or ``[C, H, W]``) with values in ``[0, data_range]``. SSIM is the
Gaussian-window SSIM of Wang et al. (2004): window 11, sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``,
mean over pixels and channels. Temporal data is ``[T, ...]`` per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

LEAK_PSNR_DB = 20.0
LEAK_SSIM = 0.5


def _batch(x: Tensor) -> Tensor:
    if x.dim() == 3:
        return x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(
            f"image tensor of shape {tuple(x.shape)}: expected [B, C, H, W] or [C, H, W]"
        )
    return x


def _same_shape(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error per sample (first dim), ``[B]``."""
    _same_shape(x, y)
    return (x.float() - y.float()).pow(2).flatten(1).mean(1)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR in dB per sample, ``10 log10(range^2 / MSE)``; ``inf`` for identical samples."""
    err = mse(x, y)
    return 10.0 * torch.log10(data_range**2 / err)  # err == 0 gives +inf


def _gaussian_window(size: int, sigma: float, channels: int) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64, device="cpu") - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    w = torch.outer(g, g).float()
    return w.expand(channels, 1, size, size).contiguous()


def ssim(
    x: Tensor, y: Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5
) -> Tensor:
    """Gaussian-window SSIM per sample (Wang et al. 2004), ``[B]``; valid region only."""
    x, y = _batch(x).float(), _batch(y).float()
    _same_shape(x, y)
    c = x.shape[1]
    size = min(window, x.shape[-1], x.shape[-2])
    if size % 2 == 0:
        size -= 1
    w = _gaussian_window(size, sigma, c).to(x.device)  # built on the CPU, same on every device
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).flatten(1).mean(1)


def label_accuracy(pred: Tensor, true: Tensor) -> float:
    """Fraction of restored labels equal to the true ones (after matching)."""
    _same_shape(pred, true)
    return float((pred == true).float().mean())


def match_batch(x_hat: Tensor, x: Tensor) -> Tensor:
    """Hungarian matching: ``perm`` with ``x_hat[perm[i]]`` the reconstruction matched to ``x[i]``.

    The cost is the per-pair MSE, so the matching maximises mean PSNR-like agreement. The
    assignment is solved on the CPU; ``perm`` lies on ``x_hat``'s device.
    """
    if x_hat.shape[0] != x.shape[0] or x_hat.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"cannot match batches of shapes {tuple(x_hat.shape)} and {tuple(x.shape)}"
        )
    a, b = x.flatten(1).float(), x_hat.flatten(1).float()
    cost = torch.cdist(a, b).pow(2).cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return torch.as_tensor(perm, device=x_hat.device)


def iterations_to_leak(
    iterations: Sequence[int],
    psnrs: Sequence[float],
    ssims: Sequence[float],
    psnr_db: float = LEAK_PSNR_DB,
    ssim_min: float = LEAK_SSIM,
) -> int | None:
    """First recorded iteration with PSNR >= ``psnr_db`` or SSIM >= ``ssim_min``; None if never."""
    for it, p, s in zip(iterations, psnrs, ssims, strict=True):
        if p >= psnr_db or s >= ssim_min:
            return int(it)
    return None


def per_bin_scores(x_hat: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """PSNR and SSIM per time bin of one temporal sample ``[T, C, H, W]`` → two ``[T]`` tensors.

    Each bin is scored on its own, as an image with range 1.
    """
    _same_shape(x_hat, x)
    if x.dim() != 4:
        raise ValueError(f"temporal sample of shape {tuple(x.shape)}: expected [T, C, H, W]")
    return psnr(x_hat, x), ssim(x_hat, x)


def spike_f1(x_hat: Tensor, x: Tensor, threshold: float = 0.5) -> float:
    """F1 of spikes: ``x_hat >= threshold`` against ``x > 0``; 1.0 when both are silent."""
    _same_shape(x_hat, x)
    pred, true = x_hat >= threshold, x > 0
    tp = float((pred & true).sum())
    fp, fn = float((pred & ~true).sum()), float((~pred & true).sum())
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)


def temporal_consistency(x_hat: Tensor, x: Tensor) -> float:
    """Pearson correlation between the reconstructed and true per-bin activity sequences.

    The sequence is the mean value of each time bin (dim 0). ``nan`` when either sequence is
    constant (correlation undefined).
    """
    _same_shape(x_hat, x)
    a = x_hat.flatten(1).float().mean(1)
    b = x.flatten(1).float().mean(1)
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    if den == 0.0:
        return math.nan
    return float((a * b).sum()) / den
