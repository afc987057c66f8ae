"""The ``rooms`` claim: patterns, specificity, and malformed claims."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.capabilities import (
    ALL_OPERATIONS,
    NONE,
    ClaimError,
    Operation,
    parse_claim,
)

JOIN, SEND, HISTORY, PRESENCE = Operation


def test_the_issue_example() -> None:
    caps = parse_claim(
        {
            "private:team-42": ["join", "send", "history", "presence"],
            "private:org-7-*": ["join"],
        }
    )
    assert caps.operations("private:team-42") == ALL_OPERATIONS
    assert caps.operations("private:org-7-sales") == {JOIN}
    assert caps.operations("private:org-7-") == {JOIN}  # the prefix itself matches
    assert caps.operations("private:org-8-sales") == frozenset()
    assert caps.operations("private:team-420") == frozenset()  # exact means exact


def test_the_most_specific_entry_wins_alone() -> None:
    caps = parse_claim(
        {
            "*": ["history"],
            "private:*": ["*"],
            "private:ro-*": ["join"],
            "private:ro-special": ["join", "send"],
        }
    )
    assert caps.operations("lobby") == {HISTORY}
    assert caps.operations("private:x") == ALL_OPERATIONS
    assert caps.operations("private:ro-1") == {JOIN}  # not the union with private:*
    assert caps.operations("private:ro-special") == {JOIN, SEND}
    assert not caps.allows("private:ro-1", SEND)


def test_an_exact_name_beats_a_longer_pattern() -> None:
    caps = parse_claim({"a": ["join"], "a*": ["send"]})
    assert caps.operations("a") == {JOIN}
    assert caps.operations("ab") == {SEND}


def test_star_means_every_operation() -> None:
    assert parse_claim({"x": ["*"]}).operations("x") == ALL_OPERATIONS
    assert parse_claim({"x": ["join", "*"]}).operations("x") == ALL_OPERATIONS


def test_no_claim_grants_nothing() -> None:
    assert parse_claim(None) is NONE
    assert not NONE
    assert NONE.operations("lobby") == frozenset()


def test_room_names_are_matched_case_sensitively() -> None:
    caps = parse_claim({"private:Team-*": ["join"]})
    assert caps.allows("private:Team-1", JOIN)
    assert not caps.allows("private:team-1", JOIN)


def test_the_claim_reads_back_in_its_own_shape() -> None:
    claim = {"private:a": ["join", "send"], "private:b-*": ["history"], "*": ["presence"]}
    caps = parse_claim(claim)
    assert parse_claim(caps.as_claim()) == caps
    assert caps.as_claim()["private:a"] == ["join", "send"]


def test_rooms_lost_between_two_grants() -> None:
    old = parse_claim({"private:*": ["join"]})
    new = parse_claim({"private:a": ["join"], "private:b": ["send"]})
    assert old.rooms_lost(new, ["private:a", "private:b", "lobby"]) == {"private:b"}


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        (["private:a"], "must be an object"),
        ("private:a", "must be an object"),
        ({"private:a": "join"}, "non-empty list"),
        ({"private:a": []}, "non-empty list"),
        ({"private:a": ["read"]}, "'read' is not an operation"),
        ({"private:a": [1]}, "is not an operation"),
        ({"priv*ate:*": ["join"]}, "a pattern is a room-name prefix"),
        ({"**": ["join"]}, "a pattern is a room-name prefix"),
        ({"room with space": ["join"]}, "not a room name"),
        ({"caf\u00e9": ["join"]}, "not a room name"),
        ({"": ["join"]}, "not a room name"),
        ({"x" * 65: ["join"]}, "not a room name"),
        ({f"r{i}": ["join"] for i in range(65)}, "more than 64 entries"),
    ],
)
def test_a_malformed_claim_is_refused(claim: Any, message: str) -> None:
    with pytest.raises(ClaimError, match=message):
        parse_claim(claim)
