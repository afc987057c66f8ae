"""Room namespaces: who may join, send, read history and see presence, per kind of room.

A room's namespace is the part of its name before the first ``:`` when that prefix is a
configured namespace (``private:team-42`` -> ``private``); any other name (no ``:``, or an
unconfigured prefix such as ``team:1``) is in the ``default`` namespace, so the names clients
used before namespaces existed keep working.

The namespaces of a stage are one JSON document (``chalicelib/namespaces.json`` is shipped in
the zip; the ``ROOM_NAMESPACES`` setting may name another file of the package or hold the
document inline). It is validated once, when the container builds its settings: a bad key or
value is a ``ConfigError`` naming the key (``ROOM_NAMESPACES: namespaces.private.join must be
one of ...``), never a surprise at the first join.

Document shape (docs/PROTOCOL.md, "Permissions", explains each option)::

    {"namespaces": {"default": {...options}, "private": {...options}, ...}}

A named namespace inherits every option it leaves out from ``default``; ``default`` inherits
from ``BUILTIN`` (today's behaviour: open join, members send, history, presence).
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from chalicelib.config import ConfigError

SETTING = "ROOM_NAMESPACES"
DEFAULT = "default"
NAMESPACES_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "namespaces.json")
# A namespace is a room-name prefix: the room charset without ":" (protocol.ROOM_RE).
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
# An authorizer is named by its Chalice function name (``@app.lambda_function(name=...)``):
# Lambda's function-name charset, and short enough for "<app>-<stage>-<name>" within 64.
FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# How long an authorizer may take: a join waits for it, and $connect (10 s) runs the
# checks of its autoJoin rooms side by side, so one call must leave room for the writes.
MAX_AUTHORIZER_TIMEOUT_MS = 5_000
MAX_CACHE_SECONDS = 3600
MAX_DESCRIPTION_CHARS = 500


class Join(enum.StrEnum):
    """Who may join (and so read history and see presence: the read side)."""

    OPEN = "open"  # any authenticated user
    CAPABILITY = "capability"  # the token's ``rooms`` claim must grant the operation
    AUTHORIZER = "authorizer"  # the app's authorizer function decides (or the token grants)


class Send(enum.StrEnum):
    """Who may send to a room they are a member of."""

    MEMBERS = "members"
    CAPABILITY = "capability"  # the ``send`` operation from the token (or the authorizer)
    ADMIN = "admin"  # the admin role only


class HistorySince(enum.StrEnum):
    """How far back a member may read: all the log retains, or only since they joined."""

    RETAINED = "retained"
    JOINED = "joined"


class Ephemeral(enum.StrEnum):
    """Whether sends may (or must) skip the message log (the event-model issue's option)."""

    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"
    ALWAYS = "always"


@dataclass(frozen=True)
class Namespace:
    """One namespace's options, every one resolved (no inheritance left to do)."""

    name: str = DEFAULT
    join: Join = Join.OPEN
    send: Send = Send.MEMBERS
    history: bool = True
    history_since: HistorySince = HistorySince.RETAINED
    presence: bool = True
    # Users present at once; None: only the per-user and per-connection room caps apply.
    max_members: int | None = None
    ephemeral: Ephemeral = Ephemeral.ALLOWED
    # Added (docs/PROTOCOL.md says why): the authorizer function's Chalice name, how long the
    # join waits for it, and the longest its answer is cached whatever ttlSeconds it returns.
    authorizer: str | None = None
    authorizer_timeout_ms: int = 2000
    max_cache_seconds: int = 300
    description: str = ""
    # Which room events reach the EventBridge bus (chalicelib/bus.py, docs/EVENTS.md), when
    # the stage has one: "presence" (enter/leave, when presence is on) and "published"
    # (every message, for archival, moderation, analytics).
    events: frozenset[str] = frozenset({"presence"})

    @property
    def guarded(self) -> bool:
        """Whether reads (history, presence) need a grant, not just membership."""
        return self.join is not Join.OPEN


BUILTIN = Namespace()


@dataclass(frozen=True)
class Namespaces:
    """A stage's namespaces; ``of(room)`` is the one a room belongs to."""

    default: Namespace = BUILTIN
    named: Mapping[str, Namespace] = field(default_factory=dict)

    def of(self, room: str) -> Namespace:
        prefix, colon, _ = room.partition(":")
        if colon and prefix in self.named:
            return self.named[prefix]
        return self.default

    def lookalike(self, room: str) -> str | None:
        """The configured namespace a room's prefix spells in another case (``Private:x``),
        or None. Room names are case-sensitive, so ``Private:x`` would be an open room of the
        default namespace: such names are refused rather than silently left unguarded."""
        prefix, colon, _ = room.partition(":")
        if not colon or prefix in self.named:
            return None
        folded = prefix.casefold()
        return next((name for name in self.named if name.casefold() == folded), None)

    def authorizers(self) -> set[str]:
        """The Chalice names of every authorizer function a namespace uses."""
        return {ns.authorizer for ns in self.all() if ns.authorizer is not None}

    def all(self) -> list[Namespace]:
        return [self.default, *self.named.values()]


# --- loading and validation ------------------------------------------------------------------

# JSON option name -> how it is read. Every key a namespace may have is here: any other is an
# error (a misspelled "presense" must not silently mean "presence on").
_ENUMS: dict[str, type[enum.StrEnum]] = {
    "join": Join,
    "send": Send,
    "ephemeral": Ephemeral,
}
_OPTIONS = (
    "join",
    "send",
    "history",
    "presence",
    "maxMembers",
    "ephemeral",
    "authorizer",
    "authorizerTimeoutMs",
    "maxCacheSeconds",
    "description",
    "events",
)
# The values of the ``events`` option (bus.ROOM_EVENTS; not imported: bus.py is above this).
ROOM_EVENTS = ("presence", "published")


def parse(document: Any, source: str = SETTING) -> Namespaces:
    """Validate a namespaces document; a ConfigError names the first bad key."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the document must be a JSON object")
    unknown = sorted(set(document) - {"namespaces", "$comment"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (expected 'namespaces')")
    entries = document.get("namespaces")
    if not isinstance(entries, dict):
        raise ConfigError(f"{source}: 'namespaces' must be an object of name -> options")
    default = _namespace(DEFAULT, entries.get(DEFAULT, {}), BUILTIN, source)
    named: dict[str, Namespace] = {}
    for name, options in entries.items():
        if name == DEFAULT:
            continue
        if not isinstance(name, str) or not NAMESPACE_RE.fullmatch(name):
            raise ConfigError(
                f"{source}: namespace name {name!r} must be 1-63 characters of "
                "A-Z a-z 0-9 _ . - (a room-name prefix, without ':')"
            )
        named[name] = _namespace(name, options, default, source)
    return Namespaces(default, named)


def _namespace(name: str, options: Any, base: Namespace, source: str) -> Namespace:
    where = f"{source}: namespaces.{name}"
    if not isinstance(options, dict):
        raise ConfigError(f"{where} must be an object of options")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]} is not an option (expected one of {', '.join(_OPTIONS)})"
        )
    # Inherited options, except the authorizer's name: it belongs to a namespace's own
    # ``join: authorizer`` and must be named where that is said.
    ns = replace(base, name=name, authorizer=None, description="")
    changes: dict[str, Any] = {}
    for key, kind in _ENUMS.items():
        if key in options:
            changes[key] = _choice(options[key], kind, f"{where}.{key}")
    if "history" in options:
        changes.update(_history(options["history"], f"{where}.history"))
    if "presence" in options:
        changes["presence"] = _bool(options["presence"], f"{where}.presence")
    if "maxMembers" in options:
        value = options["maxMembers"]
        changes["max_members"] = (
            None if value is None else _int(value, f"{where}.maxMembers", 1, 100_000)
        )
    if "authorizer" in options:
        value = options["authorizer"]
        if not isinstance(value, str) or not FUNCTION_NAME_RE.fullmatch(value):
            raise ConfigError(
                f"{where}.authorizer must be a Chalice function name "
                "(1-40 characters of A-Z a-z 0-9 _ -)"
            )
        changes["authorizer"] = value
    if "authorizerTimeoutMs" in options:
        changes["authorizer_timeout_ms"] = _int(
            options["authorizerTimeoutMs"],
            f"{where}.authorizerTimeoutMs",
            50,
            MAX_AUTHORIZER_TIMEOUT_MS,
        )
    if "maxCacheSeconds" in options:
        changes["max_cache_seconds"] = _int(
            options["maxCacheSeconds"], f"{where}.maxCacheSeconds", 0, MAX_CACHE_SECONDS
        )
    if "description" in options:
        value = options["description"]
        if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_CHARS:
            raise ConfigError(
                f"{where}.description must be a string of at most {MAX_DESCRIPTION_CHARS} characters"
            )
        changes["description"] = value
    if "events" in options:
        value = options["events"]
        if not isinstance(value, list) or not all(v in ROOM_EVENTS for v in value):
            raise ConfigError(
                f"{where}.events must be a list of {', '.join(ROOM_EVENTS)}, got {value!r}"
            )
        changes["events"] = frozenset(value)
    ns = replace(ns, **changes)
    if ns.join is Join.AUTHORIZER and ns.authorizer is None:
        raise ConfigError(f"{where}.authorizer is required with join 'authorizer'")
    if ns.join is not Join.AUTHORIZER and ns.authorizer is not None:
        raise ConfigError(f"{where}.authorizer is only used with join 'authorizer'")
    return ns


def _choice(value: Any, kind: type[enum.StrEnum], where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise ConfigError(f"{where} must be one of {choices}, got {value!r}") from None


def _history(value: Any, where: str) -> dict[str, Any]:
    """``true``/``false``, or ``{"enabled": bool, "since": "retained"|"joined"}``."""
    if isinstance(value, bool):
        return {"history": value}
    if not isinstance(value, dict):
        raise ConfigError(f'{where} must be true, false or {{"enabled": ..., "since": ...}}')
    unknown = sorted(set(value) - {"enabled", "since"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]} is not an option (expected enabled, since)")
    out: dict[str, Any] = {}
    if "enabled" in value:
        out["history"] = _bool(value["enabled"], f"{where}.enabled")
    if "since" in value:
        out["history_since"] = _choice(value["since"], HistorySince, f"{where}.since")
    return out


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where} must be an integer from {low} to {high}, got {value!r}")
    return value


def load(raw: str | None) -> Namespaces:
    """The namespaces a ``ROOM_NAMESPACES`` value means: empty -> the shipped
    ``chalicelib/namespaces.json``; a value starting with ``{`` -> the document inline;
    anything else -> a file name, relative to ``chalicelib/`` (the zip holds no other files)."""
    raw = (raw or "").strip()
    if raw.startswith("{"):
        return parse(_json(raw, f"{SETTING} (inline JSON)"), SETTING)
    path = NAMESPACES_PATH if not raw else _package_file(raw)
    return _load_file(path)


@cache
def _load_file(path: str) -> Namespaces:
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{SETTING}: cannot read {name}: {exc.strerror}") from None
    return parse(_json(text, f"{SETTING} ({name})"), f"{SETTING} ({name})")


def _package_file(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+\.json", raw) or raw.startswith("."):
        raise ConfigError(
            f"{SETTING} must be inline JSON or the name of a .json file in chalicelib/, got {raw!r}"
        )
    return os.path.join(os.path.dirname(NAMESPACES_PATH), raw)


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from None


def option_names() -> tuple[str, ...]:
    """The JSON option names a namespace may set (docs and tests list them from here)."""
    return _OPTIONS


def as_document(ns: Namespace) -> dict[str, Any]:
    """A resolved namespace as JSON options (what ``parse`` would read back)."""
    out: dict[str, Any] = {
        "join": ns.join.value,
        "send": ns.send.value,
        "history": {"enabled": ns.history, "since": ns.history_since.value},
        "presence": ns.presence,
        "maxMembers": ns.max_members,
        "ephemeral": ns.ephemeral.value,
        "authorizerTimeoutMs": ns.authorizer_timeout_ms,
        "maxCacheSeconds": ns.max_cache_seconds,
        "events": sorted(ns.events),
    }
    if ns.authorizer is not None:
        out["authorizer"] = ns.authorizer
    if ns.description:
        out["description"] = ns.description
    return out


__all__ = [
    "BUILTIN",
    "DEFAULT",
    "Ephemeral",
    "HistorySince",
    "Join",
    "Namespace",
    "Namespaces",
    "Send",
    "load",
    "parse",
]
