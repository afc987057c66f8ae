"""Auth attacks and access control, against the real handshake and HTTP routes.

- Tokens that must be refused at the handshake with 401: missing, garbage, expired, signed
  with another secret, ``alg: none`` (any spelling), a tampered ``sub`` or ``role`` with the
  original signature, another HMAC algorithm, no ``exp``, no ``sub``, no ``iat``, a future
  ``nbf`` or ``iat``, a lifetime (``exp - iat``) over the 24 h maximum, a ``sub`` that is not
  a valid user id, a stripped signature, the token in a header instead of the query, and
  hypothesis-generated garbage; with RS256 configured, HS256 signed with the
  RSA public key (algorithm confusion) and RS256 from another key pair.
- Identity comes from the token only (``?userId=``/``?role=`` are ignored); a non-admin
  ``broadcastAll`` is forbidden; the HTTP push routes answer 401 without a valid token and
  403 without the admin role.
- Ids and room names with key delimiters, overlong or odd unicode are refused; nobody reads
  or posts to a room they are not in, reads another user's messages, or sends as someone else.
"""

from __future__ import annotations

import base64
import collections
import functools
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus

from tests.gateways import http
from tests.helpers import AUDIENCE, ISSUER, JWT_ENV, SECRET, token
from tests.reliability.conftest import Figures, StackFactory
from tests.reliability.scale import SCALE
from tests.reliability.stack import StackUnderTest
from tests.wsclient import WsConnect, open_ws, quiet, recv_json, send

pytestmark = pytest.mark.timeout(SCALE.timeout)


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs(
    header: dict[str, Any], claims: dict[str, Any], key: bytes, digest: Any = hashlib.sha256
) -> str:
    """A JWT signed by hand (PyJWT refuses some of these keys, attackers do not)."""
    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(sub: Any = "u_1", exp_in: int = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": sub,
        "iat": now,
        "exp": now + exp_in,
        "iss": ISSUER,
        "aud": AUDIENCE,
        **extra,
    }


def without(payload: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key != name}


def unsigned(alg: str, payload: dict[str, Any]) -> str:
    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(payload)}."


def tampered(original: str, **changes: Any) -> str:
    """Change claims and keep the original signature."""
    header, payload, signature = original.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{b64({**data, **changes})}.{signature}"


def hs256_bad_tokens() -> list[tuple[str, str]]:
    good = token("u_1")
    return [
        ("garbage", "garbage"),
        ("empty", ""),
        ("expired", token("u_1", exp_in=-60)),
        ("other secret", jwt.encode(claims(), "another-secret-that-is-long-enough!!", "HS256")),
        ("alg none", unsigned("none", claims())),
        ("alg None", unsigned("None", claims())),
        ("alg NONE", unsigned("NONE", claims())),
        ("alg none, role admin", unsigned("none", claims(role="admin"))),
        ("tampered sub", tampered(good, sub="ops")),
        ("tampered role", tampered(good, role="admin")),
        ("tampered exp", tampered(token("u_1", exp_in=-60), exp=int(time.time()) + 3600)),
        ("HS512, same secret", hs({"alg": "HS512"}, claims(), SECRET.encode(), hashlib.sha512)),
        ("HS384, same secret", hs({"alg": "HS384"}, claims(), SECRET.encode(), hashlib.sha384)),
        ("no exp", jwt.encode(without(claims(), "exp"), SECRET, "HS256")),
        ("no iss", jwt.encode(without(claims(), "iss"), SECRET, "HS256")),
        ("no aud", jwt.encode(without(claims(), "aud"), SECRET, "HS256")),
        ("another service's iss", jwt.encode(claims(iss="https://other.test/"), SECRET, "HS256")),
        ("another service's aud", jwt.encode(claims(aud="other-service"), SECRET, "HS256")),
        (
            "exp a numeric string",
            jwt.encode(claims(exp=str(int(time.time()) + 60)), SECRET, "HS256"),
        ),
        ("iat a numeric string", jwt.encode(claims(iat=str(int(time.time()))), SECRET, "HS256")),
        ("no sub", jwt.encode(without(claims(), "sub"), SECRET, "HS256")),
        ("no iat", jwt.encode(without(claims(), "iat"), SECRET, "HS256")),
        ("iat in the future", jwt.encode(claims(iat=int(time.time()) + 600), SECRET, "HS256")),
        ("lifetime over 24 h", jwt.encode(claims(exp_in=86400 + 60), SECRET, "HS256")),
        ("future nbf", jwt.encode(claims(nbf=int(time.time()) + 3600), SECRET, "HS256")),
        ("sub with #", jwt.encode(claims(sub="u#1"), SECRET, "HS256")),
        ("sub USER#", jwt.encode(claims(sub="USER#u_1"), SECRET, "HS256")),
        ("sub overlong", jwt.encode(claims(sub="u" * 129), SECRET, "HS256")),
        ("sub unicode", jwt.encode(claims(sub="ü_1"), SECRET, "HS256")),
        ("sub zero-width", jwt.encode(claims(sub="u_1\u200b"), SECRET, "HS256")),
        ("sub empty", jwt.encode(claims(sub=""), SECRET, "HS256")),
        ("sub number", hs({"alg": "HS256", "typ": "JWT"}, claims(sub=123), SECRET.encode())),
        ("signature stripped", good.rsplit(".", 1)[0] + "."),
        ("signature of another token", good.rsplit(".", 1)[0] + "." + token("u_2").split(".")[2]),
        ("kid injection, empty key", hs({"alg": "HS256", "kid": "../../dev/null"}, claims(), b"")),
        ("two dots only", ".."),
        ("huge", "a" * 4000),
    ]


class Handshakes:
    """Connect attempts with their outcome: the status of a refusal, or 101."""

    def __init__(self, sb: StackUnderTest) -> None:
        self.sb = sb
        self.outcomes: collections.Counter[int] = collections.Counter()

    def status(self, query: str = "", **options: Any) -> int:
        try:
            with open_ws(self.sb.gateway, query, **options):
                status = 101
        except InvalidStatus as exc:
            status = exc.response.status_code
            assert json.loads(exc.response.body)["message"], exc.response.body
        self.outcomes[status] += 1
        return status


_send = functools.partial(send, timeout=10)


@pytest.fixture
def jwt_switchboard(switchboard_factory: StackFactory) -> StackUnderTest:
    return switchboard_factory(auth_mode="jwt", env=JWT_ENV, rest_port=0)


def test_bad_tokens_are_refused_at_the_handshake(
    jwt_switchboard: StackUnderTest, figures: Figures
) -> None:
    sb = jwt_switchboard
    shakes = Handshakes(sb)
    refused: dict[str, int] = {"missing": shakes.status("")}
    for name, bad in hs256_bad_tokens():
        refused[name] = shakes.status(f"token={quote(bad, safe='')}")
    refused["userId instead of token"] = shakes.status("userId=u_1")
    refused["token in a header"] = shakes.status(
        "", additional_headers={"Authorization": f"Bearer {token('u_1')}"}
    )

    @settings(
        max_examples=SCALE.auth_fuzz_examples,
        deadline=None,
        derandomize=SCALE.name != "soak",
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.text(max_size=300)
        | st.lists(st.binary(max_size=120).map(b64), min_size=3, max_size=3).map(".".join)
        | st.builds(
            lambda h, c: f"{b64(h)}.{b64(c)}.{b64(b'x' * 32)}",
            st.dictionaries(st.sampled_from(["alg", "typ", "kid"]), st.text(max_size=10)),
            st.dictionaries(st.sampled_from(["sub", "exp", "role"]), st.text(max_size=10)),
        )
    )
    def garbage(bad: str) -> None:
        assert shakes.status(f"token={quote(bad, safe='')}") == 401

    garbage()
    accepted = shakes.status(f"token={token('u_1')}")
    leaked = sb.registry().items  # only the accepted one connected, and it closed
    sb.wait_for_disconnects(timeout=15)
    leaked = sb.wait_for_registry(lambda r: r.items == 0, timeout=15).items
    figures.record(
        "auth: handshake tokens (HS256)",
        clients=sum(shakes.outcomes.values()),
        messages=0,
        faults=f"{len(refused)} crafted bad tokens + {SCALE.auth_fuzz_examples} hypothesis ones",
        leaked=leaked,
        lost=0,
        outcomes=dict(shakes.outcomes),
        connect_invocations=sb.invocations.counts["$connect"],
        handler_errors=sb.handler_errors(),
    )
    wrong = {name: status for name, status in refused.items() if status != 401}
    assert wrong == {}, wrong
    assert accepted == 101
    assert shakes.outcomes[101] == 1
    assert sb.invocations.refused[401] == sum(shakes.outcomes.values()) - 1
    assert leaked == 0
    assert sb.handler_errors() == 0, sb.error_details()


def test_algorithm_confusion_is_refused_with_rs256(
    switchboard_factory: StackFactory, figures: Figures
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    def keypair() -> tuple[Any, bytes]:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return private, public

    private, public = keypair()
    other_private, _ = keypair()
    sb = switchboard_factory(
        auth_mode="jwt", env={**JWT_ENV, "JWT_SECRET": public.decode(), "JWT_ALGORITHM": "RS256"}
    )
    shakes = Handshakes(sb)
    attacks = {
        # The classic: the server's public key (public!) as an HMAC secret.
        "HS256 signed with the RSA public key": hs(
            {"alg": "HS256", "typ": "JWT"}, claims(), public
        ),
        "HS256 signed with the public key, no newline": hs(
            {"alg": "HS256", "typ": "JWT"}, claims(), public.strip()
        ),
        "HS512 signed with the RSA public key": hs(
            {"alg": "HS512", "typ": "JWT"}, claims(), public, hashlib.sha512
        ),
        "RS256 from another key pair": jwt.encode(claims(), other_private, "RS256"),
        "alg none": unsigned("none", claims()),
        "PS256 with the right key": jwt.encode(claims(), private, "PS256"),
        "RS256, tampered sub": tampered(jwt.encode(claims(), private, "RS256"), sub="ops"),
    }
    statuses = {name: shakes.status(f"token={quote(t, safe='')}") for name, t in attacks.items()}
    with open_ws(sb.gateway, f"token={jwt.encode(claims('u_rsa'), private, 'RS256')}") as ws:
        identity = _send(ws, {"action": "whoami"})
    sb.wait_for_disconnects(timeout=15)
    leaked = sb.wait_for_registry(lambda r: r.items == 0, timeout=15).items
    figures.record(
        "auth: algorithm confusion (RS256)",
        clients=len(attacks) + 1,
        messages=1,
        faults=f"{len(attacks)} forged tokens against an RS256 public key",
        leaked=leaked,
        lost=0,
        outcomes=dict(shakes.outcomes),
        handler_errors=sb.handler_errors(),
    )
    assert {name: s for name, s in statuses.items() if s != 401} == {}
    assert identity["userId"] == "u_rsa"
    assert leaked == 0
    assert sb.handler_errors() == 0, sb.error_details()


def _http(sb: StackUnderTest, method: str, path: str, auth: str | None, body: Any = None) -> int:
    return http(sb.gateway, method, path, body, auth)[0]


def test_http_push_needs_a_valid_admin_token(
    jwt_switchboard: StackUnderTest, figures: Figures, ws_connect: WsConnect
) -> None:
    sb = jwt_switchboard
    ws = ws_connect(sb.gateway, f"token={token('u_1')}")
    cid = _send(ws, {"action": "whoami"})["connectionId"]
    admin = token("ops", role="admin")
    text = {"text": "from the back end"}
    routes = [
        ("POST", "/broadcast", text, 200),
        ("POST", "/users/u_1/messages", text, 200),
        ("POST", "/rooms/lobby/messages", text, 200),
        ("GET", "/connections", None, 200),
        ("DELETE", f"/connections/{quote(cid, safe='')}", None, 204),
    ]
    bad_auth = {
        "none": None,
        "empty": "",
        "Bearer, no token": "Bearer ",
        "Bearer garbage": "Bearer garbage",
        "Basic": "Basic " + base64.b64encode(b"ops:admin").decode(),
        "expired admin": f"Bearer {token('ops', role='admin', exp_in=-60)}",
        "alg none admin": f"Bearer {unsigned('none', claims('ops', role='admin'))}",
        "tampered role": f"Bearer {tampered(token('ops'), role='admin')}",
        "HS512 admin": "Bearer "
        + hs({"alg": "HS512"}, claims("ops", role="admin"), SECRET.encode(), hashlib.sha512),
        "admin token, no scheme": admin,
    }
    wrong: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    for method, path, body, _ in routes:
        for name, auth in bad_auth.items():
            status = _http(sb, method, path, auth, body)
            statuses[status] += 1
            if status != 401:
                wrong.append(f"{method} {path} with {name}: {status}")
        status = _http(sb, method, path, f"Bearer {token('u_1')}", body)  # valid, not admin
        statuses[status] += 1
        if status != 403:
            wrong.append(f"{method} {path} as non-admin: {status}")
    delivered_before_admin = quiet(ws)
    for method, path, body, ok in routes:
        status = _http(sb, method, path, f"Bearer {admin}", body)
        if status != ok:
            wrong.append(f"{method} {path} as admin: {status}, expected {ok}")
    for path in (
        "/users/u%231/messages",
        "/users/USER%23u_1/messages",
        "/rooms/a%23b/messages",
        "/rooms/ROOM%23lobby/messages",
        f"/rooms/{'r' * 65}/messages",
        "/rooms/l%C3%B3bby/messages",
        "/rooms/lobby%E2%80%8B/messages",
        f"/users/{'u' * 129}/messages",
    ):
        status = _http(sb, "POST", path, f"Bearer {admin}", text)
        if status != 400:
            wrong.append(f"POST {path} as admin: {status}, expected 400")
    if _http(sb, "DELETE", "/connections/CONN%23x", f"Bearer {admin}") != 400:
        wrong.append("DELETE /connections/CONN#x was not a bad request")
    health = _http(sb, "GET", "/health", None)
    figures.record(
        "auth: HTTP push routes",
        clients=1,
        messages=sum(statuses.values()),
        faults=f"{len(routes)} routes x {len(bad_auth)} bad Authorization values + non-admin",
        leaked=0,
        lost=0,
        statuses=dict(statuses),
        handler_errors=sb.handler_errors(),
    )
    assert wrong == []
    assert delivered_before_admin, "a refused push reached the client"
    assert health == 200
    assert sb.handler_errors() == 0, sb.error_details()


def test_identity_is_the_token_and_broadcast_needs_admin(
    jwt_switchboard: StackUnderTest, figures: Figures, ws_connect: WsConnect
) -> None:
    sb = jwt_switchboard
    # ?userId= and ?role= are ignored: the token says who you are.
    mallory = ws_connect(sb.gateway, f"token={token('u_mallory')}&userId=ops&role=admin")
    alice = ws_connect(sb.gateway, f"token={token('u_alice')}")
    ops = ws_connect(sb.gateway, f"token={token('ops', role='admin')}")
    me = _send(mallory, {"action": "whoami"})
    assert (me["userId"], me.get("role")) == ("u_mallory", None)
    refused = _send(mallory, {"action": "broadcastAll", "text": "hi all", "role": "admin"})
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    assert quiet(alice) and quiet(ops)
    ack = _send(ops, {"action": "broadcastAll", "text": "maintenance"})
    assert ack["delivered"] == 2
    assert recv_json(alice, timeout=10)["from"] == "ops"
    assert recv_json(mallory, timeout=10)["from"] == "ops"
    figures.record(
        "auth: identity and broadcast",
        clients=3,
        messages=2,
        faults="?userId=/?role= next to a token; non-admin broadcastAll",
        leaked=0,
        lost=0,
        handler_errors=sb.handler_errors(),
    )
    assert sb.handler_errors() == 0, sb.error_details()


ODD_IDS = [
    "u#1",
    "USER#u_1",
    "CONN#x",
    "u" * 129,
    "ü",
    "u_1\u200b",
    "ｕ_1",
    "u 1",
    "u\n1",
    "u/1",
    "",
]
ODD_ROOMS = [
    "a#b",
    "ROOM#lobby",
    "lobby#CONN#x",
    "r" * 65,
    "lóbby",
    "lobby\u200b",
    "ｌｏｂｂｙ",
    "lobbу",  # Cyrillic у
    "lobby ",
    "lob by",
    "../lobby",
    "",
]


def test_odd_ids_and_room_names_are_refused(
    switchboard_factory: StackFactory, figures: Figures, ws_connect: WsConnect
) -> None:
    sb = switchboard_factory()  # AUTH_MODE=none: ids come from ?userId=
    shakes = Handshakes(sb)
    statuses = {u: shakes.status(f"userId={quote(u, safe='')}") for u in ODD_IDS if u}
    ws = ws_connect(sb.gateway, "userId=u_1")
    replies: list[tuple[str, str, dict[str, Any]]] = []
    for room in ODD_ROOMS:
        for action in ("join", "leave", "sendRoom"):
            frame = {"action": action, "room": room, "text": "x"}
            replies.append((action, room, _send(ws, frame)))
    for user in ODD_IDS:
        frame = {"action": "sendMessage", "targetUserId": user, "text": "x"}
        replies.append(("sendMessage", user, _send(ws, frame)))
    registry = sb.registry()
    figures.record(
        "auth: odd ids and room names",
        clients=len(statuses) + 1,
        messages=len(replies),
        faults="key delimiters, overlong, look-alike and invisible unicode",
        leaked=len(registry.memberships),
        lost=0,
        handler_errors=sb.handler_errors(),
    )
    assert {u: s for u, s in statuses.items() if s != 400} == {}
    bad = [(a, n, r) for a, n, r in replies if r.get("code") != "bad_request"]
    assert bad == []
    assert len(registry.connections) == 1 and registry.memberships == set()
    assert sb.handler_errors() == 0, sb.error_details()


def test_nobody_reads_or_posts_where_they_should_not(
    jwt_switchboard: StackUnderTest, figures: Figures, ws_connect: WsConnect
) -> None:
    sb = jwt_switchboard
    alice = ws_connect(sb.gateway, f"token={token('u_alice')}")
    bob = ws_connect(sb.gateway, f"token={token('u_bob')}")
    carol = ws_connect(sb.gateway, f"token={token('u_carol')}")
    dave = ws_connect(sb.gateway, f"token={token('u_alice2')}")
    alice_id = _send(alice, {"action": "whoami"})["connectionId"]
    checks: list[str] = []

    def expect(reply: dict[str, Any], **fields: Any) -> None:
        if any(reply.get(k) != v for k, v in fields.items()):
            checks.append(f"{reply} is not {fields}")

    expect(_send(alice, {"action": "join", "room": "private"}), joined=True)
    expect(_send(dave, {"action": "join", "room": "private"}), joined=True)
    # A member hears the other enter (only the room's members: bob stays silent, see the end).
    expect(recv_json(alice, timeout=10), type="presence", event="enter", userId="u_alice2")
    # (private-x, not private:x: a private: room needs the join capability, PROTOCOL.md Permissions)
    expect(_send(bob, {"action": "join", "room": "private-x"}), joined=True)
    # Posting to a room you are not in; leaving it; joining on someone else's behalf.
    expect(_send(bob, {"action": "sendRoom", "room": "private", "text": "x"}), code="forbidden")
    expect(_send(bob, {"action": "leave", "room": "private"}), code="not_found")
    spoof = {"action": "join", "room": "bobs", "connectionId": alice_id, "userId": "u_alice"}
    expect(_send(bob, spoof), joined=True)
    expect(_send(alice, {"action": "whoami"}), rooms=["private"])
    # Other rooms, look-alike names and prefixes are other partitions.
    expect(_send(bob, {"action": "sendRoom", "room": "private-x", "text": "x"}), delivered=0)
    expect(_send(alice, {"action": "sendRoom", "room": "private", "text": "members"}), delivered=1)
    room_message = recv_json(dave, timeout=10)
    expect(room_message, room="private", text="members", **{"from": "u_alice"})
    # Direct messages reach that user only, from whoever really sent them.
    expect(
        _send(
            bob, {"action": "sendMessage", "targetUserId": "u_alice", "text": "hi", "from": "ops"}
        ),
        stored=True,
    )
    expect(recv_json(alice, timeout=10), **{"from": "u_bob", "text": "hi"})
    # A DM to nobody online is acked the same (no online oracle; jwt mode: no counts).
    nobody = _send(alice, {"action": "sendMessage", "targetUserId": "u_ali", "text": "x"})
    expect(nobody, type="ack", stored=True)
    assert "delivered" not in nobody and "seq" not in nobody, nobody
    silent = {name: quiet(ws) for name, ws in (("bob", bob), ("carol", carol), ("dave", dave))}
    figures.record(
        "auth: room and user isolation",
        clients=4,
        messages=10,
        faults="non-member sendRoom/leave, join spoofing, prefix rooms, DM spoofing",
        leaked=0,
        lost=0,
        handler_errors=sb.handler_errors(),
    )
    assert checks == []
    assert silent == {"bob": True, "carol": True, "dave": True}
    assert sb.handler_errors() == 0, sb.error_details()
