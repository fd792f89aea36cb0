"""Name -> aggregator registry: how the server turns a round's uploads into one model.

An aggregator has two parts, either of which may be the default:

- `combine(uploads, keys)`: the combiner every algorithm's `aggregate` calls (through
  `Algorithm.combine`) wherever it averages client tensors. Default: the sample-weighted mean.
  Coordinate-wise robust rules (median, trimmed mean) replace it.
- `select(uploads)`: a filter the round layer (`spikefed.rounds.pipeline`) runs before
  `aggregate`; it keeps some uploads and reports the others with a reason and a score
  (`aggregator_rejected` in the round record). Krum / Multi-Krum and SNFL's threshold filter
  are filters.

Register a new one with `register_aggregator(name, factory, description)`; the factory takes
the config section `aggregator:` (fields `num_byzantine`, `trim`, `z`) and returns an
`Aggregator`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from spikefed.fl.aggregation import weighted_average
from spikefed.fl.base import Tensors, Upload
from spikefed.fl.robust import coordinate_median, flatten_uploads, krum_scores, trimmed_mean
from spikefed.security.detection import anomaly_scores, flag_outliers, threshold_vectors

Combiner = Callable[[Sequence[Upload], Sequence[str] | None], Tensors]


@dataclass(frozen=True)
class Dropped:
    """An upload an aggregator's filter left out of aggregation, and why."""

    client: int
    reason: str
    score: float

    def as_record(self) -> dict[str, Any]:
        """The entry in the round record's `aggregator_rejected`."""
        return {"client": self.client, "reason": self.reason, "score": self.score}


UploadFilter = Callable[[list[Upload]], tuple[list[Upload], list[Dropped]]]


@dataclass(frozen=True)
class Aggregator:
    """A configured aggregator: the combiner algorithms use and an optional upload filter."""

    name: str
    combine: Combiner = weighted_average
    select: UploadFilter | None = None


class AggregatorParams(Protocol):
    """The settings an aggregator factory reads (the config section `aggregator:`)."""

    name: str
    num_byzantine: int
    trim: int
    z: float


@dataclass(frozen=True)
class AggregatorSpec:
    """How to build one aggregator, and what it needs."""

    factory: Callable[[AggregatorParams], Aggregator]
    description: str
    #: True: it only works on SNFL uploads (algorithm names starting with `s-`)
    snn_only: bool = False
    #: True: it replaces the weighted mean inside `aggregate` (a combiner, not a filter)
    combines: bool = False


AGGREGATORS: dict[str, AggregatorSpec] = {}


def register_aggregator(name: str, factory: Callable[[AggregatorParams], Aggregator],
                        description: str, snn_only: bool = False, combines: bool = False
                        ) -> None:
    """Make an aggregator available to configs (`aggregator.name`) under `name`."""
    AGGREGATORS[name] = AggregatorSpec(factory, description, snn_only, combines)


def aggregator_spec(name: str) -> AggregatorSpec:
    """The registered aggregator `name`; an unknown name is a ValueError listing the choices."""
    if name not in AGGREGATORS:
        raise ValueError(f"aggregator.name={name!r} is unknown; choose one of "
                         f"{sorted(AGGREGATORS)}")
    return AGGREGATORS[name]


def build_aggregator(params: AggregatorParams) -> Aggregator:
    """The aggregator the config section `params` describes."""
    return aggregator_spec(params.name).factory(params)


# ----- combiners ----------------------------------------------------------------------------
def _median(_: AggregatorParams) -> Aggregator:
    return Aggregator("median", combine=coordinate_median)


def _trimmed_mean(params: AggregatorParams) -> Aggregator:
    def combine(uploads: Sequence[Upload], keys: Sequence[str] | None = None) -> Tensors:
        # a round with fewer uploads than 2*trim+1 trims as much as it can
        return trimmed_mean(uploads, min(params.trim, (len(uploads) - 1) // 2), keys)

    return Aggregator("trimmed_mean", combine=combine)


# ----- filters ------------------------------------------------------------------------------
def krum_filter(num_byzantine: int, keep: int | None) -> UploadFilter:
    """Keep the `keep` uploads with the lowest Krum score (None: n - num_byzantine).

    A round with too few uploads for Krum (n - f - 2 < 1 neighbours) keeps every upload.
    """
    def select(uploads: list[Upload]) -> tuple[list[Upload], list[Dropped]]:
        n = len(uploads)
        if n - num_byzantine - 2 < 1:
            return uploads, []
        scores = krum_scores(flatten_uploads(uploads), num_byzantine)
        count = max(1, n - num_byzantine) if keep is None else keep
        order = scores.argsort().tolist()
        kept = set(order[:count])
        dropped = [Dropped(u.client_id, f"Krum score rank {order.index(i) + 1} of {n} (keeps "
                           f"{count})", float(scores[i]))
                   for i, u in enumerate(uploads) if i not in kept]
        return [u for i, u in enumerate(uploads) if i in kept], dropped

    return select


def threshold_filter(z: float) -> UploadFilter:
    """Drop SNFL uploads whose firing-threshold vector is a MAD outlier (`security.detection`).

    Scores are distances to the coordinate-wise median of all clients' threshold vectors; an
    upload scoring above `median + z * 1.4826 * MAD` is dropped. Never drops every upload.
    """
    def select(uploads: list[Upload]) -> tuple[list[Upload], list[Dropped]]:
        keys = sorted(k for k in uploads[0].tensors if k.endswith("thresh.theta"))
        if not keys:
            raise ValueError("aggregator.name='threshold' found no SNN firing thresholds "
                             "('*thresh.theta') in the uploads: it needs an SNFL algorithm "
                             "(s-fedavg, s-fedprox, s-moon)")
        if len(uploads) < 3:  # no median/MAD to speak of
            return uploads, []
        scores = anomaly_scores(threshold_vectors([u.tensors for u in uploads], keys))
        flags = flag_outliers(scores, z).tolist()
        if all(flags):
            return uploads, []
        dropped = [Dropped(u.client_id, f"threshold vector is an outlier (z={z})", float(s))
                   for u, s, f in zip(uploads, scores.tolist(), flags, strict=True) if f]
        return [u for u, f in zip(uploads, flags, strict=True) if not f], dropped

    return select


def _krum(params: AggregatorParams) -> Aggregator:
    return Aggregator("krum", select=krum_filter(params.num_byzantine, 1))


def _multi_krum(params: AggregatorParams) -> Aggregator:
    return Aggregator("multi_krum", select=krum_filter(params.num_byzantine, None))


def _threshold(params: AggregatorParams) -> Aggregator:
    return Aggregator("threshold", select=threshold_filter(params.z))


register_aggregator("mean", lambda _: Aggregator("mean"),
                    "sample-weighted mean (FedAvg); the default")
register_aggregator("median", _median, "coordinate-wise median of the client tensors",
                    combines=True)
register_aggregator("trimmed_mean", _trimmed_mean, "coordinate-wise mean without the `trim` "
                    "largest and `trim` smallest values", combines=True)
register_aggregator("krum", _krum, "Krum: aggregate only the upload closest to its "
                    "n - num_byzantine - 2 nearest neighbours")
register_aggregator("multi_krum", _multi_krum, "Multi-Krum: aggregate the n - num_byzantine "
                    "uploads with the lowest Krum scores")
register_aggregator("threshold", _threshold, "SNFL: drop uploads whose SNN firing thresholds "
                    "are MAD outliers (z)", snn_only=True)
