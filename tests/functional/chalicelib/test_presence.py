"""Presence on moto DynamoDB with a fake management API: enter/leave events, members, caps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.management_api import Outcome
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from tests.conftest import TABLE, make_switchboard
from tests.harness import Harness, harness_over
from tests.helpers import FakeGateway, token


def presence_items(ddb: Any, room: str) -> dict[str, list[str]]:
    """userId -> connection ids of the room's presence items (a test may Query directly)."""
    items = ddb.query(
        TableName=TABLE,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :u)",
        ExpressionAttributeValues={":pk": {"S": f"ROOM#{room}"}, ":u": {"S": "USER#"}},
    )["Items"]
    return {i["userId"]["S"]: sorted(i.get("conns", {}).get("SS", [])) for i in items}


def members(harness: Harness, cid: str, room: str = "lobby") -> dict[str, Any]:
    return harness.send(cid, {"action": "members", "room": room, "ref": 1})


@pytest.fixture
def capped(registry: Registry, gateway: FakeGateway) -> Iterator[Harness]:
    sb = make_switchboard(registry, gateway, presence_max_members=2, presence_max_list=2)
    with harness_over(sb, gateway) as driven:
        yield driven


def test_first_connection_enters_and_others_hear_it_but_not_the_joiner(harness: Harness) -> None:
    harness.connect("a", userId="u_a")
    harness.connect("b", userId="u_b")
    harness.send("a", {"action": "join", "room": "lobby"})
    harness.send("b", {"action": "join", "room": "lobby"})
    assert harness.presence("a") == [("lobby", "enter", "u_b")]
    assert harness.presence("b") == []  # the joining connection is not told of itself
    [event] = [f for f in harness.gateway.frames("a") if f["type"] == "presence"]
    assert (event["stream"], event["seq"]) == ("room:lobby", 2)  # logged: a resume replays it


def test_members_lists_users_with_their_connection_counts(harness: Harness) -> None:
    harness.connect("a1", userId="u_a")
    harness.connect("a2", userId="u_a")
    harness.connect("b", userId="u_b")
    for cid in ("a1", "a2", "b"):
        harness.send(cid, {"action": "join", "room": "lobby"})
    assert members(harness, "b") == {
        "type": "members",
        "ref": 1,
        "room": "lobby",
        "count": 2,
        "users": [{"userId": "u_a", "connections": 2}, {"userId": "u_b", "connections": 1}],
        "truncated": False,
    }


def test_members_of_a_room_one_is_not_in_is_forbidden(harness: Harness) -> None:
    harness.connect("a", userId="u_a")
    reply = members(harness, "a")
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "forbidden", 1)
    assert harness.send("a", {"action": "members"})["code"] == "bad_request"


def test_two_connections_of_one_user_enter_once_and_leave_once(harness: Harness, ddb: Any) -> None:
    harness.connect("w", userId="watcher")
    harness.send("w", {"action": "join", "room": "lobby"})
    harness.connect("a1", userId="u_a")
    harness.connect("a2", userId="u_a")
    harness.send("a1", {"action": "join", "room": "lobby"})
    harness.send("a2", {"action": "join", "room": "lobby"})
    assert harness.presence("w") == [("lobby", "enter", "u_a")]
    harness.send("a1", {"action": "leave", "room": "lobby"})
    assert harness.presence("w") == [("lobby", "enter", "u_a")]  # a2 is still there
    assert presence_items(ddb, "lobby")["u_a"] == ["a2"]
    harness.disconnect("a2")
    assert harness.presence("w") == [("lobby", "enter", "u_a"), ("lobby", "leave", "u_a")]
    assert presence_items(ddb, "lobby") == {"watcher": ["w"]}
    assert members(harness, "w")["users"] == [{"userId": "watcher", "connections": 1}]


def test_leave_command_of_the_last_connection_announces_leave(harness: Harness) -> None:
    harness.connect("w", userId="watcher")
    harness.connect("a", userId="u_a")
    harness.send("w", {"action": "join", "room": "lobby"})
    harness.send("a", {"action": "join", "room": "lobby"})
    harness.send("a", {"action": "leave", "room": "lobby"})
    assert harness.presence("w") == [("lobby", "enter", "u_a"), ("lobby", "leave", "u_a")]
    assert harness.presence("a") == []  # gone from the room before the event went out


def test_a_dropped_connection_whose_disconnect_is_lost_leaves_with_the_410_prune(
    harness: Harness, ddb: Any
) -> None:
    harness.connect("w", userId="watcher")
    harness.connect("a", userId="u_a")
    harness.send("w", {"action": "join", "room": "lobby"})
    harness.send("a", {"action": "join", "room": "lobby"})
    harness.gateway.outcomes["a"] = Outcome.GONE  # the socket is gone; no $disconnect comes
    ack = harness.send("w", {"action": "sendRoom", "room": "lobby", "text": "anyone?"})
    assert ack["gone"] == 1
    assert harness.presence("w") == [("lobby", "enter", "u_a"), ("lobby", "leave", "u_a")]
    assert "u_a" not in presence_items(ddb, "lobby")
    harness.disconnect("a")  # a late $disconnect after all: nothing more to announce
    assert len(harness.presence("w")) == 2


def test_disconnect_and_prune_racing_announce_one_leave(
    switchboard: Switchboard, harness: Harness, ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    atomic_requests(ddb, monkeypatch)
    harness.connect("w", userId="watcher")
    harness.connect("a", userId="u_a")
    harness.send("w", {"action": "join", "room": "lobby"})
    harness.send("a", {"action": "join", "room": "lobby"})
    harness.send("a", {"action": "join", "room": "side"})
    barrier = threading.Barrier(4)

    def forget() -> None:
        barrier.wait()
        switchboard.forget("a")

    threads = [threading.Thread(target=forget) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert harness.presence("w").count(("lobby", "leave", "u_a")) == 1
    assert presence_items(ddb, "lobby") == {"watcher": ["w"]} and presence_items(ddb, "side") == {}


def atomic_requests(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One moto request at a time: DynamoDB applies each request (a conditional write, a
    transaction) atomically; moto's in-memory backend does not lock between threads."""
    lock = threading.Lock()
    call = ddb._make_api_call

    def locked(*args: Any) -> Any:
        with lock:
            return call(*args)

    monkeypatch.setattr(ddb, "_make_api_call", locked)


def test_concurrent_joins_and_leaves_of_one_user_leave_nobody_stuck(
    switchboard: Switchboard,
    harness: Harness,
    registry: Registry,
    ddb: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    atomic_requests(ddb, monkeypatch)
    harness.connect("w", userId="watcher")
    harness.send("w", {"action": "join", "room": "lobby"})
    cids = [f"a{n}" for n in range(6)]
    for cid in cids:
        harness.connect(cid, userId="u_a")
    barrier = threading.Barrier(len(cids))

    def churn(cid: str) -> None:
        barrier.wait()
        # Presence returns what to announce; the switchboard announces it.
        for _ in range(3):
            switchboard.announce(switchboard.presence.join(registry.get(cid), "lobby"))  # type: ignore[arg-type]
            switchboard.announce(switchboard.presence.leave(registry.get(cid), "lobby"))  # type: ignore[arg-type]
        switchboard.announce(switchboard.presence.join(registry.get(cid), "lobby"))  # type: ignore[arg-type]
        switchboard.forget(cid)

    threads = [threading.Thread(target=churn, args=(cid,)) for cid in cids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = [e for _, e, u in harness.presence("w") if u == "u_a"]
    assert presence_items(ddb, "lobby") == {"watcher": ["w"]}
    assert events.count("enter") == events.count("leave") >= 1
    assert members(harness, "w")["count"] == 1


def test_over_the_cap_no_events_but_members_still_counts(capped: Harness) -> None:
    for n in range(4):
        capped.connect(f"c{n}", userId=f"u{n}")
        capped.send(f"c{n}", {"action": "join", "room": "lobby"})
    # Users 0 and 1 fit the cap of 2; from the third on the room is too big to announce.
    assert capped.presence("c0") == [("lobby", "enter", "u1")]
    assert capped.presence("c1") == []
    capped.send("c3", {"action": "leave", "room": "lobby"})  # 4 -> 3 users: still over
    assert capped.presence("c0") == [("lobby", "enter", "u1")]
    reply = members(capped, "c0")
    assert (reply["count"], len(reply["users"]), reply["truncated"]) == (3, 2, True)


def test_members_over_http_for_back_ends(harness: Harness) -> None:
    harness.connect("a", userId="u_a")
    harness.send("a", {"action": "join", "room": "lobby"})
    body = harness.client.http.get("/rooms/lobby/members").json_body
    assert body == {
        "room": "lobby",
        "count": 1,
        "users": [{"userId": "u_a", "connections": 1}],
        "truncated": False,
    }
    assert harness.client.http.get("/rooms/empty/members").json_body["count"] == 0
    assert harness.client.http.get("/rooms/no%23pe/members").status_code == 400


def test_presence_items_are_never_delivery_targets(harness: Harness, registry: Registry) -> None:
    harness.connect("a", userId="u_a")
    harness.send("a", {"action": "join", "room": "lobby"})
    assert [t.connection_id for t in registry.room_members("lobby")] == ["a"]


def test_an_expired_user_item_no_longer_counts(
    harness: Harness, registry: Registry, clock: Any
) -> None:
    harness.connect("a", userId="u_a")
    harness.send("a", {"action": "join", "room": "lobby"})
    clock.now += registry.ttl_seconds + 1  # its removal was lost: the ttl ends it
    assert harness.client.http.get("/rooms/lobby/members").json_body["count"] == 0


def test_a_removal_retried_after_its_answer_was_lost_leaves_and_deletes_the_item(
    harness: Harness, ddb: Any
) -> None:
    """The presence update of a removal is applied, its answer is lost (a read timeout) and
    botocore sends it again: the retry finds the id gone. The user still leaves (announced)
    and the emptied item is deleted, not left behind until its ttl."""
    harness.connect("w", userId="watcher")
    harness.connect("a", userId="u_a")
    harness.send("w", {"action": "join", "room": "lobby"})
    harness.send("a", {"action": "join", "room": "lobby"})
    lost: list[int] = []

    def lose_the_first_answer(attempts: int, **_: Any) -> int | None:
        if not lost:
            lost.append(attempts)
            return 0  # retry at once, as after a read timeout: the update was applied
        return None

    event = "needs-retry.dynamodb.UpdateItem"
    ddb.meta.events.register_first(event, lose_the_first_answer)
    try:
        harness.disconnect("a")
    finally:
        ddb.meta.events.unregister(event, lose_the_first_answer)
    assert lost == [1]
    assert harness.presence("w") == [("lobby", "enter", "u_a"), ("lobby", "leave", "u_a")]
    assert presence_items(ddb, "lobby") == {"watcher": ["w"]}


# --- member info and members pages (issue #24) ---------------------------------------------


@pytest.fixture
def paged_jwt_harness(registry: Registry, gateway: FakeGateway) -> Iterator[Harness]:
    """AUTH_MODE=jwt with members pages of at most 2 users."""
    sb = make_switchboard(registry, gateway, auth_mode="jwt", presence_max_list=2)
    with harness_over(sb, gateway) as driven:
        yield driven


def test_the_info_claim_is_in_enter_events_and_members_answers(paged_jwt_harness: Harness) -> None:
    ann = {"name": "Ann", "avatar": "a.png"}
    paged_jwt_harness.connect("a", token=token("u_a", info=ann))
    paged_jwt_harness.connect("b", token=token("u_b"))
    paged_jwt_harness.send("b", {"action": "join", "room": "lobby"})
    paged_jwt_harness.send("a", {"action": "join", "room": "lobby"})
    [enter] = [f for f in paged_jwt_harness.gateway.frames("b") if f["type"] == "presence"]
    assert (enter["event"], enter["userId"], enter["info"]) == ("enter", "u_a", ann)
    roster = members(paged_jwt_harness, "b")
    assert roster["users"] == [
        {"userId": "u_a", "connections": 1, "info": ann},
        {"userId": "u_b", "connections": 1},
    ]
    paged_jwt_harness.send("a", {"action": "leave", "room": "lobby"})
    leave = [f for f in paged_jwt_harness.gateway.frames("b") if f["type"] == "presence"][-1]
    assert leave["event"] == "leave" and "info" not in leave


def test_a_token_with_a_bad_info_claim_is_refused(paged_jwt_harness: Harness) -> None:
    payload = paged_jwt_harness.connect("a", token=token("u_a", info="not an object"))
    assert payload["statusCode"] == 401


def test_members_pages_with_a_cursor(paged_jwt_harness: Harness) -> None:
    for n in range(5):
        paged_jwt_harness.connect(f"c{n}", token=token(f"u{n}"))
        paged_jwt_harness.send(f"c{n}", {"action": "join", "room": "lobby"})
    listed: list[str] = []
    cursor = None
    for _ in range(5):
        frame = {"action": "members", "room": "lobby", **({"cursor": cursor} if cursor else {})}
        page = paged_jwt_harness.send("c0", frame)
        assert page["count"] == 5 and len(page["users"]) <= 2
        listed += [u["userId"] for u in page["users"]]
        cursor = page.get("next")
        if cursor is None:
            break
    assert listed == [f"u{n}" for n in range(5)]
    body = paged_jwt_harness.client.http.get(
        "/rooms/lobby/members?cursor=u1", headers={"Authorization": f"Bearer {admin()}"}
    ).json_body
    assert [u["userId"] for u in body["users"]] == ["u2", "u3"] and body["next"] == "u3"


def test_a_display_name_without_auth(harness: Harness) -> None:
    harness.connect("a", userId="u_a", name="Ann")
    harness.connect("b", userId="u_b")
    harness.send("b", {"action": "join", "room": "lobby"})
    harness.send("a", {"action": "join", "room": "lobby"})
    assert [f["info"] for f in harness.gateway.frames("b") if f["type"] == "presence"] == [
        {"name": "Ann"}
    ]
    assert members(harness, "b")["users"][0] == {
        "userId": "u_a",
        "connections": 1,
        "info": {"name": "Ann"},
    }
    assert harness.connect("c", userId="u_c", name="x" * 65)["statusCode"] == 400


def admin() -> str:
    return token("u_admin", role="admin")
