"""Who should have received what: sessions, sent messages, and the check between them.

A session is one connection, from the moment its handshake completed (``opened_at``: its
``$connect`` had registered it) to its last barrier (``ended_at``: every frame posted to it
before then has been read). A message is *owed* to a session that was open for the whole of
its fan-out (opened before the frame was sent, ended after the sender got the ack) and in its
scope for that whole time (joined the room before, left after; the target user). Sessions
that overlap only part of a fan-out may or may not get it. Nobody may get a message outside
its scope, nobody may get one twice, and every owed delivery that did not happen must be
counted ``failed`` in that message's report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

INF = math.inf


@dataclass
class Session:
    name: str
    user: str
    opened_at: float
    ended_at: float = INF
    rooms: dict[str, float] = field(default_factory=dict)  # room -> join acked at
    tried_rooms: set[str] = field(default_factory=set)  # every room a join was sent for
    left: dict[str, float] = field(default_factory=dict)  # room -> leave sent at
    messages: dict[str, float] = field(default_factory=dict)  # message id -> received at
    duplicates: int = 0
    stray: list[Any] = field(default_factory=list)
    how_closed: str = "open"

    def in_scope(self, sent: Sent) -> bool:
        """Could this session legitimately receive ``sent`` at all?"""
        if sent.sender == self.name:
            return False  # the sender's own connection is excluded from every fan-out
        if sent.scope == "all":
            return True
        if sent.scope == "room":
            return sent.target in self.tried_rooms
        return sent.target == self.user

    def owed(self, sent: Sent) -> bool:
        """Was this session certainly a recipient of ``sent``?"""
        if not (self.opened_at < sent.sent_at and self.ended_at > sent.acked_at):
            return False
        if not self.in_scope(sent):
            return False
        if sent.scope == "room":
            joined = self.rooms.get(str(sent.target))
            left = self.left.get(str(sent.target), INF)
            return joined is not None and joined < sent.sent_at and left > sent.acked_at
        return True


@dataclass
class Sent:
    sender: str
    scope: str  # all | room | user
    target: str | None
    sent_at: float
    acked_at: float
    reply: dict[str, Any] | None

    @property
    def id(self) -> str | None:
        if self.reply and self.reply.get("type") == "ack":
            return str(self.reply.get("id"))
        return None

    def count(self, key: str) -> int:
        return int((self.reply or {}).get(key, 0))


@dataclass
class Verdict:
    acked: int = 0  # fan-outs acked
    refused: int = 0  # answered with an error frame (nothing sent)
    unanswered: int = 0  # no reply at all
    owed: int = 0  # deliveries owed
    missing: int = 0  # owed and not received
    received: int = 0  # message frames received, all sessions
    delivered_reported: int = 0
    failed_reported: int = 0
    gone_reported: int = 0
    lost: int = 0  # owed, not received, not counted failed
    over_reported: int = 0  # received more than the report's delivered
    misdelivered: int = 0  # received outside its scope
    unaccounted: int = 0  # received a message id that no ack announced
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not (
            self.lost
            or self.over_reported
            or self.misdelivered
            or self.unaccounted
            or self.duplicates
            or self.unanswered
        )

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


def check(sessions: list[Session], sent: list[Sent]) -> Verdict:
    verdict = Verdict()
    by_id: dict[str, Sent] = {}
    for message in sent:
        if message.reply is None:
            verdict.unanswered += 1
            verdict.problems.append(f"no reply to {message.scope} {message.target}")
        elif message.id is None:
            verdict.refused += 1
        else:
            verdict.acked += 1
            by_id[message.id] = message
    for session in sessions:
        verdict.duplicates += session.duplicates
        verdict.received += len(session.messages)
        for mid in session.messages:
            message = by_id.get(mid)
            if message is None:
                verdict.unaccounted += 1
                if len(verdict.problems) < 20:
                    verdict.problems.append(f"{session.name} got {mid}, which no ack announced")
            elif not session.in_scope(message):
                verdict.misdelivered += 1
                if len(verdict.problems) < 20:
                    verdict.problems.append(
                        f"{session.name} ({session.user}) got {message.scope} "
                        f"{message.target} message {mid}"
                    )
    for mid, message in by_id.items():
        owed = [s for s in sessions if s.owed(message)]
        got = sum(1 for s in sessions if mid in s.messages)
        missing = sum(1 for s in owed if mid not in s.messages)
        delivered, failed = message.count("delivered"), message.count("failed")
        verdict.owed += len(owed)
        verdict.missing += missing
        verdict.delivered_reported += delivered
        verdict.failed_reported += failed
        verdict.gone_reported += message.count("gone")
        if missing > failed:
            verdict.lost += missing - failed
            if len(verdict.problems) < 20:
                verdict.problems.append(
                    f"{message.scope} {message.target} {mid}: {missing} owed deliveries "
                    f"missing, report says failed={failed}"
                )
        if got > delivered:
            verdict.over_reported += got - delivered
            if len(verdict.problems) < 20:
                verdict.problems.append(f"{mid}: {got} received, report says {delivered}")
    return verdict
