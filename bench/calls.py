"""Counted DynamoDB calls per user action, through app.py's real handlers on moto.

``python -m bench.calls [--latency-ms 5] [--out bench/results/calls]`` (or
``python -m bench --only calls``) runs each user action once per auth mode (``none`` and
``jwt``) through Chalice's test client (``chalice.test.Client(app).lambda_.invoke``, the
handlers API Gateway invokes) over moto DynamoDB in this process, with every DynamoDB call of
the app's boto3 session hooked (botocore's ``before-call``/``after-call`` events) and every
``@connections`` post recorded (the management API is replaced by a recorder that answers
"delivered"; nothing leaves the process, no socket is opened). For each action it reports:

- the calls by operation (everything the handler did, after its reply too);
- the **critical path**: the longest chain of calls in which each one starts after the
  previous one ended, counting only calls that ended before the first post (for a send, the
  delivery; for a ping, the pong) and, separately, before the reply to the acting connection
  (the ack). Each call is held for ``latency_ms`` (the moto work itself is serialised, as
  the local gateway does, but the latency is not), so calls the code runs concurrently
  overlap and count once, as they would against DynamoDB;
- read and write request units, computed from the sizes of the items each call touched
  (``bench/ddb_units.py``, per DynamoDB's documented rounding).

Each measured action runs on a fresh switchboard (a container that has seen nothing of the
connection: what a per-container cache cannot help with); the set-up before it is not
counted and runs without latency. The table is generated, never hand-written:
``docs/PERFORMANCE.md`` quotes a run of it; ``tests/functional/test_call_budget.py`` fails if
the critical path of a 1:1 send, a ``sendRoom`` or a ``ping`` grows.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ddb_units
from bench.common import PROJECT_DIR, REGION, RESULTS_DIR

TABLE = "bench-calls"
SECRET = "bench-calls-secret-that-is-long-enough-for-hs256"
ISSUER = "https://auth.example.com/"
AUDIENCE = "switchboard-bench"
MODES = ("none", "jwt")
ROOM = "lobby"
# MESSAGE_RATE's default is 10 frames/s: a connection quiet this long has a full bucket again.
QUIET_S = 0.25
WARM = "WWWWWWWWWWWW="

_INDEXES: dict[str, tuple[tuple[str, str], tuple[str, ...] | None]] = {}


def _indexes() -> dict[str, tuple[tuple[str, str], tuple[str, ...] | None]]:
    """Each index of schema.json: its key attributes and projected attributes (None: ALL)."""
    if not _INDEXES:
        from chalicelib.schema import load_schema

        for index in load_schema().get("GlobalSecondaryIndexes", []):
            keys = tuple(k["AttributeName"] for k in index["KeySchema"])
            projection = index["Projection"]
            projected: tuple[str, ...] | None = None
            if projection["ProjectionType"] == "KEYS_ONLY":
                projected = ()
            elif projection["ProjectionType"] == "INCLUDE":
                projected = tuple(projection.get("NonKeyAttributes", ()))
            _INDEXES[index["IndexName"]] = ((keys[0], keys[1]), projected)
    return _INDEXES


# --- what one call and one post were ---------------------------------------------------------


@dataclass
class Call:
    operation: str
    start: float
    end: float = 0.0
    read_units: float = 0.0
    write_units: float = 0.0
    failed: str | None = None  # the error code of a call DynamoDB refused (a failed condition)
    backend_cpu: float = 0.0  # CPU seconds moto spent answering (not the app's: left out)


@dataclass(frozen=True)
class Post:
    at: float
    connection_id: str
    kind: str


def chain(calls: Sequence[Call], before: float | None = None) -> list[Call]:
    """The longest chain of ``calls`` each starting after the previous one ended, among the
    calls that ended before ``before`` (None: all of them): the sequential round trips."""
    eligible = sorted((c for c in calls if before is None or c.end <= before), key=lambda c: c.end)
    best: list[list[Call]] = []
    for i, call in enumerate(eligible):
        longest: list[Call] = []
        for j in range(i):
            if eligible[j].end <= call.start and len(best[j]) > len(longest):
                longest = best[j]
        best.append([*longest, call])
    return max(best, key=len, default=[])


# --- the hooks ---------------------------------------------------------------------------------


def _key_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"PK": item["PK"], "SK": item["SK"]}


_PLACEHOLDER = re.compile(r"[:#][A-Za-z0-9_]+")


class Meter:
    """Hooks the DynamoDB clients of a boto3 session: times each call, holds it ``latency``
    seconds, computes its units from the items before and after (read through ``raw``, an
    unhooked client on the same moto backend)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.latency = 0.0
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        # moto's in-process backend is not thread-safe: its work is serialised (the latency
        # is not, so concurrent calls still overlap in time).
        self._backend = threading.RLock()

    def install(self, session: Any) -> None:
        events = session.events
        events.register("before-parameter-build.dynamodb", self._params)
        events.register("before-call.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)
        events.register("after-call-error.dynamodb", self._error)

    def reset(self, latency: float = 0.0) -> None:
        with self._lock:
            self.calls = []
        self.latency = latency

    # botocore hands every handler the same ``context`` dict for one request.
    def _params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = dict(params)

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        call = Call(model.name, time.perf_counter())
        with self._lock:
            self.calls.append(call)
        context["bench_call"] = call
        if self.latency:
            time.sleep(self.latency)
        self._backend.acquire()
        context["bench_held"] = True
        context["bench_cpu"] = time.thread_time()
        try:
            context["bench_before"] = self._images(model.name, context.get("bench_params", {}))
        except Exception:  # noqa: BLE001 - a bench hook must never break the call it measures
            context["bench_before"] = None

    def _after(
        self,
        http_response: Any,
        parsed: dict[str, Any],
        model: Any,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        call: Call | None = context.get("bench_call")
        try:
            if call is not None:
                error = (parsed.get("Error") or {}).get("Code")
                call.failed = str(error) if error else None
                params = context.get("bench_params", {})
                with contextlib.suppress(Exception):
                    self._units(call, params, parsed, context.get("bench_before"))
        finally:
            if call is not None and "bench_cpu" in context:
                # moto's answer and this meter's own reads: neither is the app's CPU.
                call.backend_cpu = time.thread_time() - context["bench_cpu"]
            self._release(context)
            if call is not None:
                call.end = time.perf_counter()

    def _error(self, context: dict[str, Any], **_: Any) -> None:
        self._release(context)
        call: Call | None = context.get("bench_call")
        if call is not None:
            call.end = time.perf_counter()
            call.failed = call.failed or "error"

    def _release(self, context: dict[str, Any]) -> None:
        if context.pop("bench_held", False):
            self._backend.release()

    # --- units ---------------------------------------------------------------------------

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._raw.get_item(
            TableName=table, Key=key, ConsistentRead=True
        ).get("Item")
        return item

    def _write_keys(self, op: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
        """(table, key, factor) of every item a write touches; factor 2 in a transaction."""
        if op == "PutItem":
            return [(params["TableName"], _key_of(params["Item"]), 1)]
        if op in ("UpdateItem", "DeleteItem"):
            return [(params["TableName"], params["Key"], 1)]
        if op == "TransactWriteItems":
            out = []
            for entry in params["TransactItems"]:
                ((verb, body),) = entry.items()
                key = _key_of(body["Item"]) if verb == "Put" else body["Key"]
                out.append((body["TableName"], key, 2))
            return out
        if op == "BatchWriteItem":
            out = []
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        out.append((table, _key_of(request["PutRequest"]["Item"]), 1))
                    else:
                        out.append((table, request["DeleteRequest"]["Key"], 1))
            return out
        return []

    def _images(self, op: str, params: dict[str, Any]) -> list[Any] | None:
        keys = self._write_keys(op, params)
        return [self._get(table, key) for table, key, _ in keys] if keys else None

    def _units(
        self, call: Call, params: dict[str, Any], parsed: dict[str, Any], before: list[Any] | None
    ) -> None:
        op = call.operation
        if op in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"):
            keys = self._write_keys(op, params)
            afters = [self._get(table, key) for table, key, _ in keys]
            total = 0.0
            for (_, _, factor), old, new in zip(
                keys, before or [None] * len(keys), afters, strict=True
            ):
                total += factor * ddb_units.write_units(old, new)
                for index_keys, projected in _indexes().values():
                    total += ddb_units.index_write_units(
                        ddb_units.index_entry(old, index_keys, ("PK", "SK"), projected),
                        ddb_units.index_entry(new, index_keys, ("PK", "SK"), projected),
                        index_keys,
                    )
            call.write_units = total
        elif op == "GetItem":
            item = self._get(params["TableName"], params["Key"])
            call.read_units = ddb_units.read_units(
                ddb_units.item_size(item), bool(params.get("ConsistentRead"))
            )
        elif op == "BatchGetItem":
            total = 0.0
            for table, request in params["RequestItems"].items():
                consistent = bool(request.get("ConsistentRead"))
                for key in request["Keys"]:
                    size = ddb_units.item_size(self._get(table, key))
                    total += ddb_units.read_units(size, consistent)
            call.read_units = total
        elif op == "Query":
            call.read_units = ddb_units.read_units(
                sum(ddb_units.item_size(i) for i in self._evaluated(params)),
                bool(params.get("ConsistentRead")),
            )

    def _evaluated(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The items a Query read before its filter: the same key condition, Limit and start,
        without the filter and the projection (an index returns its projected attributes)."""
        condition = params["KeyConditionExpression"]
        used = set(_PLACEHOLDER.findall(condition))
        query: dict[str, Any] = {
            "TableName": params["TableName"],
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": {
                k: v for k, v in params.get("ExpressionAttributeValues", {}).items() if k in used
            },
        }
        names = {k: v for k, v in params.get("ExpressionAttributeNames", {}).items() if k in used}
        if names:
            query["ExpressionAttributeNames"] = names
        for name in ("IndexName", "Limit", "ExclusiveStartKey", "ScanIndexForward"):
            if name in params:
                query[name] = params[name]
        items: list[dict[str, Any]] = self._raw.query(**query).get("Items", [])
        return items


# --- the posts ---------------------------------------------------------------------------------


class PostRecorder:
    """Stands in for the management API's posting methods on a built switchboard: records
    every post (time, connection, frame type) and answers "delivered"."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.posts = []

    def _record(self, connection_id: str, data: bytes) -> None:
        try:
            kind = str(json.loads(data).get("type", "?"))
        except (ValueError, AttributeError):
            kind = "?"
        with self._lock:
            self.posts.append(Post(time.perf_counter(), connection_id, kind))

    def install(self, gateway: Any) -> None:
        from chalicelib.management_api import Outcome

        def post(connection_id: str, data: bytes, endpoint: str | None = None) -> Any:
            self._record(connection_id, data)
            return Outcome.DELIVERED

        def start_many(targets: Sequence[Any], data: bytes) -> Callable[[], list[Any]]:
            for target in targets:
                self._record(target.connection_id, data)
            outcomes = [Outcome.DELIVERED] * len(targets)
            return lambda: list(outcomes)

        def post_many(targets: Sequence[Any], data: bytes) -> list[Any]:
            return start_many(targets, data)()

        def close(connection_id: str, endpoint: str | None = None) -> Any:
            return Outcome.DELIVERED

        gateway.post = post
        gateway.start_many = start_many
        gateway.post_many = post_many
        gateway.close = close

    def frames(self, connection_id: str) -> list[str]:
        return [p.kind for p in self.posts if p.connection_id == connection_id]


# --- one measured action -----------------------------------------------------------------------


@dataclass
class Result:
    action: str
    mode: str
    calls: int
    operations: dict[str, int]
    path_first_post: int | None  # None: the action posts nothing
    path_reply: int | None
    path_total: int
    read_units: float
    write_units: float
    posts: int
    failed_calls: int
    reply: str | None = None
    chain: list[str] = field(default_factory=list)
    # The handler's wall time here (each DynamoDB call held the latency), the app's own CPU
    # time (the process's, less moto's answering) and the log bytes it wrote (its JSON line
    # and the EMF metrics line; Lambda's own START/END/REPORT lines are not in it).
    duration_ms: float = 0.0
    cpu_ms: float = 0.0
    log_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _CountingHandler(logging.Handler):
    """Counts the bytes of the app's log lines (one CloudWatch event each)."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(logging.DEBUG)
        self._stack = stack

    def emit(self, record: logging.LogRecord) -> None:
        self._stack.log_bytes += len(record.getMessage().encode("utf-8")) + 1


def _event(kind: str, connection_id: str, **extra: Any) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    context: dict[str, Any] = {
        "routeKey": {"CONNECT": "$connect", "MESSAGE": "$default", "DISCONNECT": "$disconnect"}[
            kind
        ],
        "eventType": kind,
        "extendedRequestId": f"x{now_ms}",
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "messageDirection": "IN",
        "stage": "api",
        "connectedAt": now_ms,
        "requestTimeEpoch": now_ms,
        "identity": {"userAgent": "bench", "sourceIp": "203.0.113.7"},
        "requestId": f"r{now_ms}",
        "domainName": "abc123def4.execute-api.us-east-1.amazonaws.com",
        "connectionId": connection_id,
        "apiId": "abc123def4",
    }
    event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": False}
    if kind == "MESSAGE":
        context["messageId"] = f"m{now_ms}"
        event["body"] = json.dumps(extra["body"])
    elif kind == "CONNECT":
        query = extra.get("query") or None
        event["headers"] = {"Host": context["domainName"]}
        event["multiValueHeaders"] = {"Host": [context["domainName"]]}
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = (
            {k: [v] for k, v in query.items()} if query else None
        )
    else:
        context["disconnectStatusCode"] = 1001
        context["disconnectReason"] = "Going away"
    return event


class Stack:
    """One table, one hooked boto3 session and the app's handlers over them."""

    def __init__(self, mode: str, env: dict[str, str]) -> None:
        import boto3
        from chalice.test import Client

        import app as app_module
        from deploy.create_table import create_table

        self.mode = mode
        self.env = env
        self._app = app_module
        raw_session = boto3.session.Session(region_name=REGION)
        self.raw = raw_session.client("dynamodb")
        create_table(self.raw, TABLE)
        self.session = boto3.session.Session(region_name=REGION)
        self.meter = Meter(self.raw)
        self.meter.install(self.session)
        self.posts = PostRecorder()
        self._last_frame: dict[str, float] = {}
        self.log_bytes = 0
        # Installed before the app configures its logger, which then adds no stderr handler.
        self._log_handler = _CountingHandler(self)
        logging.getLogger("switchboard").addHandler(self._log_handler)
        self.fresh()
        self._client = Client(app_module.app, project_dir=str(PROJECT_DIR))
        self._client.__enter__()

    def fresh(self) -> None:
        """A new container: a switchboard built from nothing, as ``get_switchboard`` would."""
        from chalicelib import wiring

        settings = wiring.settings_from_env(self.env)
        switchboard = wiring.build_switchboard(settings, self.session)
        self.posts.install(switchboard.gateway)
        self._app.reset_switchboard(switchboard)

    def close(self) -> None:
        logging.getLogger("switchboard").removeHandler(self._log_handler)
        self._client.__exit__(None, None, None)
        self._app.reset_switchboard(None)

    def token(self, user_id: str) -> str:
        import jwt

        now = int(time.time())
        claims = {"sub": user_id, "iat": now, "exp": now + 3600, "iss": ISSUER, "aud": AUDIENCE}
        return jwt.encode(claims, SECRET, algorithm="HS256")

    # --- the three handlers ------------------------------------------------------------------

    def connect(self, cid: str, user_id: str) -> int:
        query = {"token": self.token(user_id)} if self.mode == "jwt" else {"userId": user_id}
        payload = self._client.lambda_.invoke("connect", _event("CONNECT", cid, query=query))
        return int((payload.payload or {}).get("statusCode", 0))

    def send(self, cid: str, frame: dict[str, Any]) -> None:
        self._last_frame[cid] = time.monotonic()
        self._client.lambda_.invoke("message", _event("MESSAGE", cid, body=frame))

    def disconnect(self, cid: str) -> None:
        self._client.lambda_.invoke("disconnect", _event("DISCONNECT", cid))

    def measure(
        self,
        action: str,
        actor: str,
        run: Callable[[], None],
        latency: float,
        fresh: bool = True,
        full_bucket: bool = True,
    ) -> Result:
        if full_bucket:  # the actor's bucket back to full: a frame's token, not a burst's
            quiet = self._last_frame.get(actor, 0.0) + QUIET_S - time.monotonic()
            if quiet > 0:
                time.sleep(quiet)
        if fresh:
            self.fresh()
            # The new container's clients make their first calls (credentials, endpoints)
            # for a connection that is not the actor's: what is measured is a warm container
            # that has seen nothing of this connection.
            self.send(WARM, {"action": "whoami"})
        self.meter.reset(latency)
        self.posts.reset()
        stdout = sys.stdout.tell() if sys.stdout.seekable() else 0
        self.log_bytes = 0
        cpu = time.process_time()
        started = time.perf_counter()
        run()
        duration = time.perf_counter() - started
        cpu = time.process_time() - cpu
        self.meter.latency = 0.0
        printed = (sys.stdout.tell() - stdout) if sys.stdout.seekable() else 0
        calls = [c for c in self.meter.calls if c.start >= started]
        posts = sorted(self.posts.posts, key=lambda p: p.at)
        first = posts[0].at if posts else None
        replies = [p for p in posts if p.connection_id == actor]
        reply = replies[0] if replies else None
        path = chain(calls, first)
        return Result(
            action=action,
            mode=self.mode,
            calls=len(calls),
            operations=dict(sorted(Counter(c.operation for c in calls).items())),
            path_first_post=len(path) if first is not None else None,
            path_reply=len(chain(calls, reply.at)) if reply is not None else None,
            path_total=len(chain(calls)),
            read_units=sum(c.read_units for c in calls),
            write_units=sum(c.write_units for c in calls),
            posts=len(posts),
            failed_calls=sum(1 for c in calls if c.failed),
            reply=reply.kind if reply is not None else None,
            chain=[c.operation for c in (path if first is not None else chain(calls))],
            duration_ms=round(duration * 1000, 2),
            cpu_ms=round(max(0.0, cpu - sum(c.backend_cpu for c in calls)) * 1000, 2),
            log_bytes=self.log_bytes + printed,
        )


def _env(mode: str) -> dict[str, str]:
    env = {
        "CONNECTIONS_TABLE": TABLE,
        "AUTH_MODE": mode,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "LOG_LEVEL": "INFO",  # counted (bench's handler), never printed
        "MANAGEMENT_TRANSPORT": "boto3",
        "APIGW_MANAGEMENT_ENDPOINT": "https://abc123def4.execute-api.us-east-1.amazonaws.com/api",
    }
    if mode == "jwt":
        env.update({"JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE})
    return env


# The actions, in the order they run on one stack: (name, actor, set-up, the measured frame).
ACTIONS = (
    "connect",
    "join",
    "send",
    "send_client_msg_id",
    "send_room",
    "ping",
    "ping_drained",
    "ping_drained_same_container",
    "resume",
    "disconnect",
)
LABELS = {
    "connect": "`$connect`",
    "join": "`join` (11th member, presence on)",
    "send": "`sendMessage` 1:1, recipient online",
    "send_client_msg_id": "the same with `clientMsgId`",
    "send_room": "`sendRoom` to 11 members",
    "ping": "`ping`, bucket full",
    "ping_drained": "`ping`, bucket part-drained, container new to the connection",
    "ping_drained_same_container": "`ping`, bucket part-drained, same container",
    "resume": "`resume`, one stream (2 missed)",
    "disconnect": "`$disconnect`, member of one room (10 others)",
}


def _scenario(stack: Stack, actions: Sequence[str], latency: float) -> list[Result]:
    """Set up the members of a room and the senders, then measure each action."""
    members = [f"M{i:02d}AAAAAAAAA=" for i in range(1, 11)]
    for i, cid in enumerate(members, 1):
        assert stack.connect(cid, f"u_m{i:02d}") == 200, "set-up connect refused"
        stack.send(cid, {"action": "join", "room": ROOM})
    for cid, user in (
        ("AAAAAAAAAAAA=", "u_a"),
        ("BBBBBBBBBBBB=", "u_b"),
        ("JJJJJJJJJJJJ=", "u_j"),
        ("PPPPPPPPPPPP=", "u_p"),
        ("QQQQQQQQQQQQ=", "u_q"),
        ("RRRRRRRRRRRR=", "u_r"),
        ("CCCCCCCCCCCC=", "u_c"),
        (WARM, "u_w"),
    ):
        assert stack.connect(cid, user) == 200, "set-up connect refused"
    results: list[Result] = []
    steps: dict[str, tuple[str, Callable[[], None]]] = {
        "connect": ("NNNNNNNNNNNN=", lambda: stack.connect("NNNNNNNNNNNN=", "u_n") and None),
        "join": (
            "JJJJJJJJJJJJ=",
            lambda: stack.send("JJJJJJJJJJJJ=", {"action": "join", "room": ROOM}),
        ),
        "send": (
            "AAAAAAAAAAAA=",
            lambda: stack.send(
                "AAAAAAAAAAAA=", {"action": "sendMessage", "targetUserId": "u_b", "text": "hi"}
            ),
        ),
        "send_client_msg_id": (
            "CCCCCCCCCCCC=",
            lambda: stack.send(
                "CCCCCCCCCCCC=",
                {
                    "action": "sendMessage",
                    "targetUserId": "u_b",
                    "text": "hi",
                    "clientMsgId": "c-1",
                },
            ),
        ),
        "send_room": (
            members[0],
            lambda: stack.send(
                members[0], {"action": "sendRoom", "room": ROOM, "text": "hello room"}
            ),
        ),
        "ping": ("PPPPPPPPPPPP=", lambda: stack.send("PPPPPPPPPPPP=", {"action": "ping"})),
        "ping_drained": ("QQQQQQQQQQQQ=", lambda: stack.send("QQQQQQQQQQQQ=", {"action": "ping"})),
        "ping_drained_same_container": (
            "RRRRRRRRRRRR=",
            lambda: stack.send("RRRRRRRRRRRR=", {"action": "ping"}),
        ),
        "resume": (
            "BBBBBBBBBBBB=",
            lambda: stack.send("BBBBBBBBBBBB=", {"action": "resume", "streams": {"user:u_b": 0}}),
        ),
        "disconnect": (members[1], lambda: stack.disconnect(members[1])),
    }
    for action in ACTIONS:
        if action not in actions:
            continue
        if action == "join" and "send_room" in actions:
            pass  # the room's 11th member joins here; sendRoom then reaches 11 members
        if action == "send_room" and "join" not in actions:
            stack.send("JJJJJJJJJJJJ=", {"action": "join", "room": ROOM})
        drained = action.startswith("ping_drained")
        if drained:  # 15 tokens taken just before: the bucket is part-drained for 1.5 s
            stack.fresh()
            for _ in range(15):
                stack.send(steps[action][0], {"action": "ping"})
        if action == "resume" and not {"send", "send_client_msg_id"} & set(actions):
            for n in range(2):
                stack.send(
                    "AAAAAAAAAAAA=",
                    {"action": "sendMessage", "targetUserId": "u_b", "text": f"m{n}"},
                )
        actor, run = steps[action]
        fresh = action != "ping_drained_same_container"
        results.append(
            stack.measure(action, actor, run, latency, fresh=fresh, full_bucket=not drained)
        )
    return results


@contextlib.contextmanager
def _aws() -> Iterator[None]:
    """moto for every AWS call of this process, with dummy credentials."""
    import os

    from moto import mock_aws

    from local_gateway import moto_speedups

    moto_speedups.install()
    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
        )
    }
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
    )
    try:
        with mock_aws():
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def measure(
    latency_ms: float = 5.0,
    modes: Sequence[str] = MODES,
    actions: Sequence[str] = ACTIONS,
) -> list[Result]:
    """Every action in every mode; each mode on a table of its own."""
    results: list[Result] = []
    # The app prints its EMF metrics lines on stdout (CloudWatch reads them there): not ours.
    for mode in modes:
        with _aws(), contextlib.redirect_stdout(io.StringIO()):
            stack = Stack(mode, _env(mode))
            try:
                results += _scenario(stack, actions, latency_ms / 1000)
            finally:
                stack.close()
    return results


def markdown(results: Sequence[Result], latency_ms: float) -> str:
    lines = [
        "| action | auth | DynamoDB calls | by operation | critical path: before the first post "
        "| before the reply | RRU | WRU |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in r.operations.items())
        first = (
            f"({r.path_total} to its end)" if r.path_first_post is None else str(r.path_first_post)
        )
        reply = "-" if r.path_reply is None else str(r.path_reply)
        lines.append(
            f"| {LABELS.get(r.action, r.action)} | {r.mode} | {r.calls} | {ops} | {first} "
            f"| {reply} | {r.read_units:g} | {r.write_units:g} |"
        )
    lines += [
        "",
        f"Generated by `python -m bench.calls` (each call held {latency_ms:g} ms; "
        "critical path = the longest chain of calls each starting after the previous ended; "
        "RRU/WRU = read/write request units from the items' sizes, `bench/ddb_units.py`). "
        "`-`: the action posts nothing; then the chain to the handler's end is given.",
    ]
    return "\n".join(lines)


def compare(
    before: Sequence[Mapping[str, Any]], after: Sequence[Result], commits: tuple[str, str]
) -> str:
    """Before and after side by side: calls, the critical path before the first post, units."""
    old = {(r["action"], r["mode"]): r for r in before}
    lines = [
        f"| action | auth | calls {commits[0]} -> {commits[1]} | critical path "
        f"{commits[0]} -> {commits[1]} | RRU | WRU |",
        "|---|---|---:|---:|---:|---:|",
    ]

    def path(row: Mapping[str, Any]) -> str:
        first = row.get("path_first_post")
        return str(first) if first is not None else f"({row['path_total']})"

    for r in after:
        b = old.get((r.action, r.mode))
        if b is None:
            continue
        lines.append(
            f"| {LABELS.get(r.action, r.action)} | {r.mode} | {b['calls']} -> {r.calls} "
            f"| {path(b)} -> {path(r.as_dict())} | {b['read_units']:g} -> {r.read_units:g} "
            f"| {b['write_units']:g} -> {r.write_units:g} |"
        )
    lines += [
        "",
        "Critical path: sequential DynamoDB calls before the first post (in parentheses: to "
        "the handler's end, for actions that post nothing). One run of `python -m bench.calls "
        f"--before {commits[0]}`: the same harness on both commits' handlers.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calls")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--actions", default=",".join(ACTIONS))
    parser.add_argument(
        "--out", default=str(RESULTS_DIR / "calls"), help="writes <out>.json and <out>.md"
    )
    parser.add_argument("--before", default=None, help="also measure this commit's app (git ref)")
    args = parser.parse_args(argv)
    results = measure(args.latency_ms, args.modes.split(","), args.actions.split(","))
    text = markdown(results, args.latency_ms)
    earlier: dict[str, Any] | None = None
    if args.before:
        from bench import before

        earlier = before.at(
            args.before,
            "bench.calls",
            [
                "--latency-ms",
                f"{args.latency_ms:g}",
                "--modes",
                args.modes,
                "--actions",
                args.actions,
                "--out",
                "{json}",
            ],
        )
        text = compare(earlier["results"], results, (earlier["commit"], before.short_commit()))
        text += "\n\n" + markdown(results, args.latency_ms)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "latency_ms": args.latency_ms,
                "results": [r.as_dict() for r in results],
                "before": earlier,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
