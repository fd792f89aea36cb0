"""Privacy accounting for the sampled Gaussian mechanism (DP-SGD), delegated to Opacus.

One DP-SGD step samples each example with probability ``q``, clips per-sample gradients to norm
``C`` and adds ``N(0, sigma^2 C^2)``. Its Rényi-DP (Mironov, Talwar & Zhang 2019) adds up over
``steps`` compositions and converts to ``(epsilon, delta)``-DP. We use Opacus's RDP analysis
(fractional and integer orders, the tighter RDP-to-DP conversion of Balle et al. 2020) instead of
our own, so our epsilons are the ones the field reports; `tests/test_privacy_defenses.py`
cross-checks them against Google's independent ``dp-accounting`` library.
"""

from __future__ import annotations

import warnings

from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as opacus_rdp

ORDERS: tuple[float, ...] = tuple(RDPAccountant.DEFAULT_ALPHAS)


def _check(q: float, sigma: float) -> None:
    if not 0.0 < q <= 1.0:
        raise ValueError(f"sampling rate q={q} must lie in (0, 1]")
    if sigma <= 0:
        raise ValueError(f"noise multiplier sigma={sigma} must be > 0")


def rdp_sampled_gaussian(q: float, sigma: float, alpha: float) -> float:
    """RDP of one sampled-Gaussian step at order ``alpha > 1``."""
    _check(q, sigma)
    if alpha <= 1:
        raise ValueError(f"order alpha={alpha} must be > 1")
    return float(opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=float(alpha)))


def epsilon(q: float, sigma: float, steps: int, delta: float) -> tuple[float, float]:
    """``(epsilon, best order)`` of ``steps`` DP-SGD steps at ``delta``."""
    _check(q, sigma)
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta={delta} must lie in (0, 1)")
    rdp = opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=list(ORDERS))
    # Opacus warns when the optimum is its smallest order (1.1): that happens only where epsilon
    # is already far too large to mean anything, so the warning is not actionable here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eps, order = opacus_rdp.get_privacy_spent(orders=list(ORDERS), rdp=rdp, delta=delta)
    return float(eps), float(order)
