"""The continuation job guard on the in-memory table: signatures, expiry and the one-time claim.

The functional tier (tests/functional/chalicelib/test_continuation_guard.py) runs the same guard through a
worker on moto; these pin the ledger's states and the signer's refusals without a socket.
"""

from __future__ import annotations

import pytest

from chalicelib import keys
from chalicelib.continuation_guard import CLAIM_STALE_SECONDS, JobLedger, JobSigner, RefusedJob
from tests.conftest import Clock
from tests.memtable import MemoryTable
from tests.unit.chalicelib.memory import START

KEY = b"k" * 32


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def mem(clock: Clock) -> MemoryTable:
    return MemoryTable(clock)


def test_a_job_is_claimed_once_and_done_stays_done(mem: MemoryTable, clock: Clock) -> None:
    ledger = JobLedger(mem)
    exp = int(clock.now) + 900
    assert ledger.claim("j1", exp) == JobLedger.CLAIMED
    assert ledger.claim("j1", exp) == JobLedger.BUSY  # its worker is still on it
    ledger.complete("j1")
    assert ledger.claim("j1", exp) == JobLedger.DONE
    clock.now += CLAIM_STALE_SECONDS + 1
    assert ledger.claim("j1", exp) == JobLedger.DONE  # a done job never goes stale
    # The claim is an item of the one table, under the key keys.py spells, expiring with it.
    item = mem.get(keys.job_claim_key("j1"))
    assert item is not None and item["state"] == "done" and item[keys.TTL] == exp


def test_a_dead_workers_claim_goes_stale_and_a_released_one_is_free(
    mem: MemoryTable, clock: Clock
) -> None:
    ledger = JobLedger(mem)
    exp = int(clock.now) + 900
    assert ledger.claim("j1", exp) == JobLedger.CLAIMED
    clock.now += CLAIM_STALE_SECONDS - 1
    assert ledger.claim("j1", exp) == JobLedger.BUSY
    clock.now += 2
    assert ledger.claim("j1", exp) == JobLedger.CLAIMED  # taken over
    ledger.release("j1")
    assert mem.get(keys.job_claim_key("j1")) is None
    assert ledger.claim("j1", exp) == JobLedger.CLAIMED


def test_a_claim_past_its_ttl_counts_as_absent(mem: MemoryTable, clock: Clock) -> None:
    # DynamoDB's TTL deletes only eventually: an expired item may still be there.
    ledger = JobLedger(mem)
    assert ledger.claim("j1", int(clock.now) + 10) == JobLedger.CLAIMED
    ledger.complete("j1")
    clock.now += 10
    assert ledger.claim("j1", int(clock.now) + 900) == JobLedger.CLAIMED


def test_the_signer_refuses_anything_it_did_not_sign_or_past_its_expiry(clock: Clock) -> None:
    signer = JobSigner(KEY, ttl_seconds=60, clock=clock)
    body = signer.sign('{"v":3}')
    assert signer.open(body) == '{"v":3}'
    for forged in (
        JobSigner(b"x" * 32).sign('{"v":3}'),
        body.replace("3", "4"),
        '{"v":3}',
        "." + '{"v":3}',
        "z" * 64 + '.{"v":3}',
    ):
        with pytest.raises(RefusedJob):
            signer.open(forged)
    exp = signer.expiry()
    signer.check_expiry(exp)
    clock.now += 60
    with pytest.raises(RefusedJob, match="expired"):
        signer.check_expiry(exp)
