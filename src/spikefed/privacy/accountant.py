"""Rényi-DP accountant for the sampled Gaussian mechanism (DP-SGD).

One DP-SGD step samples each example with probability ``q``, clips per-sample gradients to
norm ``C`` and adds ``N(0, sigma^2 C^2)``. For integer orders ``alpha >= 2`` its RDP is
(Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
Mechanism", Sec. 3.3)::

    RDP(alpha) = 1/(alpha-1) * log( sum_{k=0}^{alpha} C(alpha,k) (1-q)^(alpha-k) q^k
                                    * exp((k^2 - k) / (2 sigma^2)) )

which is ``alpha / (2 sigma^2)`` at ``q = 1``. RDP adds up over ``steps`` compositions, and
``(epsilon, delta)``-DP follows from (Mironov 2017, Prop. 3)::

    epsilon = min_alpha  steps * RDP(alpha) + log(1/delta) / (alpha - 1)
"""

from __future__ import annotations

import math

ORDERS = tuple(range(2, 257))


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def rdp_sampled_gaussian(q: float, sigma: float, alpha: int) -> float:
    """RDP of one sampled-Gaussian step at integer order ``alpha``."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"sampling rate q={q} must lie in (0, 1]")
    if sigma <= 0:
        raise ValueError(f"noise multiplier sigma={sigma} must be > 0")
    if alpha < 2 or int(alpha) != alpha:
        raise ValueError(f"order alpha={alpha} must be an integer >= 2")
    if q == 1.0:
        return alpha / (2 * sigma**2)
    terms = [
        _log_comb(alpha, k)
        + (alpha - k) * math.log1p(-q)
        + k * math.log(q)
        + (k * k - k) / (2 * sigma**2)
        for k in range(alpha + 1)
    ]
    top = max(terms)
    log_sum = top + math.log(sum(math.exp(t - top) for t in terms))
    return log_sum / (alpha - 1)


def epsilon(q: float, sigma: float, steps: int, delta: float) -> tuple[float, int]:
    """``(epsilon, best order)`` of ``steps`` DP-SGD steps at ``delta``."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta={delta} must lie in (0, 1)")
    best = (math.inf, ORDERS[0])
    for a in ORDERS:
        eps = steps * rdp_sampled_gaussian(q, sigma, a) + math.log(1 / delta) / (a - 1)
        if eps < best[0]:
            best = (eps, a)
    return best
