"""Both clients at the app's edge, against the real local gateway (issue 25): the reconnect delay
after the network returns (measured for both clients in one run, through a proxy that takes
the network away), an app restarted with a persisted store in a quiet room, own messages never
coming back as incoming, refused handshakes (400, 401) ending in ``failed`` with the status and
the server's message, and a token callback asked before every connect in ``AUTH_MODE=jwt``.

The JavaScript client runs as ``clients/js/testing/probe.js`` (one JSON line per event)."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from switchboard_client import (
    ConnectError,
    ErrorCode,
    FileStore,
    Message,
    State,
    SwitchboardClient,
    websocket_connector,
)

from local_gateway import LocalGateway
from tests.clients.js_packages import install_js_packages
from tests.clients.netproxy import NetProxy
from tests.gateways import GatewayFactory, http
from tests.helpers import JWT_ENV, token

REPO_ROOT = Path(__file__).resolve().parents[2]
JS_DIR = REPO_ROOT / "clients" / "js"
PROBE = JS_DIR / "testing" / "probe.js"
TEST_LIMITS = {"MESSAGE_RATE": "1000", "MESSAGE_BURST": "1000", "MAX_CONNECTIONS_PER_USER": "1000"}
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
T = TypeVar("T")


def run(test: Callable[[], Awaitable[T]], timeout: float = 90) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(test(), timeout)

    return asyncio.run(bounded())


def ws_url(gw: LocalGateway) -> str:
    assert gw.urls is not None
    return gw.urls.websocket


def node_ready() -> None:
    """Node and the JS client's packages (``npm ci`` from the lockfile, once, as
    test_js_client.py does): the suite installs what it needs rather than skipping."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: the JavaScript client needs Node >= 20")
    install_js_packages()


class Probe:
    """The JS client in a node process: its JSON lines, and commands on its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, url: str, user: str, **options: Any) -> Probe:
        proc = await asyncio.create_subprocess_exec(
            "node", str(PROBE), url, user, json.dumps(options),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(json.loads(line))

    async def wait(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if predicate(line):
                    return line
            assert time.monotonic() < deadline, f"probe: nothing matched in {self.lines[-5:]}"
            await asyncio.sleep(0.01)

    def command(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())

    def messages(self) -> list[dict[str, Any]]:
        return [line["message"] for line in self.lines if "message" in line]

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
        await self._reader


def py_client(
    url: str, user: str | None = None, **options: Any
) -> tuple[SwitchboardClient, list[Message]]:
    options.setdefault("connector", websocket_connector(proxy=None))
    client = SwitchboardClient(url, user_id=user, **options)
    got: list[Message] = []
    client.on_message(got.append)
    return client, got


async def until(condition: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- item 11: the reconnect delay after the network returns --------------------------------


def test_both_clients_reconnect_soon_after_the_network_returns(
    gateway_factory: GatewayFactory, record_property: Callable[[str, object], None]
) -> None:
    """Both clients with their default backoff (500 ms base, 5 s cap, full jitter) behind a
    proxy; the network goes for long enough that the attempts reach the cap, then returns.
    The delay until each is open again is at most the cap plus a dial and a resume, bounded by
    twice what the first connect of that client took (measured here, so a loaded machine
    does not fail it)."""
    node_ready()
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)
    target = urlsplit(ws_url(gw))
    outage = 10.0  # > 0.5+1+2+4: the fifth attempt and later wait up to the 5 s cap
    cap = 5.0

    async def scenario() -> tuple[dict[str, float], dict[str, float]]:
        proxy = NetProxy(target.hostname or "127.0.0.1", target.port or 80)
        await proxy.up()
        url = f"ws://127.0.0.1:{proxy.port}{target.path}"
        py, _ = py_client(url, "py-net")
        opened: list[float] = []
        py.on_state(lambda c: opened.append(time.time()) if c.current is State.OPEN else None)
        js = await Probe.start(url, "js-net")
        await py.connect(15)
        await js.wait(lambda line: line.get("ready") is True)
        first = [x["t"] for x in js.lines if x.get("state") in ("connecting", "open")]
        setup = {"js": (first[1] - first[0]) / 1000}
        timed, _ = py_client(url, "py-setup")  # a dial and a resume, once nothing else starts
        started = time.time()
        await timed.connect(15)
        setup["python"] = time.time() - started
        await timed.close()
        await proxy.down()
        await until(lambda: py.state is State.RECONNECTING)
        await js.wait(lambda line: line.get("state") == "reconnecting")
        await asyncio.sleep(outage)
        back = time.time()
        await proxy.up()
        await until(lambda: opened and opened[-1] > back, cap + 5)
        js_open = await js.wait(
            lambda line: line.get("state") == "open" and line["t"] / 1000 > back, cap + 5
        )
        delays = {"python": opened[-1] - back, "js": js_open["t"] / 1000 - back}
        await py.close()
        await js.stop()
        await proxy.down()
        return delays, setup

    delays, setup = run(scenario)
    for name, delay in delays.items():
        record_property(f"{name}_reconnect_s", round(delay, 3))
    print(f"reconnect after the network returned: {delays} (set-up {setup})", file=sys.stderr)
    for name, delay in delays.items():
        assert 0 <= delay <= cap + 2 * setup[name] + 0.5, (name, delays, setup)


# --- item 1: an app restarted in a quiet room ---------------------------------------------


def test_a_restarted_app_with_a_persisted_store_gets_what_it_missed_at_once(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """bob (each client) joins r2 with a file store and stops; alice sends 3; bob restarts,
    connects and joins: the 3 arrive without any new message, once each, none of alice's shown
    to her as incoming."""
    node_ready()
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)
    url = ws_url(gw)

    async def scenario() -> None:
        alice, alice_got = py_client(url, "alice")
        await alice.connect(15)
        await alice.join("r2")
        # Python bob, first run
        py_store = tmp_path / "py.json"
        bob, _ = py_client(url, "bob", store=FileStore(py_store))
        await bob.connect(15)
        await bob.join("r2")
        await bob.close()
        # JS bob, first run
        js_store = tmp_path / "js.json"
        js = await Probe.start(url, "jsbob", rooms=["r2"], store=str(js_store))
        await js.wait(lambda line: line.get("ready") is True)
        await js.stop()
        for i in range(3):
            await alice.send_room("r2", f"m{i}")
        bob, bob_got = py_client(url, "bob", store=FileStore(py_store))
        await bob.connect(15)
        started = time.monotonic()
        await bob.join("r2")
        await until(lambda: len(bob_got) >= 3, 4)
        py_delay = time.monotonic() - started
        js = await Probe.start(url, "jsbob", rooms=["r2"], store=str(js_store))
        await js.wait(
            lambda line: len([m for m in js.messages() if m["stream"] == "room:r2"]) >= 3, 8
        )
        await asyncio.sleep(0.5)  # anything shown twice would arrive by now
        js_texts = [m["text"] for m in js.messages() if m["stream"] == "room:r2"]
        assert [m.text for m in bob_got if m.stream == "room:r2"] == ["m0", "m1", "m2"]
        assert js_texts == ["m0", "m1", "m2"]
        assert py_delay < 4
        assert [m.text for m in alice_got] == [], "alice never sees her own messages"
        await js.stop()
        await bob.close()
        await alice.close()

    run(scenario)


# --- item 2: own messages --------------------------------------------------------------------


def test_own_messages_never_come_back_as_incoming_and_echo_presents_them_once(
    gateway_factory: GatewayFactory,
) -> None:
    """alice sends, then carol sends after her (alice sees carol's seq after a hole where her own
    message is: before the fix she fetched it and showed it as incoming); after a kick and a
    resume, still nothing of her own. The JS alice runs with ``echo``: her send shows once."""
    node_ready()
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)
    url = ws_url(gw)

    async def scenario() -> None:
        alice, alice_got = py_client(url, "alice", gap_hold=0.05)
        carol, _ = py_client(url, "carol")
        await alice.connect(15)
        await carol.connect(15)
        await alice.join("lobby")
        await carol.join("lobby")
        js = await Probe.start(url, "jsalice", rooms=["lobby"], echo=True)
        await js.wait(lambda line: line.get("ready") is True)
        await alice.send_room("lobby", "x1")
        js.command(send={"room": "lobby", "text": "j1"})
        await js.wait(lambda line: "ack" in line)
        await carol.send_room("lobby", "after")
        await until(lambda: any(m.text == "after" for m in alice_got))
        assert alice.connection_id is not None
        assert http(gw, "DELETE", f"/connections/{alice.connection_id}")[0] == 204
        await alice.wait_for(State.RECONNECTING, 10)
        await alice.wait_for(State.OPEN, 15)
        await asyncio.sleep(0.5)
        texts = [m.text for m in alice_got if m.stream == "room:lobby"]
        assert "x1" not in texts and texts.count("after") == 1, texts
        js_lobby = [m for m in js.messages() if m["stream"] == "room:lobby"]
        assert [(m["text"], m["echo"]) for m in js_lobby if m["text"] != "x1"] == [
            ("j1", True),
            ("after", False),
        ]
        assert [m["text"] for m in js_lobby] == ["x1", "j1", "after"]  # stream order
        await js.stop()
        await alice.close()
        await carol.close()

    run(scenario)


# --- item 5: refused handshakes -----------------------------------------------------------


def test_a_400_handshake_fails_for_good_in_both_clients(gateway_factory: GatewayFactory) -> None:
    node_ready()
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)
    url = ws_url(gw)

    async def scenario() -> None:
        client, _ = py_client(url, "bad#id")
        # Retrying, connect(8) would end in ConnectTimeout; refused for good, ConnectError.
        with pytest.raises(ConnectError) as failed:
            await client.connect(8)
        assert failed.value.code == ErrorCode.HANDSHAKE_REFUSED and failed.value.status == 400
        assert failed.value.server_message and "userId" in failed.value.server_message
        assert client.state is State.FAILED
        js = await Probe.start(url, "bad#id")
        refused = await js.wait(lambda line: "connectFailed" in line, 8)
        assert (refused["connectFailed"], refused["status"]) == ("handshake_refused", 400)
        assert "userId" in refused["serverMessage"]
        await js.stop()

    run(scenario)


def test_jwt_mode_a_bad_token_is_401_and_a_token_callback_runs_before_every_connect(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory(REPO_ROOT, auth_mode="jwt", env={**JWT_ENV, **TEST_LIMITS})
    url = ws_url(gw)

    async def scenario() -> None:
        bad = SwitchboardClient(url, token="garbage", connector=websocket_connector(proxy=None))
        with pytest.raises(ConnectError) as failed:
            await bad.connect(8)
        assert failed.value.status == 401
        issued: list[str] = []

        async def fresh() -> str:
            issued.append(token("u_cb", exp_in=3600))
            return issued[-1]

        client = SwitchboardClient(url, token=fresh, connector=websocket_connector(proxy=None))
        await client.connect(15)
        assert client.user_id == "u_cb" and len(issued) == 1
        assert (
            http(
                gw,
                "DELETE",
                f"/connections/{client.connection_id}",
                auth=f"Bearer {token('ops', role='admin')}",
            )[0]
            == 204
        )
        await client.wait_for(State.RECONNECTING, 10)
        await client.wait_for(State.OPEN, 15)
        assert len(issued) == 2, "asked again before the reconnect"
        await client.close()

    run(scenario)


# --- the chaos run with app restarts (issue 25: "Done when") --------------------------------


def _seq_of(line: dict[str, Any]) -> int:
    """The room seq of a probe's message line (0 for any other line)."""
    message = line.get("message")
    if isinstance(message, dict) and message.get("stream") == "room:chaos":
        return int(message.get("seq") or 0)
    return 0


def test_chaos_with_app_restarts_nothing_lost_nothing_twice_no_own_message_as_incoming(
    gateway_factory: GatewayFactory, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """A Python and a JS sender send to one room while their sockets are kicked at random; a
    Python and a JS receiver are restarted again and again (closed, then a new client on the
    same file store connects and joins). Every receiver's deliveries, across its restarts: every
    acked message once, in seq order; no sender ever shown one of its own messages."""
    node_ready()
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)
    url = ws_url(gw)
    per_sender = 60
    rng = random.Random(25)

    async def scenario() -> dict[str, Any]:
        py_sender, py_sender_got = py_client(url, "s_py")
        await py_sender.connect(15)
        await py_sender.join("chaos")
        js_sender = await Probe.start(url, "s_js", rooms=["chaos"])
        await js_sender.wait(lambda line: line.get("ready") is True)
        py_store, js_store = tmp_path / "py-rx.json", tmp_path / "js-rx.json"
        py_rx_got: list[Message] = []
        js_rx_seen: list[dict[str, Any]] = []
        restarts = {"py": 0, "js": 0}
        acked: dict[int, str] = {}
        stop = asyncio.Event()
        first_join = {"py": asyncio.Event(), "js": asyncio.Event()}

        async def py_receiver() -> None:
            while True:
                rx, _ = py_client(url, "rx_py", store=FileStore(py_store))
                rx.on_message(py_rx_got.append)
                await rx.connect(15)
                await rx.join("chaos")
                first_join["py"].set()
                if stop.is_set():
                    top = max(acked)
                    await until(lambda c=rx, t=top: c.last_seqs().get("room:chaos", 0) >= t, 20)
                    await rx.close()
                    return
                await asyncio.sleep(rng.uniform(0.4, 1.0))
                await rx.close()
                restarts["py"] += 1

        async def js_receiver() -> None:
            while True:
                probe = await Probe.start(url, "rx_js", rooms=["chaos"], store=str(js_store))
                await probe.wait(lambda line: line.get("ready") is True, 20)
                first_join["js"].set()
                if stop.is_set():
                    top = max(acked)
                    reached = max((_seq_of({"message": m}) for m in js_rx_seen), default=0)
                    if reached < top:
                        await probe.wait(lambda line, t=top: _seq_of(line) >= t, 20)
                    await probe.stop()
                    js_rx_seen.extend(probe.messages())
                    return
                await asyncio.sleep(rng.uniform(0.4, 1.0))
                await probe.stop()
                js_rx_seen.extend(probe.messages())
                restarts["js"] += 1

        async def send_py() -> None:
            for i in range(per_sender):
                ack = await py_sender.send_room("chaos", f"py-{i}")
                acked[ack["seq"]] = f"py-{i}"
                await asyncio.sleep(rng.uniform(0, 0.05))

        def answered() -> int:
            return sum("ack" in x or "failed" in x for x in js_sender.lines)

        async def send_js() -> None:
            for i in range(per_sender):
                js_sender.command(send={"room": "chaos", "text": f"js-{i}"})
                await until(lambda n=i: answered() > n, 20)
                await asyncio.sleep(rng.uniform(0, 0.05))
            assert not [x for x in js_sender.lines if "failed" in x]
            for line in js_sender.lines:
                if "ack" in line:
                    acked[line["ack"]["seq"]] = "js"

        kicks = 0

        async def kicker() -> None:
            nonlocal kicks
            while not stop.is_set():
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                opens = [x for x in js_sender.lines if x.get("state") == "open"]
                victims = [py_sender.connection_id, opens[-1]["connectionId"] if opens else None]
                victim = rng.choice([v for v in victims if v])
                status, _ = await asyncio.to_thread(http, gw, "DELETE", f"/connections/{victim}")
                kicks += status == 204

        receivers = [asyncio.ensure_future(py_receiver()), asyncio.ensure_future(js_receiver())]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in first_join.values())), 30)
        chaos = asyncio.ensure_future(kicker())
        await asyncio.gather(send_py(), send_js())
        stop.set()
        await chaos
        await asyncio.gather(*receivers)
        await asyncio.sleep(0.5)  # anything shown twice or echoed back would be here by now
        js_sender_seen = js_sender.messages()
        await js_sender.stop()
        await py_sender.close()

        top = max(acked)
        py_rx = [(m.seq, m.text) for m in py_rx_got if m.stream == "room:chaos"]
        js_rx = [(m["seq"], m["text"]) for m in js_rx_seen if m["stream"] == "room:chaos"]
        texts = {f"py-{i}" for i in range(per_sender)} | {f"js-{i}" for i in range(per_sender)}
        figures: dict[str, Any] = {"sent": 2 * per_sender, "acked": len(acked), "kicks": kicks,
                                   "restarts": restarts}  # fmt: skip
        for name, seen in (("py_rx", py_rx), ("js_rx", js_rx)):
            got = [text for _, text in seen]
            figures[f"{name}_received"] = len(got)
            figures[f"{name}_lost"] = sorted(texts - set(got))
            figures[f"{name}_twice"] = len(got) - len(set(got))
            figures[f"{name}_in_order"] = [q for q, _ in seen] == sorted(q for q, _ in seen)
            assert max(q for q, _ in seen) >= top
        figures["py_sender_own_as_incoming"] = sum(
            1 for m in py_sender_got if m.text.startswith("py-")
        )
        figures["js_sender_own_as_incoming"] = sum(
            1 for m in js_sender_seen if str(m["text"]).startswith("js-")
        )
        figures["py_sender_saw_js"] = sum(1 for m in py_sender_got if m.text.startswith("js-"))
        figures["js_sender_saw_py"] = sum(
            1 for m in js_sender_seen if str(m["text"]).startswith("py-")
        )
        return figures

    figures = run(scenario, timeout=110)
    print(f"chaos with restarts: {figures}", file=sys.stderr)
    for key, value in figures.items():
        record_property(key, json.dumps(value))
    assert figures["acked"] == figures["sent"]
    assert figures["restarts"]["py"] >= 2 and figures["restarts"]["js"] >= 2
    for name in ("py_rx", "js_rx"):
        assert figures[f"{name}_lost"] == [] and figures[f"{name}_twice"] == 0, figures
        assert figures[f"{name}_in_order"], figures
    assert figures["py_sender_own_as_incoming"] == 0 and figures["js_sender_own_as_incoming"] == 0
    assert figures["py_sender_saw_js"] == per_sender and figures["js_sender_saw_py"] == per_sender


def test_ordered_sends_keep_the_senders_order_in_the_log_and_what_it_costs(
    gateway_factory: GatewayFactory, record_property: Callable[[str, object], None]
) -> None:
    """40 sends to one room made at once: with ``ordered_sends`` the room's log holds them in
    the order they were made (each goes out after the previous ack); without, API Gateway's
    concurrent invocations may log them in another order. The wall time of both is recorded."""
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)
    url = ws_url(gw)
    count = 40

    async def burst(client: SwitchboardClient, room: str) -> tuple[float, list[str]]:
        await client.join(room)
        started = time.monotonic()
        await asyncio.gather(*(client.send_room(room, f"m{i}") for i in range(count)))
        elapsed = time.monotonic() - started
        page = await client.history(f"room:{room}", 0, 100)
        return elapsed, [m["text"] for m in page["messages"] if m.get("type") == "message"]

    async def scenario() -> dict[str, Any]:
        ordered, _ = py_client(url, "ordered", ordered_sends=True)
        free, _ = py_client(url, "free")
        await ordered.connect(15)
        await free.connect(15)
        ordered_s, ordered_log = await burst(ordered, "ordered")
        free_s, free_log = await burst(free, "free")
        await ordered.close()
        await free.close()
        expected = [f"m{i}" for i in range(count)]
        assert ordered_log == expected
        assert sorted(free_log) == sorted(expected)
        return {
            "ordered_s": round(ordered_s, 3),
            "unordered_s": round(free_s, 3),
            "unordered_out_of_place": sum(a != b for a, b in zip(free_log, expected, strict=True)),
        }

    figures = run(scenario)
    print(f"ordered sends: {figures}", file=sys.stderr)
    for key, value in figures.items():
        record_property(key, value)


def test_a_recreated_log_after_a_gateway_restart_is_a_reset_not_duplicates(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """Both clients keep their file stores across a restart of the local gateway (its embedded
    table starts empty): the room's new log numbers from 1 again, below the stored cursors. Each
    client restarts that stream's cursor (a ``reset``) and delivers the new messages, where
    before it dropped them as duplicates of seqs it had seen."""
    node_ready()
    py_store, js_store = tmp_path / "py.json", tmp_path / "js.json"

    async def first_run(url: str) -> None:
        alice, _ = py_client(url, "alice")
        bob, bob_got = py_client(url, "bob", store=FileStore(py_store))
        await alice.connect(15)
        await bob.connect(15)
        await alice.join("lobby")
        await bob.join("lobby")
        js = await Probe.start(url, "jsbob", rooms=["lobby"], store=str(js_store))
        await js.wait(lambda line: line.get("ready") is True)
        for i in range(6):
            await alice.send_room("lobby", f"old-{i}")
        await until(lambda: len(bob_got) == 6)
        await js.wait(
            lambda line: sum(1 for m in js.messages() if m["stream"] == "room:lobby") >= 6
        )
        await js.stop()
        await bob.close()
        await alice.close()

    async def second_run(url: str) -> None:
        bob, bob_got = py_client(url, "bob", store=FileStore(py_store))
        resets: list[Any] = []
        bob.on_reset(resets.append)
        await bob.connect(15)
        await bob.join("lobby")
        js = await Probe.start(url, "jsbob", rooms=["lobby"], store=str(js_store))
        await js.wait(lambda line: line.get("ready") is True)
        alice, _ = py_client(url, "alice")
        await alice.connect(15)
        await alice.join("lobby")
        for i in range(3):
            await alice.send_room("lobby", f"new-{i}")
        await until(lambda: [m.text for m in bob_got] == ["new-0", "new-1", "new-2"], 10)
        await js.wait(
            lambda line: (
                [m["text"] for m in js.messages() if m["stream"] == "room:lobby"]
                == ["new-0", "new-1", "new-2"]
            ),
            10,
        )
        assert [r.stream for r in resets] == ["room:lobby"]
        await js.stop()
        await alice.close()
        await bob.close()

    first = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)
    run(lambda: first_run(ws_url(first)))
    first.stop()
    # The store keeps {"epoch", "seq"} once the server numbers streams in epochs (#24).
    stored = json.loads(py_store.read_text())["room:lobby"]
    assert (stored["seq"] if isinstance(stored, dict) else stored) >= 6
    second = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)
    run(lambda: second_run(ws_url(second)))
