"""Lost ``$disconnect``s: the gateway drops a seeded share of them, as AWS may, and the registry
is still cleaned, by the two paths that do not need ``$disconnect``.

AWS: "$disconnect is a best-effort event. API Gateway will try its best to deliver the
$disconnect event to your integration, but it cannot guarantee delivery" ("Manage connected
users and client apps: $connect and $disconnect routes", API Gateway developer guide). So:

- 410 prune: the next send to a connection whose ``$disconnect`` was lost gets 410 Gone and
  removes it, its memberships and its presence;
- TTL: every connection item expires ``CONNECTION_TTL_SECONDS`` after its connect (past API
  Gateway's 2 h maximum); every read skips expired items (DynamoDB deletes them only
  eventually), so a stale connection is never sent to once its TTL has passed. The app's
  registry clock is moved instead of waiting two hours (an injected clock).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from local_gateway.faults import FaultConfig
from tests.gateways import poll
from tests.reliability.conftest import Figures, StackFactory
from tests.reliability.scale import run
from tests.reliability.stack import StackUnderTest
from tests.wsclient import WsClient, open_many

pytestmark = pytest.mark.timeout(120)
ROOM = "lobby"
CLIENTS = 20  # per batch: small and fast; the seed makes the dropped share the same every run
DROP_RATE = 0.3
SEED = 11


async def close_all(sb: StackUnderTest, clients: list[WsClient], keep: set[str]) -> int:
    """Close ``clients`` (a clean close: AWS would run $disconnect) and wait until the gateway
    has handled every close, run or dropped; how many ``$disconnect``s it dropped so far."""
    for client in clients:
        await client.close()
    faults = sb.gateway.faults

    def settled() -> bool:
        # Each close either ran its $disconnect (no longer pending) or was dropped (counted).
        return len(sb.invocations.pending_disconnects() - keep) == faults.dropped_disconnects

    assert await asyncio.to_thread(poll, settled, lambda ok: ok, 30.0), "closes not handled"
    return faults.dropped_disconnects


def test_a_lost_disconnect_is_pruned_by_the_next_send_or_skipped_after_its_ttl(
    switchboard_factory: StackFactory, figures: Figures
) -> None:
    sb = switchboard_factory(
        faults=FaultConfig(drop_disconnect_rate=DROP_RATE, seed=SEED),
        # A $disconnect that does run announces its user's leave to the room, and that
        # announcement prunes the closed connections it meets too (chalicelib/departures.py):
        # a third 410 path, whose reach depends on the order the closes are handled in. The
        # room sends no enter/leave events here (over PRESENCE_MAX_MEMBERS), so the stale
        # connections are met only by the send below: the counts are exact on every run.
        env={"PRESENCE_MAX_MEMBERS": "0"},
    )
    outcome: dict[str, Any] = {}

    async def scenario() -> None:
        sender = await WsClient.open(sb.ws_url, user="sender")
        assert (await sender.request({"action": "join", "room": ROOM}))["joined"] is True
        keep = {await sender.whoami()}

        # 1. 410 prune: stale connections (and their room memberships) are removed by a send.
        clients = await open_many(sb.ws_url, [f"p{n}" for n in range(CLIENTS)], rooms=(ROOM,))
        dropped = await close_all(sb, clients, keep)
        assert 0 < dropped < CLIENTS, f"seed {SEED} dropped {dropped} of {CLIENTS}"
        stale = await asyncio.to_thread(sb.registry)
        assert len(stale.connections) == 1 + dropped, "the lost $disconnects left their items"
        ack = await sender.request({"action": "sendRoom", "room": ROOM, "text": "anyone?"})
        assert ack is not None and ack["gone"] == dropped, ack
        after = await asyncio.to_thread(sb.registry)
        assert set(after.connections) == keep and after.memberships == {(ROOM, next(iter(keep)))}
        assert after.present == {(ROOM, "sender")}, after.present
        outcome["pruned"] = dropped

        # 2. TTL: no send reaches the stale ones, so only their expiry hides them.
        clients = await open_many(sb.ws_url, [f"t{n}" for n in range(CLIENTS)])
        dropped_ttl = await close_all(sb, clients, keep) - dropped
        assert dropped_ttl > 0, f"seed {SEED} dropped none of the second batch"
        stale_items = [
            item
            for cid, item in (await asyncio.to_thread(sb.registry)).connections.items()
            if cid not in keep
        ]
        assert len(stale_items) == dropped_ttl
        expires = max(int(item["ttl"]["N"]) for item in stale_items)
        connected = max(int(item["connectedAt"]["N"]) for item in stale_items) // 1000
        # TTLs have one-second steps: the witness connects in a later second than the stale
        # ones, so its TTL is later than theirs (at most a second's wait, derived from them).
        await asyncio.sleep(max(0.0, connected + 1 - time.time()))
        witness = await WsClient.open(sb.ws_url, user="witness")
        listener = await WsClient.open(sb.ws_url, user="listener")
        # The table layer holds the one clock every service reads (chalicelib/table.py).
        table = sb.gateway.app_module.get_switchboard().registry.table
        real_clock = table._clock
        offset = expires - time.time()  # the stale ones' TTL is now, the witness's is not yet
        table._clock = lambda: time.time() + offset
        try:
            ack = await witness.request({"action": "broadcastAll", "text": "after the ttl"})
        finally:
            table._clock = real_clock
        assert ack is not None, "no ack"
        # Only the listener is live at that clock besides the witness (the sender, connected
        # earlier, is past its TTL too, as it would be after API Gateway's 2 h maximum).
        assert (ack["delivered"], ack["gone"], ack["failed"]) == (1, 0, 0), ack
        left = await asyncio.to_thread(sb.registry)
        # DynamoDB deletes expired items eventually ("Using time to live", DynamoDB developer
        # guide); until then they sit in the table, skipped by every read.
        assert len([c for c in left.connections if c not in keep]) == dropped_ttl + 2
        outcome["expired"] = dropped_ttl
        await listener.close()
        await witness.close()
        await sender.close()

    run(scenario())
    figures.record(
        "lost $disconnects",
        clients=2 * CLIENTS,
        drop_rate=DROP_RATE,
        seed=SEED,
        pruned_by_410=outcome["pruned"],
        skipped_after_ttl=outcome["expired"],
        handler_errors=sb.handler_errors(),
    )
    assert sb.handler_errors() == 0, sb.error_details()
