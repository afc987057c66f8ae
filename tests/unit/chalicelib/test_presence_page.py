"""chalicelib/presence_store.py ``page_of``: a members answer, one page at a time."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import protocol
from chalicelib.presence_store import page_of


def users(n: int, info_bytes: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        user: dict[str, Any] = {"userId": f"u{i:04d}", "connections": 1}
        if info_bytes:
            user["info"] = {"name": "x" * info_bytes}
        out.append(user)
    return out


def test_pages_follow_the_cursor_and_count_everyone() -> None:
    everyone = users(5)
    count, page, nxt = page_of(iter(everyone), None, 2, 10_000)
    assert (count, [u["userId"] for u in page], nxt) == (5, ["u0000", "u0001"], "u0001")
    count, page, nxt = page_of(iter(everyone), nxt, 2, 10_000)
    assert (count, [u["userId"] for u in page], nxt) == (5, ["u0002", "u0003"], "u0003")
    count, page, nxt = page_of(iter(everyone), nxt, 2, 10_000)
    assert (count, [u["userId"] for u in page], nxt) == (5, ["u0004"], None)


def test_a_page_stays_within_one_post_with_1_kb_of_info_per_user() -> None:
    everyone = users(300, info_bytes=1000)
    limit = protocol.MAX_PAYLOAD_BYTES - protocol.FRAME_ENVELOPE_BYTES
    count, page, nxt = page_of(iter(everyone), None, 1000, limit)
    frame = protocol.members_frame(
        "r" * 64, {"room": "r" * 64, "count": count, "users": page, "truncated": True, "next": nxt}
    )
    assert len(protocol.encode(frame)) <= protocol.MAX_PAYLOAD_BYTES
    assert 100 <= len(page) < 300 and nxt == page[-1]["userId"]


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=60),
    max_list=st.integers(min_value=1, max_value=20),
    max_bytes=st.integers(min_value=50, max_value=2000),
)
def test_paging_to_the_end_lists_everyone_once_in_order(
    n: int, max_list: int, max_bytes: int
) -> None:
    everyone = users(n, info_bytes=10)
    listed: list[str] = []
    cursor = None
    for _ in range(n + 2):
        count, page, cursor = page_of(iter(everyone), cursor, max_list, max_bytes)
        assert count == n and len(page) <= max_list
        assert len(page) == 1 or sum(len(protocol.encode(u)) + 1 for u in page) <= max_bytes
        listed += [u["userId"] for u in page]
        if cursor is None:
            break
    assert listed == [u["userId"] for u in everyone]
