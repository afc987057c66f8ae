"""chalicelib/ephemeral.py: what the sender asked for, within the room's rule."""

from __future__ import annotations

import pytest

from chalicelib.ephemeral import EphemeralRefused, EphemeralRule, default_rule, resolve


def test_by_default_the_sender_chooses() -> None:
    assert default_rule("room", "lobby") is EphemeralRule.ALLOWED
    assert resolve(True, EphemeralRule.ALLOWED, None) is True
    assert resolve(False, EphemeralRule.ALLOWED, "m-1") is False


def test_forbidden_refuses_an_ephemeral_send_and_keeps_logged_ones() -> None:
    with pytest.raises(EphemeralRefused) as info:
        resolve(True, EphemeralRule.FORBIDDEN, None)
    assert info.value.code == "forbidden"
    assert resolve(False, EphemeralRule.FORBIDDEN, "m-1") is False


def test_always_makes_every_send_ephemeral_and_refuses_a_client_msg_id() -> None:
    assert resolve(False, EphemeralRule.ALWAYS, None) is True
    with pytest.raises(EphemeralRefused) as info:
        resolve(False, EphemeralRule.ALWAYS, "m-1")
    assert info.value.code == "bad_request"


def test_the_rule_names_are_the_namespace_options() -> None:
    assert {r.value for r in EphemeralRule} == {"allowed", "forbidden", "always"}
