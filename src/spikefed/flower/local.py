"""Drive a ServerApp and ClientApp in one process, through Flower's own Message objects.

`LocalGrid` implements Flower's `Grid` by calling the `ClientApp` of the addressed node
directly (one `Context` per node, kept across rounds like a SuperNode keeps it). Client
exceptions become error replies, as in Flower's engines. It needs no Ray and no network, so
tests and notebooks can check an app quickly; `flwr run` uses Flower's real engines.
Replies are ready at once unless `reply_delay` holds some back for a number of pulls, which
lets tests of asynchronous runs order arrivals deterministically (slow nodes, late replies).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from spikefed.flower.records import NUM_PARTITIONS, PARTITION_ID

SERVER_NODE_ID = 1


class LocalGrid(Grid):
    """An in-process Grid with `num_nodes` virtual SuperNodes running `client_app`."""

    def __init__(self, client_app: ClientApp, num_nodes: int, run_config: dict | None = None,
                 run_id: int = 1, reply_delay: Mapping[int, int] | None = None) -> None:
        """`reply_delay` maps a node id (1000 + partition) to how many `pull_messages` calls
        asking for a reply of that node return without it (default 0: ready at once);
        `send_and_receive` waits for every reply, as Flower's does without a timeout."""
        self.client_app = client_app
        self.reply_delay = dict(reply_delay or {})
        self._run = Run.create_empty(run_id=run_id)
        self.run_config = dict(run_config or {})
        self.contexts = {
            1000 + i: Context(run_id=run_id, node_id=1000 + i,
                              node_config={PARTITION_ID: i, NUM_PARTITIONS: num_nodes},
                              state=RecordDict(), run_config=dict(self.run_config))
            for i in range(num_nodes)}
        self._ids = itertools.count(1)
        self._replies: dict[str, Message] = {}
        self._held: dict[str, int] = {}  # message id -> pulls its reply is still held for

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg_id = f"local-{next(self._ids)}"
            msg.metadata.__dict__["_message_id"] = msg_id
            self._replies[msg_id] = self._deliver(msg)
            self._held[msg_id] = self.reply_delay.get(msg.metadata.dst_node_id, 0)
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        ready = []
        for i in message_ids:
            if i not in self._replies:
                continue
            if self._held[i] > 0:
                self._held[i] -= 1
                continue
            del self._held[i]
            ready.append(self._replies.pop(i))
        return ready

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        ids = list(self.push_messages(messages))
        for i in ids:  # waits for every reply: `reply_delay` holds replies back from pulls only
            self._held[i] = 0
        return self.pull_messages(ids)

    def _deliver(self, msg: Message) -> Message:
        context = self.contexts[msg.metadata.dst_node_id]
        try:
            return self.client_app(msg, context)
        except Exception as exc:  # a failing client becomes an error reply, as in Flower
            reason = f"{type(exc).__name__}: {exc}"
            return Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason), reply_to=msg)


@contextmanager
def local_identity(run_id: int) -> Iterator[None]:
    """Set Flower's process-wide task identity (needed to create Messages) for a local run."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, SERVER_NODE_ID
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def run_local(server_app: ServerApp, client_app: ClientApp, num_nodes: int,
              run_config: dict | None = None, reply_delay: Mapping[int, int] | None = None
              ) -> LocalGrid:
    """Run `server_app` against `num_nodes` in-process nodes running `client_app`
    (`reply_delay`: see `LocalGrid`).

    Returns the grid, whose `contexts` hold each node's final (private) state.
    """
    grid = LocalGrid(client_app, num_nodes, run_config, reply_delay=reply_delay)
    context = Context(run_id=grid.run.run_id, node_id=SERVER_NODE_ID, node_config={},
                      state=RecordDict(), run_config=dict(grid.run_config))
    with local_identity(grid.run.run_id):
        server_app(grid, context)
    return grid
