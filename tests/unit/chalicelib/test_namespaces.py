"""Namespaces: the shipped defaults, a room's namespace, inheritance, and bad documents."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import namespaces
from chalicelib.config import ConfigError
from chalicelib.namespaces import Ephemeral, HistorySince, Join, Namespaces, Send


def shipped() -> Namespaces:
    return namespaces.load(None)


def test_the_default_namespace_behaves_as_before_namespaces() -> None:
    ns = shipped().of("lobby")
    assert (ns.name, ns.join, ns.send) == ("default", Join.OPEN, Send.MEMBERS)
    assert ns.history and ns.history_since is HistorySince.RETAINED and ns.presence
    assert ns.max_members is None and ns.ephemeral is Ephemeral.ALLOWED
    assert not ns.guarded


def test_shipped_private_announce_and_support() -> None:
    config = shipped()
    private = config.of("private:team-42")
    assert (private.join, private.send) == (Join.CAPABILITY, Send.CAPABILITY)
    announce = config.of("announce:news")
    assert (announce.join, announce.send) == (Join.OPEN, Send.ADMIN)
    support = config.of("support:u_1")
    assert (support.join, support.authorizer) == (Join.AUTHORIZER, "authorize_support")
    assert config.authorizers() == {"authorize_support"}


@pytest.mark.parametrize(
    ("room", "expected"),
    [
        ("private:team-42", "private"),
        ("private:", "private"),  # an empty rest is still the namespace's
        ("private:a:b", "private"),  # the first ':' decides
        ("team:1", "default"),  # an unconfigured prefix
        ("private", "default"),  # no ':'
        ("Private:x", "default"),  # case-sensitive, as room names are
        ("xprivate:x", "default"),
    ],
)
def test_a_rooms_namespace_is_its_configured_prefix(room: str, expected: str) -> None:
    assert shipped().of(room).name == expected


def test_named_namespaces_inherit_from_default() -> None:
    config = namespaces.parse(
        {
            "namespaces": {
                "default": {"presence": False, "maxMembers": 20, "history": False},
                "team": {"join": "capability"},
                "open": {"presence": True, "history": {"since": "joined"}},
            }
        }
    )
    team = config.of("team:1")
    assert team.join is Join.CAPABILITY and not team.presence and team.max_members == 20
    assert not team.history
    opened = config.of("open:1")
    assert opened.presence and opened.history_since is HistorySince.JOINED
    assert not opened.history  # "since" alone leaves "enabled" inherited


def test_an_authorizer_is_not_inherited() -> None:
    with pytest.raises(ConfigError, match=r"namespaces\.x\.authorizer is required"):
        namespaces.parse(
            {
                "namespaces": {
                    "default": {"join": "authorizer", "authorizer": "fn"},
                    "x": {"send": "admin"},
                }
            }
        )


def _error(document: Any) -> str:
    with pytest.raises(ConfigError) as info:
        namespaces.parse(document)
    assert info.value.setting == "ROOM_NAMESPACES"  # a caller sees only the variable's name
    return str(info.value)


@pytest.mark.parametrize(
    ("document", "names"),
    [
        ([], "must be a JSON object"),
        ({"namespace": {}}, "unknown key 'namespace'"),
        ({"namespaces": []}, "'namespaces' must be an object"),
        ({"namespaces": {"private": {"join": "opne"}}}, "namespaces.private.join must be one of"),
        ({"namespaces": {"p": {"send": "everyone"}}}, "namespaces.p.send must be one of"),
        ({"namespaces": {"p": {"presense": True}}}, "namespaces.p.presense is not an option"),
        ({"namespaces": {"p": {"presence": "yes"}}}, "namespaces.p.presence must be true or false"),
        ({"namespaces": {"p": {"history": "on"}}}, "namespaces.p.history must be true, false"),
        ({"namespaces": {"p": {"history": {"since": "ever"}}}}, "namespaces.p.history.since"),
        ({"namespaces": {"p": {"history": {"on": True}}}}, "namespaces.p.history.on"),
        ({"namespaces": {"p": {"maxMembers": 0}}}, "namespaces.p.maxMembers must be an integer"),
        ({"namespaces": {"p": {"maxMembers": True}}}, "namespaces.p.maxMembers"),
        ({"namespaces": {"p": {"ephemeral": "never"}}}, "namespaces.p.ephemeral must be one of"),
        ({"namespaces": {"p": {"join": "authorizer"}}}, "namespaces.p.authorizer is required"),
        ({"namespaces": {"p": {"authorizer": "fn"}}}, "namespaces.p.authorizer is only used"),
        (
            {"namespaces": {"p": {"join": "authorizer", "authorizer": "a b"}}},
            "namespaces.p.authorizer must be a Chalice function name",
        ),
        (
            {
                "namespaces": {
                    "p": {"join": "authorizer", "authorizer": "f", "authorizerTimeoutMs": 60000}
                }
            },
            "namespaces.p.authorizerTimeoutMs",
        ),
        ({"namespaces": {"p": {"maxCacheSeconds": -1}}}, "namespaces.p.maxCacheSeconds"),
        ({"namespaces": {"p": {"description": 5}}}, "namespaces.p.description"),
        ({"namespaces": {"a:b": {}}}, "namespace name 'a:b'"),
        ({"namespaces": {"": {}}}, "namespace name ''"),
        ({"namespaces": {"p": []}}, "namespaces.p must be an object"),
    ],
)
def test_a_bad_document_is_refused_naming_the_key(document: Any, names: str) -> None:
    assert names in _error(document)


def test_the_setting_may_hold_the_document_inline() -> None:
    config = namespaces.load(json.dumps({"namespaces": {"vip": {"join": "capability"}}}))
    assert config.of("vip:1").join is Join.CAPABILITY
    assert config.of("private:1").name == "default"  # replaces the shipped document whole


def test_the_setting_may_name_another_file_of_the_package() -> None:
    assert namespaces.load("namespaces.json") == shipped()
    with pytest.raises(ConfigError, match="cannot read nope.json"):
        namespaces.load("nope.json")
    for bad in ("../secrets.json", "/etc/passwd", "x.txt", ".hidden.json"):
        with pytest.raises(ConfigError, match="ROOM_NAMESPACES must be inline JSON or the name"):
            namespaces.load(bad)


def test_inline_json_that_does_not_parse_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"ROOM_NAMESPACES \(inline JSON\) is not valid JSON"):
        namespaces.load("{nope")


def test_a_resolved_namespace_reads_back_the_same() -> None:
    for ns in shipped().all():
        again = namespaces.parse({"namespaces": {"default": namespaces.as_document(ns)}}).default
        assert again == ns.__class__(**{**ns.__dict__, "name": "default"})


def test_every_option_is_documented() -> None:
    from pathlib import Path

    protocol = (Path(__file__).resolve().parents[3] / "docs" / "PROTOCOL.md").read_text()
    for option in namespaces.option_names():
        assert f"`{option}`" in protocol, option


def test_a_configured_prefix_in_another_case_is_a_lookalike() -> None:
    config = shipped()
    assert config.lookalike("Private:x") == "private"
    assert config.lookalike("ANNOUNCE:x") == "announce"
    assert config.lookalike("private:x") is None
    assert config.lookalike("lobby") is None
    assert config.lookalike("team:x") is None
