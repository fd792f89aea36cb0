"""Carry spikefed payloads in Flower records: tensors as ArrayRecords, client state locally.

Message layout (one `RecordDict` per message, never shared between nodes):
- server -> client: `"broadcast"` ArrayRecord + `"config"` ConfigRecord (round, client id);
- client -> server: `"upload"` ArrayRecord + `"meta"` MetricRecord (num-examples, client-id,
  local training metrics).
Client-private state (`client_state`) is kept in the node's `context.state` and never sent.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict

from spikefed.fl.base import Tensors, Upload

BROADCAST = "broadcast"
UPLOAD = "upload"
CONFIG = "config"
META = "meta"
STATE = "spikefed-client"
NUM_EXAMPLES = "num-examples"
CLIENT_ID = "client-id"
ROUND = "server-round"
PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"


def to_record(tensors: Tensors) -> ArrayRecord:
    """An ArrayRecord holding a copy of `tensors` (CPU, contiguous, names kept)."""
    return ArrayRecord(torch_state_dict={k: v.detach().cpu().contiguous()
                                         for k, v in tensors.items()})


def from_record(record: ArrayRecord) -> Tensors:
    """The tensors of an ArrayRecord as a plain dict."""
    return dict(record.to_torch_state_dict())


def train_content(broadcast: ArrayRecord, round_idx: int, client_id: int) -> RecordDict:
    """The content of one training message: its own config record for its own client."""
    config = ConfigRecord({ROUND: round_idx, CLIENT_ID: client_id})
    return RecordDict({BROADCAST: broadcast, CONFIG: config})


def reply_content(upload: Upload) -> RecordDict:
    """The content of a training reply: the upload tensors plus sample count and metrics."""
    meta: dict[str, int | float] = {NUM_EXAMPLES: int(upload.num_samples),
                                    CLIENT_ID: int(upload.client_id)}
    for key, value in upload.metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            meta[key] = float(value)
    return RecordDict({UPLOAD: to_record(upload.tensors), META: MetricRecord(meta)})


def upload_from_reply(content: RecordDict, client_id: int) -> Upload:
    """Rebuild an `Upload` from a reply; a malformed reply is a ValueError naming the part."""
    if UPLOAD not in content.array_records:
        raise ValueError(f"reply has no '{UPLOAD}' ArrayRecord "
                         f"(records: {sorted(content.keys())})")
    if META not in content.metric_records:
        raise ValueError(f"reply has no '{META}' MetricRecord")
    meta = dict(content.metric_records[META])
    n = meta.pop(NUM_EXAMPLES, None)
    reported = meta.pop(CLIENT_ID, client_id)
    if reported != client_id:
        raise ValueError(f"reply claims client-id={reported} but came from client {client_id}'s "
                         "node")
    if not isinstance(n, int):
        raise ValueError(f"reply meta '{NUM_EXAMPLES}'={n!r} is not an integer")
    metrics = {k: float(v) for k, v in meta.items() if isinstance(v, (int, float))}
    return Upload(client_id, from_record(content.array_records[UPLOAD]), n, metrics)


def load_client_state(context: Context) -> dict[str, Any]:
    """This node's private client state (empty on first use)."""
    if STATE not in context.state.config_records:
        return {}
    blob = context.state.config_records[STATE]["state"]
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def save_client_state(context: Context, state: dict[str, Any]) -> None:
    """Keep `state` in the node's `context.state` (it never leaves the node)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    context.state[STATE] = ConfigRecord({"state": buffer.getvalue()})
