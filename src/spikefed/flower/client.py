"""A Flower `ClientApp` that runs any spikefed algorithm's `client_update` on one node."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from spikefed.experiment import Federation
from spikefed.flower.appconfig import (
    cached_federation,
    client_count,
    experiment_config,
    partition_of,
)
from spikefed.flower.records import (
    BROADCAST,
    CLIENT_ID,
    CONFIG,
    PARTITION_ID,
    ROUND,
    from_record,
    load_client_state,
    reply_content,
    save_client_state,
)
from spikefed.rounds.evaluation import RoundEvaluator
from spikefed.rounds.uplink import Uplink, uplink_for

FederationFn = Callable[[Context], Federation]


def make_client_app(app_dir: str | Path | None = None,
                    federation: Federation | FederationFn | None = None) -> ClientApp:
    """Build the ClientApp: a query handler (which client am I?) and a train handler.

    The experiment comes from `federation` (an object, or a function of the node's context)
    or else from the run config (`config`, `set`) resolved against `app_dir`; the node's
    `--node-config` picks its client (`partition-id`) and data (`data-root`).
    """
    app = ClientApp()
    base = Path(app_dir) if app_dir is not None else None

    def node(context: Context) -> tuple[Federation, int]:
        if isinstance(federation, Federation):
            fed = federation
        elif federation is not None:
            fed = federation(context)
        else:
            fed = cached_federation(experiment_config(context.run_config, base,
                                                      context.node_config))
        return fed, partition_of(context.node_config, len(fed.clients))

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        """Tell the server which client (partition) this node holds (loads no data)."""
        if federation is None:
            cfg = experiment_config(context.run_config, base, context.node_config)
            pid = partition_of(context.node_config, client_count(cfg))
        else:
            _, pid = node(context)
        return Message(RecordDict({CONFIG: ConfigRecord({PARTITION_ID: pid})}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """Run `client_update` on this node's data; reply with the upload (and, in rounds
        that evaluate clients, this client's own evaluation: `spikefed.rounds.evaluation`)."""
        fed, pid = node(context)
        config = msg.content.config_records[CONFIG]
        if config.get(CLIENT_ID) != pid:
            raise ValueError(f"server addressed client {config.get(CLIENT_ID)} but this node "
                             f"holds partition {pid}")
        round_idx = int(config[ROUND])
        broadcast = from_record(msg.content.array_records[BROADCAST])
        before = load_client_state(context)
        upload, state, _ = fed.algorithm.client_update(
            pid, broadcast, Uplink.split_state(before)[0], fed.clients[pid],
            fed.train_context(round_idx))
        evaluator = RoundEvaluator(fed)
        if evaluator.clients_due(round_idx):  # only this node holds the client's state
            evaluation = evaluator.client(fed.algorithm, upload, state)
            if evaluation is not None:
                upload = replace(upload, metrics={**upload.metrics, **evaluation.as_metrics()})
        uplink = uplink_for(fed.cfg, fed.algorithm)  # train.codec: compress the update
        if uplink.active:
            upload, state = uplink.send(upload, broadcast, before, state, round_idx)
        save_client_state(context, state)
        return Message(reply_content(upload), reply_to=msg)

    return app
