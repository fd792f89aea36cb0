"""Which Flower node holds which partition: bound on first contact, never rebound.

The server asks every new SuperNode which partition (client) it holds. The first answer binds
that node id to that partition for the rest of the run; a node that later claims another
partition, or a node that claims a partition already bound to another node, is refused (the
server records a rejection and goes on). Node ids are only as trustworthy as the SuperLink's
node authentication (`flower-superlink --enable-supernode-auth`): see docs/security.md.
"""

from __future__ import annotations

from typing import Any


class NodeRegistry:
    """A one-to-one binding between Flower node ids and partition ids `0..num_partitions-1`."""

    def __init__(self, num_partitions: int) -> None:
        self.num_partitions = num_partitions
        self._partition_of: dict[int, int] = {}
        self._node_of: dict[int, int] = {}

    def bind(self, node_id: int, claimed: Any) -> str | None:
        """Bind `node_id` to partition `claimed`; the reason it is refused, or None if bound
        (or already bound to exactly this partition)."""
        if isinstance(claimed, bool) or not isinstance(claimed, int):
            return f"node {node_id} claims partition-id={claimed!r}, not an integer"
        if not 0 <= claimed < self.num_partitions:
            return (f"node {node_id} claims partition-id={claimed}, outside 0.."
                    f"{self.num_partitions - 1}")
        bound = self._partition_of.get(node_id)
        if bound is not None and bound != claimed:
            return (f"node {node_id} is bound to partition {bound} but now claims partition "
                    f"{claimed}")
        holder = self._node_of.get(claimed)
        if holder is not None and holder != node_id:
            return (f"node {node_id} claims partition {claimed}, already bound to node "
                    f"{holder}; give each SuperNode its own --node-config partition-id")
        self._partition_of[node_id] = claimed
        self._node_of[claimed] = node_id
        return None

    def partition(self, node_id: int) -> int | None:
        """The partition `node_id` is bound to, or None for an unknown node."""
        return self._partition_of.get(node_id)

    def node(self, partition_id: int) -> int | None:
        """The node bound to `partition_id`, or None while no node holds it."""
        return self._node_of.get(partition_id)

    @property
    def nodes(self) -> dict[int, int]:
        """A copy of the bindings as {partition id: node id}."""
        return dict(self._node_of)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._partition_of

    def __len__(self) -> int:
        return len(self._node_of)
