"""The send ledger on the in-memory table: one send per (userId, clientMsgId)."""

from __future__ import annotations

import pytest

from chalicelib.idempotency import AlreadySent, ClientMsgIdReused, SendInProgress, SendLedger
from tests.conftest import Clock
from tests.memtable import MemoryTable
from tests.unit.chalicelib.memory import START


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def mem(clock: Clock) -> MemoryTable:
    return MemoryTable(clock)


@pytest.fixture
def ledger(mem: MemoryTable) -> SendLedger:
    return SendLedger(mem, ttl_seconds=600, pending_seconds=90)


LOGGED = {"id": "m1", "stream": "room:lobby", "seq": 7}


def test_a_completed_send_answers_its_repeat_with_the_original(ledger: SendLedger) -> None:
    claim = ledger.claim("u1", "k1", "room:lobby", "hi")
    assert ledger.complete(claim, LOGGED) is True
    with pytest.raises(AlreadySent) as repeat:
        ledger.claim("u1", "k1", "room:lobby", "hi")
    assert repeat.value.answer()["seq"] == 7 and repeat.value.message_id == "m1"
    ledger.claim("u2", "k1", "room:lobby", "hi")  # another user's id is another send


def test_a_repeat_while_the_first_is_logged_is_told_to_retry(ledger: SendLedger) -> None:
    ledger.claim("u1", "k1", "room:lobby", "hi")
    with pytest.raises(SendInProgress):
        ledger.claim("u1", "k1", "room:lobby", "hi")


def test_an_id_reused_for_another_message_is_refused(ledger: SendLedger) -> None:
    ledger.claim("u1", "k1", "room:lobby", "hi")
    with pytest.raises(ClientMsgIdReused):
        ledger.claim("u1", "k1", "room:lobby", "other text")
    with pytest.raises(ClientMsgIdReused):
        ledger.claim("u1", "k1", "room:side", "hi")


def test_a_stale_claim_is_taken_over_and_its_writer_cannot_complete(
    ledger: SendLedger, clock: Clock
) -> None:
    first = ledger.claim("u1", "k1", "room:lobby", "hi")
    clock.now += 91  # its writer died before logging
    second = ledger.claim("u1", "k1", "room:lobby", "hi")
    assert second.at > first.at
    assert ledger.complete(first, LOGGED) is False
    assert ledger.complete(second, LOGGED) is True


def test_a_released_claim_lets_the_retry_send_and_an_expired_record_counts_as_absent(
    ledger: SendLedger, clock: Clock
) -> None:
    claim = ledger.claim("u1", "k1", "room:lobby", "hi")
    ledger.release(claim)
    done = ledger.claim("u1", "k1", "room:lobby", "hi")
    ledger.complete(done, LOGGED)
    clock.now += 601  # past IDEMPOTENCY_TTL_SECONDS: TTL may not have deleted it yet
    ledger.claim("u1", "k1", "room:lobby", "hi")
