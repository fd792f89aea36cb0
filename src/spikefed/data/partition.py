"""Seeded client partitioners: IID, Dirichlet label skew, pathological shards, quantity skew.

Every partitioner maps `(labels, num_clients, rng, **params)` to a list of sorted index arrays
that are disjoint and together cover every sample exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Partitioner = Callable[..., list[np.ndarray]]


def _check_positive(name: str, value: float, fix: str) -> None:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}; {fix}")


def _check_min_size(min_size: int, n: int, num_clients: int) -> None:
    if min_size < 0 or min_size * num_clients > n:
        raise ValueError(f"min_size={min_size} is impossible for {n} samples over {num_clients} "
                         f"clients; use 0 <= min_size <= {n // num_clients}")


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle and split into `num_clients` parts whose sizes differ by at most one."""
    return list(np.array_split(rng.permutation(len(labels)), num_clients))


def dirichlet(labels: np.ndarray, num_clients: int, rng: np.random.Generator, beta: float = 0.5,
              min_size: int = 10, max_tries: int = 1000) -> list[np.ndarray]:
    """Label skew as in NIID-Bench (Li et al. 2022): class shares over clients ~ Dir(beta).

    For each class, proportions are drawn from Dir(beta); clients already holding at least
    N / num_clients samples get no share of it. The whole draw is repeated until every client
    holds at least `min_size` samples (at most `max_tries` draws).
    """
    _check_positive("beta", beta, "use e.g. beta=0.5 (smaller = more skew)")
    _check_min_size(min_size, len(labels), num_clients)
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    n, cap = len(labels), len(labels) / num_clients
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        sizes = np.zeros(num_clients, dtype=np.int64)
        for idx in by_class:
            idx = rng.permutation(idx)
            p = rng.dirichlet(np.full(num_clients, beta)) * (sizes < cap)
            if not np.isfinite(p).all() or p.sum() <= 0:
                break
            cuts = (np.cumsum(p / p.sum()) * len(idx)).astype(np.int64)[:-1]
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].append(chunk)
                sizes[client] += len(chunk)
        else:
            if sizes.sum() == n and sizes.min() >= min_size:
                return [np.concatenate(p) if p else np.empty(0, np.int64) for p in parts]
    raise ValueError(f"dirichlet: no draw in max_tries={max_tries} gave every client >= "
                     f"min_size={min_size} samples (beta={beta}, {num_clients} clients, {n} "
                     f"samples); lower min_size, raise beta, use fewer clients or raise max_tries")


def pathological(labels: np.ndarray, num_clients: int, rng: np.random.Generator,
                 classes_per_client: int = 2) -> list[np.ndarray]:
    """Each client holds exactly `classes_per_client` classes (McMahan et al. 2017 shards).

    Label-sorted data is cut into `num_clients * classes_per_client` shards at class
    boundaries: the classes are dealt round-robin (in random order) so each class is shared
    by as equal a number of clients as possible, and each class is split evenly among them.
    """
    classes = np.unique(labels)
    k = classes_per_client
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(classes):
        raise ValueError(f"classes_per_client must be an integer in 1..{len(classes)} (the number "
                         f"of classes), got {k!r}")
    if num_clients * k < len(classes):
        raise ValueError(f"classes_per_client={k} with {num_clients} clients leaves classes "
                         f"unassigned ({len(classes)} classes); use classes_per_client >= "
                         f"{-(-len(classes) // num_clients)}")
    order = rng.permutation(classes)
    client_order = rng.permutation(num_clients)
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for slot in range(num_clients * k):
        holders[int(order[slot % len(classes)])].append(int(client_order[slot // k]))
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c, clients in holders.items():
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < len(clients):
            raise ValueError(f"class {c} has {len(idx)} samples but {len(clients)} clients must "
                             f"share it; use fewer clients or a smaller classes_per_client")
        for client, chunk in zip(clients, np.array_split(idx, len(clients)), strict=True):
            parts[client].append(chunk)
    return [np.concatenate(p) for p in parts]


def quantity(labels: np.ndarray, num_clients: int, rng: np.random.Generator, beta: float = 0.5,
             min_size: int = 10, max_tries: int = 1000) -> list[np.ndarray]:
    """Quantity skew (NIID-Bench): client sizes ~ Dir(beta) * N, labels IID within clients."""
    _check_positive("beta", beta, "use e.g. beta=0.5 (smaller = more unequal sizes)")
    _check_min_size(min_size, len(labels), num_clients)
    n = len(labels)
    for _ in range(max(max_tries, 1)):
        p = rng.dirichlet(np.full(num_clients, beta))
        cuts = (np.cumsum(p) * n).astype(np.int64)[:-1]
        sizes = np.diff(np.concatenate([[0], cuts, [n]]))
        if np.isfinite(p).all() and sizes.min() >= min_size:
            return list(np.split(rng.permutation(n), cuts))
    raise ValueError(f"quantity: no draw in max_tries={max_tries} gave every client >= "
                     f"min_size={min_size} samples (beta={beta}); lower min_size or raise beta")


PARTITIONERS: dict[str, Partitioner] = {
    "iid": iid,
    "dirichlet": dirichlet,
    "pathological": pathological,
    "quantity": quantity,
}

_PARAMS: dict[str, tuple[str, ...]] = {
    "iid": (),
    "dirichlet": ("beta", "min_size", "max_tries"),
    "pathological": ("classes_per_client",),
    "quantity": ("beta", "min_size", "max_tries"),
}


def partition(labels: np.ndarray, num_clients: int, scheme: str, seed: int,
              **params: Any) -> list[np.ndarray]:
    """Split sample indices over `num_clients` clients with `scheme` (see `PARTITIONERS`).

    Returns one sorted int64 index array per client; the arrays are disjoint and cover all
    samples. The same `seed` always gives the same split.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D integer array, got dtype {labels.dtype} "
                         f"shape {labels.shape}")
    if not isinstance(num_clients, (int, np.integer)) or not 1 <= num_clients <= len(labels):
        raise ValueError(f"num_clients must be an integer in 1..{len(labels)} (number of samples), "
                         f"got {num_clients!r}")
    if scheme not in PARTITIONERS:
        raise ValueError(f"unknown partition scheme {scheme!r}; choose one of "
                         f"{', '.join(PARTITIONERS)}")
    unknown = sorted(set(params) - set(_PARAMS[scheme]))
    if unknown:
        accepted = ", ".join(_PARAMS[scheme]) or "none"
        raise ValueError(f"unknown parameter(s) {unknown} for scheme {scheme!r}; "
                         f"accepted: {accepted}")
    if labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got minimum {labels.min()}")
    rng = np.random.default_rng(seed)
    parts = PARTITIONERS[scheme](labels, int(num_clients), rng, **params)
    return [np.sort(p.astype(np.int64)) for p in parts]


def label_distribution(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Label counts per client: int64 array `[clients, classes]`."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1} (num_classes={num_classes}), "
                         f"got {labels.min()}..{labels.max()}")
    return np.stack([np.bincount(labels[p], minlength=num_classes)[:num_classes] for p in parts])


def label_skew(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between each non-empty client's label distribution and
    the global one: 0 for identical distributions, approaching 1 for disjoint ones."""
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    counts = label_distribution(labels, parts, num_classes).astype(np.float64)
    counts = counts[counts.sum(axis=1) > 0]
    if len(counts) == 0:
        raise ValueError("label_skew needs at least one non-empty client part")
    global_p = np.bincount(labels, minlength=num_classes) / len(labels)
    client_p = counts / counts.sum(axis=1, keepdims=True)
    return float(0.5 * np.abs(client_p - global_p).sum(axis=1).mean())
