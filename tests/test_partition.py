"""Partitioners, skew metrics, feature skew and the partition plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spikefed.data import (
    PARTITIONERS,
    feature_skew,
    label_distribution,
    label_skew,
    partition,
    plot_partition,
)

LABELS = np.random.default_rng(123).integers(0, 10, size=5000)
PARAMS = {"iid": {}, "dirichlet": {"beta": 0.5}, "pathological": {"classes_per_client": 2},
          "quantity": {"beta": 1.0}}


@pytest.mark.parametrize("scheme", sorted(PARTITIONERS))
def test_partition_is_exact_cover_and_seeded(scheme: str) -> None:
    parts = partition(LABELS, 20, scheme, seed=1, **PARAMS[scheme])
    assert len(parts) == 20
    everything = np.concatenate(parts)
    assert len(everything) == len(LABELS)
    assert np.array_equal(np.sort(everything), np.arange(len(LABELS)))  # disjoint and complete
    again = partition(LABELS, 20, scheme, seed=1, **PARAMS[scheme])
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = partition(LABELS, 20, scheme, seed=2, **PARAMS[scheme])
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_dirichlet_skew_grows_as_beta_shrinks() -> None:
    skew = {b: np.mean([label_skew(LABELS, partition(LABELS, 20, "dirichlet", s, beta=b))
                        for s in range(3)]) for b in (0.1, 1.0, 100.0)}
    assert skew[0.1] > skew[1.0] > skew[100.0]
    assert skew[0.1] > 3 * skew[100.0]
    iid_skew = label_skew(LABELS, partition(LABELS, 20, "iid", 0))
    assert skew[100.0] < 2 * iid_skew  # large beta approaches IID


def test_dirichlet_min_size_and_max_tries() -> None:
    parts = partition(LABELS, 20, "dirichlet", 0, beta=0.1, min_size=100)
    assert min(len(p) for p in parts) >= 100
    with pytest.raises(ValueError, match="max_tries=2"):
        partition(LABELS, 100, "dirichlet", 0, beta=0.01, min_size=45, max_tries=2)
    with pytest.raises(ValueError, match="min_size=100 is impossible"):
        partition(LABELS, 100, "dirichlet", 0, min_size=100)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pathological_classes_per_client(k: int) -> None:
    parts = partition(LABELS, 20, "pathological", 0, classes_per_client=k)
    counts = label_distribution(LABELS, parts, 10)
    assert ((counts > 0).sum(axis=1) == k).all()
    per_class_holders = (counts > 0).sum(axis=0)
    assert per_class_holders.max() - per_class_holders.min() <= 1  # classes shared evenly


def test_quantity_skew_sizes_vary_labels_stay_iid() -> None:
    parts = partition(LABELS, 10, "quantity", 0, beta=0.5)
    sizes = np.array([len(p) for p in parts])
    iid_sizes = np.array([len(p) for p in partition(LABELS, 10, "iid", 0)])
    assert sizes.std() > 10 * max(iid_sizes.std(), 1.0)
    big = [p for p in parts if len(p) >= 400]
    assert big and label_skew(LABELS, big) < 0.1
    dir_skew = label_skew(LABELS, partition(LABELS, 10, "dirichlet", 0, beta=0.5))
    assert label_skew(LABELS, parts) < dir_skew


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="unknown parameter.*'alpha'.*accepted: beta"):
        partition(LABELS, 10, "dirichlet", 0, alpha=0.5)
    with pytest.raises(ValueError, match="beta must be > 0"):
        partition(LABELS, 10, "dirichlet", 0, beta=0)
    with pytest.raises(ValueError, match="classes_per_client must be an integer in 1..10"):
        partition(LABELS, 10, "pathological", 0, classes_per_client=11)
    with pytest.raises(ValueError, match="classes_per_client >= 5"):
        partition(LABELS, 2, "pathological", 0, classes_per_client=2)
    with pytest.raises(ValueError, match="unknown partition scheme 'shards'"):
        partition(LABELS, 10, "shards", 0)
    with pytest.raises(ValueError, match="num_clients"):
        partition(LABELS, 0, "iid", 0)
    with pytest.raises(ValueError, match="integer array"):
        partition(LABELS.astype(float), 10, "iid", 0)


def test_label_distribution_and_skew_extremes() -> None:
    labels = np.array([0, 0, 1, 1])
    disjoint = [np.array([0, 1]), np.array([2, 3])]
    assert label_distribution(labels, disjoint, 2).tolist() == [[2, 0], [0, 2]]
    assert label_skew(labels, disjoint) == pytest.approx(0.5)
    assert label_skew(labels, [np.array([0, 2]), np.array([1, 3])]) == pytest.approx(0.0)


@pytest.mark.parametrize("kind", ["rotation", "noise", "brightness"])
def test_feature_skew_deterministic_and_client_specific(kind: str) -> None:
    x = torch.rand(8, 1, 28, 28) * 0.5
    strength = {"rotation": 90.0, "noise": 0.3, "brightness": 1.0}[kind]
    transforms = feature_skew(4, kind, strength, seed=7)
    outs = [t(x) for t in transforms]
    assert torch.equal(outs[0], x)  # client 0 is the reference domain
    for t, out in zip(transforms, outs, strict=True):
        assert out.shape == x.shape and torch.equal(t(x), out)
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    rebuilt = feature_skew(4, kind, strength, seed=7)
    assert all(torch.equal(t(x), o) for t, o in zip(rebuilt, outs, strict=True))
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(outs[i], outs[j])
    single = transforms[2](x[0])
    assert single.shape == x[0].shape and torch.equal(single, transforms[2](x[0].clone()))
    if kind != "noise":  # pixel-wise/geometric transforms act on each image independently
        assert torch.allclose(single, outs[2][0], atol=1e-6)


def test_rotation_by_90_degrees_matches_rot90() -> None:
    x = torch.rand(2, 3, 16, 16)
    (_, rot) = feature_skew(2, "rotation", 180.0)  # client 1: 90 degrees
    out = rot(x)
    candidates = [torch.rot90(x, k, dims=(2, 3)) for k in (1, -1)]
    assert min(float((out - c).abs().max()) for c in candidates) < 1e-4


def test_feature_skew_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown feature-skew kind 'blur'"):
        feature_skew(3, "blur", 1.0)
    with pytest.raises(ValueError, match="noise strength"):
        feature_skew(3, "noise", -1.0)


def test_plot_partition(tmp_path: Path) -> None:
    parts = partition(LABELS, 8, "dirichlet", 0, beta=0.3)
    out = plot_partition(LABELS, parts, tmp_path / "sub" / "parts.png", classes=list("abcdefghij"))
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
