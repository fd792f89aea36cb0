"""The upload pipeline: what happens between the clients' `client_update` and `aggregate`.

Per upload, as it arrives (`UploadPipeline.receive`):
  decode (registered decoders, e.g. an update codec turning the wire form back into tensors)
  -> validate (`UploadValidator`: structure, size, num_samples, magnitude, update norm).
Per round, once every reply is in (`UploadPipeline.close`):
  screen (divergence policy) -> stages (registered `UploadStage`s: filters that reject
  uploads) -> quorum (`train.min_clients`).
Then `UploadPipeline.aggregate`: the aggregator's filter (Krum, threshold; what it drops goes
to `aggregator_rejected`) -> `Algorithm.aggregate` (whose `combine` is the aggregator's
combiner). Both engines run every step here, in this order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from spikefed.config import ExperimentConfig
from spikefed.fl.aggregators import Dropped, build_aggregator
from spikefed.fl.base import Algorithm, Tensors, Upload
from spikefed.rounds.divergence import loss_limit, screen_losses
from spikefed.rounds.uplink import Uplink, uplink_for
from spikefed.rounds.validation import Clip, Rejection, UploadValidator, require_quorum

log = logging.getLogger("spikefed.rounds")

#: turns an upload as received into the upload to validate, given what the client was sent
#: (its downlink: the broadcast or a per-client payload); raising rejects it
UploadDecoder = Callable[[Upload, Tensors], Upload]
#: a round-level step after screening: (round, uploads) -> (kept uploads, rejections)
UploadStage = Callable[[int, list[Upload]], tuple[list[Upload], list[Rejection]]]


@dataclass
class RoundIntake:
    """What reached the server in one round, and what it refused."""

    uploads: list[Upload] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    clipped: list[Clip] = field(default_factory=list)
    #: bytes each accepted client sent, as sent (before any decoder)
    wire_bytes: dict[int, int] = field(default_factory=dict)
    #: bytes each accepted upload takes decoded (what it would have taken uncompressed)
    raw_bytes: dict[int, int] = field(default_factory=dict)
    #: uploads the aggregator's filter left out (after the quorum; see `aggregate`)
    dropped: list[Dropped] = field(default_factory=list)

    @property
    def bytes_up(self) -> int:
        """Bytes the round's valid uploads took on the wire."""
        return sum(self.wire_bytes[u.client_id] for u in self.uploads)

    @property
    def bytes_up_raw(self) -> int:
        """Bytes the round's valid uploads would have taken uncompressed (decoded)."""
        return sum(self.raw_bytes[u.client_id] for u in self.uploads)


class UploadPipeline:
    """Decode, validate, screen, filter and aggregate a round's uploads (see module doc)."""

    def __init__(self, cfg: ExperimentConfig, validator: UploadValidator, num_classes: int,
                 decoders: list[UploadDecoder] | None = None,
                 stages: list[UploadStage] | None = None, uplink: Uplink | None = None) -> None:
        self.cfg = cfg
        #: the run's update codec (`train.codec`); its decoder runs first when it is active
        self.uplink = uplink
        self.validator = validator
        self.limit = loss_limit(num_classes, cfg.train.divergence_factor)
        self.aggregator = build_aggregator(cfg.aggregator)
        self.decoders = list(decoders or [])
        self.stages = list(stages or [])
        if uplink is not None and uplink.active:
            self.decoders.insert(0, uplink.decode)

    @classmethod
    def for_config(cls, cfg: ExperimentConfig, algorithm: Algorithm, reference: nn.Module,
                   num_classes: int) -> UploadPipeline:
        """The pipeline of `cfg`, validating against `reference` (a freshly built model) and
        decoding the configured update codec."""
        return cls(cfg, UploadValidator.for_config(algorithm, reference, cfg.train), num_classes,
                   uplink=uplink_for(cfg, algorithm))

    def add_decoder(self, decoder: UploadDecoder) -> None:
        """Run `decoder` on every upload before validation (e.g. an update codec)."""
        self.decoders.append(decoder)

    def add_stage(self, stage: UploadStage) -> None:
        """Run `stage` on each round's screened uploads, before the quorum."""
        self.stages.append(stage)

    def receive(self, intake: RoundIntake, upload: Upload, client_id: int, broadcast: Tensors,
                partition_size: int, sent: Tensors | None = None) -> bool:
        """Decode and validate one client's upload into `intake`; True if it was accepted.

        `sent`: what the client was sent this round (default: `broadcast`), for decoders."""
        received = upload
        for decode in self.decoders:
            try:
                upload = decode(upload, broadcast if sent is None else sent)
            except Exception as exc:  # whatever a client sent must not end the round
                intake.rejected.append(Rejection(client_id, f"undecodable upload: {exc}"))
                return False
        verdict = self.validator.judge(upload, client_id, broadcast=broadcast,
                                       partition_size=partition_size)
        if verdict.upload is None:
            intake.rejected.append(verdict.rejection)
            return False
        intake.uploads.append(verdict.upload)
        # what the client sent: the upload as received (the validated one when no decoder ran)
        intake.wire_bytes[client_id] = (received if self.decoders else verdict.upload).nbytes
        intake.raw_bytes[client_id] = verdict.upload.nbytes
        if verdict.clip:
            intake.clipped.append(verdict.clip)
        return True

    def close(self, round_idx: int, intake: RoundIntake,
              new_states: dict[int, dict[str, Any]] | None = None) -> None:
        """Screen losses, run the stages and check the quorum (raises `RoundFailedError`).

        A client whose upload is dropped here also loses its new state in `new_states`.
        """
        states = new_states if new_states is not None else {}
        intake.uploads = screen_losses(round_idx, intake.uploads, states, intake.rejected,
                                       self.cfg.train.divergence, self.limit)
        for stage in self.stages:
            intake.uploads, refused = stage(round_idx, intake.uploads)
            intake.rejected += refused
            for bad in refused:
                states.pop(bad.client, None)
        for bad in intake.rejected:
            log.warning("round %d: rejected client %d: %s", round_idx, bad.client, bad.reason)
        for clip in intake.clipped:
            log.warning("round %d: clipped client %d's update from norm %.4g to %.4g",
                        round_idx, clip.client, clip.norm, clip.bound)
        require_quorum(round_idx, len(intake.uploads), self.cfg.train.min_clients,
                       intake.rejected)

    def quorate(self, intake: RoundIntake) -> bool:
        """Whether the round has enough valid uploads to aggregate (`train.min_clients`)."""
        return len(intake.uploads) >= self.cfg.train.min_clients

    def aggregate(self, round_idx: int, algorithm: Algorithm, server_state: dict[str, Any],
                  broadcast: Tensors, intake: RoundIntake
                  ) -> tuple[dict[str, Any], Tensors, bool]:
        """Filter (aggregator) and aggregate; return (server state, broadcast, aggregated).

        Below the quorum the server keeps its state and broadcast.
        """
        if not self.quorate(intake):
            log.warning("round %d: %d upload(s) < train.min_clients=%d; server model unchanged",
                        round_idx, len(intake.uploads), self.cfg.train.min_clients)
            return server_state, broadcast, False
        kept = intake.uploads
        if self.aggregator.select is not None:
            kept, intake.dropped = self.aggregator.select(intake.uploads)
            for d in intake.dropped:
                log.info("round %d: aggregator %s left out client %d: %s", round_idx,
                         self.aggregator.name, d.client, d.reason)
        server_state, broadcast = algorithm.aggregate(server_state, kept)
        return server_state, broadcast, True
