import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FileStore } from "../src/file-store.js";
import { LocalStorageStore, MemoryStore, SwitchboardClient, backoffDelay, randomId } from "../src/index.js";
import { FakeClock, fakeWebSocketClass, flush, message, presence } from "../testing/fakes.js";

const NOW_SEQ = 2 ** 53;

function setup(options = {}) {
  const clock = new FakeClock();
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const client = new SwitchboardClient({
    url: "ws://gw/api",
    userId: "u_1",
    WebSocket: FakeWebSocket,
    timers: clock,
    now: clock.now,
    random: () => 0.5,
    ...options,
  });
  const states = [];
  const messages = [];
  client.on("state", (e) => states.push(e.state));
  client.on("message", (m) => messages.push(`${m.stream}#${m.seq}`));
  client.on("presence", (p) => messages.push(`${p.stream}#${p.seq} ${p.event} ${p.userId}`));
  return { clock, client, sockets, states, messages };
}

async function connected(options) {
  const t = setup(options);
  const opened = t.client.connect();
  await flush();
  t.sockets[0].open();
  await t.sockets[0].sync();
  await opened;
  return t;
}

test("connects, syncs (whoami, resume from now) and reports its states", async () => {
  const t = setup();
  const opened = t.client.connect();
  assert.equal(t.client.state, "connecting");
  await flush();
  assert.equal(t.sockets[0].url, "ws://gw/api?userId=u_1");
  t.sockets[0].open();
  const resume = await t.sockets[0].sync({ connectionId: "abc=" });
  await opened;
  assert.deepEqual(resume.streams, { "user:u_1": NOW_SEQ, all: NOW_SEQ });
  assert.deepEqual(t.states, ["connecting", "open"]);
  assert.equal(t.client.connectionId, "abc=");
});

test("a token (or a function giving one) goes in the query string", async () => {
  const t = setup({ userId: undefined, token: async () => "a.b c" });
  t.client.connect();
  await flush();
  assert.equal(t.sockets[0].url, "ws://gw/api?token=a.b%20c");
});

test("backoff is full jitter under a doubling, capped ceiling", () => {
  const opts = { initialDelayMs: 100, maxDelayMs: 1000 };
  assert.equal(backoffDelay(0, opts, () => 0), 0);
  assert.equal(backoffDelay(0, opts, () => 0.999), 99);
  assert.equal(backoffDelay(3, opts, () => 0.999), 799);
  assert.equal(backoffDelay(10, opts, () => 0.999), 999);
  assert.equal(backoffDelay(5000, opts, () => 0.5), 500);
});

test("reconnects after a drop with growing delays, and gives up only when told", async () => {
  const t = await connected({ reconnect: { initialDelayMs: 100, maxDelayMs: 1000, maxAttempts: 3 }, random: () => 0.999 });
  const delays = [];
  t.client.on("reconnecting", (e) => delays.push(e.delay));
  t.sockets[0].drop(1001);
  for (let i = 1; i <= 3; i++) {
    await t.clock.advance(1000);
    assert.equal(t.sockets.length, 1 + i);
    t.sockets[i].drop(1006);
  }
  assert.deepEqual(delays, [99, 199, 399]);
  // Giving up is a failure the app did not ask for: `failed`, not `closed`.
  assert.equal(t.client.state, "failed");
  assert.deepEqual(t.states, ["connecting", "open", "reconnecting", "reconnecting", "reconnecting", "failed"]);
  await assert.rejects(t.client.sendRoom("a", "x"), { code: "closed" });
});

test("a dial that never opens times out into a reconnect", async () => {
  const t = setup({ connectTimeoutMs: 50 });
  t.client.connect();
  await t.clock.advance(50);
  assert.equal(t.client.state, "reconnecting");
  assert.equal(t.sockets[0].closed.by, "client");
});

test("requests resolve with the ack and reject with the error's code or a timeout", async () => {
  const t = await connected({ requestTimeoutMs: 1000 });
  const ws = t.sockets[0];
  const ok = t.client.sendRoom("lobby", "hi");
  const bad = t.client.sendMessage("u_2", "hi");
  const slow = t.client.broadcast("hi");
  const [room, dm, all] = ws.sent.slice(-3);
  assert.equal(room.action, "sendRoom");
  assert.equal(all.action, "broadcastAll");
  for (const frame of [room, dm, all]) assert.match(frame.clientMsgId, /^[0-9a-f-]{32,36}$/);
  ws.receive({ type: "ack", ref: room.ref, delivered: 1, failed: 0, gone: 0, stream: "room:lobby", seq: 4 });
  ws.receive({ type: "error", ref: dm.ref, code: "forbidden", message: "no" });
  assert.equal((await ok).seq, 4);
  await assert.rejects(bad, (err) => err.code === "forbidden" && err.frame.message === "no");
  await t.clock.advance(1000);
  await assert.rejects(slow, { code: "timeout" });
});

test("join is remembered: rooms are rejoined, then resumed from their last seq", async () => {
  const t = await connected();
  const ws = t.sockets[0];
  const joined = t.client.join("lobby");
  ws.receive({ type: "ack", ref: ws.last("join").ref, delivered: 0, failed: 0, gone: 0, joined: true });
  await flush();
  const first = ws.last("resume");
  assert.deepEqual(first.streams, { "room:lobby": NOW_SEQ });
  ws.receive({ type: "resumed", ref: first.ref, streams: { "room:lobby": { after: NOW_SEQ, last: 6, replayed: 0, truncated: false } } });
  await joined; // join resolves once the room's stream is resumed
  await flush();
  ws.receive(message("room:lobby", 7));
  ws.drop();
  await t.clock.advance(10_000);
  const ws2 = t.sockets[1];
  ws2.open();
  const resume = await ws2.sync({ replay: [message("room:lobby", 7), message("room:lobby", 8)] });
  assert.deepEqual(ws2.sent.filter((f) => f.action === "join").map((f) => f.room), ["lobby"]);
  assert.equal(resume.streams["room:lobby"], 7);
  assert.deepEqual(t.messages, ["room:lobby#7", "room:lobby#8"]);
  assert.equal(t.client.counters.duplicates, 1);
  assert.equal(t.client.state, "open");
});

test("a refused rejoin is reported and forgotten; the rest still resumes", async () => {
  const t = await connected();
  const joined = t.client.join("full");
  t.sockets[0].receive({ type: "ack", ref: t.sockets[0].last("join").ref, joined: true });
  await flush();
  t.sockets[0].receive({ type: "resumed", ref: t.sockets[0].last("resume").ref, streams: {} });
  await joined;
  const errors = [];
  t.client.on("error", (e) => errors.push(e.code));
  t.sockets[0].drop();
  await t.clock.advance(10_000);
  const ws = t.sockets[1];
  ws.open();
  await flush();
  ws.receive({ type: "identity", ref: ws.last("whoami").ref, userId: "u_1", connectionId: "c2", rooms: [] });
  await flush();
  ws.receive({ type: "error", ref: ws.last("join").ref, code: "forbidden", message: "at most 1 rooms" });
  await flush();
  assert.deepEqual(Object.keys(ws.last("resume").streams), ["user:u_1", "all"]);
  assert.deepEqual(errors, ["forbidden"]);
  assert.deepEqual(t.client.rooms, []);
});

test("sends while reconnecting are queued, bounded, and go out after the resume", async () => {
  const t = await connected({ maxQueue: 2 });
  const ws = t.sockets[0];
  const unacked = t.client.sendRoom("lobby", "first");
  const firstId = ws.last("sendRoom").clientMsgId;
  ws.drop();
  const queued = t.client.sendRoom("lobby", "second");
  await assert.rejects(t.client.sendRoom("lobby", "third"), { code: "queue_full" });
  await t.clock.advance(1000); // the backoff, well inside the requests' timeout
  const ws2 = t.sockets[1];
  ws2.open();
  await flush();
  assert.equal(ws2.sent.filter((f) => f.action === "sendRoom").length, 0, "nothing before the resume");
  await ws2.sync();
  const sends = ws2.sent.filter((f) => f.action === "sendRoom");
  assert.deepEqual(sends.map((f) => f.text), ["first", "second"]);
  assert.equal(sends[0].clientMsgId, firstId, "a re-send keeps its clientMsgId");
  for (const f of sends) ws2.receive({ type: "ack", ref: f.ref, stream: "room:lobby", seq: f.ref });
  await Promise.all([unacked, queued]);
  assert.equal(t.client.counters.resent, 1);
});

test("a gap is held briefly, then filled with history", async () => {
  const t = await connected({ gapWaitMs: 200 });
  const ws = t.sockets[0];
  ws.receive(message("all", 1));
  ws.receive(message("all", 3));
  assert.deepEqual(t.messages, ["all#1"]);
  await t.clock.advance(199);
  assert.equal(ws.last("history"), undefined);
  await t.clock.advance(1);
  const history = ws.last("history");
  assert.deepEqual([history.stream, history.after], ["all", 1]);
  ws.receive({ type: "history", ref: history.ref, stream: "all", messages: [message("all", 2), message("all", 3)], next: null, last: 3 });
  await flush();
  assert.deepEqual(t.messages, ["all#1", "all#2", "all#3"]);
  assert.equal(t.client.counters.filledByHistory, 1);
});

test("presence events take their seq in the room's stream: ordered, deduped, delivered apart", async () => {
  const t = await connected({ gapWaitMs: 200, store: new MemoryStore({ "room:den": 0 }) });
  const ws = t.sockets[0];
  const seen = { message: 0, presence: 0 };
  t.client.on("message", () => (seen.message += 1));
  t.client.on("presence", () => (seen.presence += 1));
  ws.receive(message("room:den", 1));
  ws.receive(message("room:den", 3)); // held behind 2
  ws.receive(presence("room:den", 2, "enter", "u_2"));
  ws.receive({ ...presence("room:den", 2, "enter", "u_2"), replayed: true }); // a resume's copy
  ws.receive(presence("room:den", 4, "leave", "u_2"));
  ws.receive(message("room:den", 5));
  assert.deepEqual(t.messages, ["room:den#1", "room:den#2 enter u_2", "room:den#3", "room:den#4 leave u_2", "room:den#5"]);
  assert.deepEqual(seen, { message: 3, presence: 2 });
  assert.equal(t.client.counters.duplicates, 1);
  assert.equal(t.client.counters.presence, 2);
  await t.clock.advance(1000);
  assert.equal(ws.last("history"), undefined, "no gap was waited for: the presence seqs filled it");
});

test("a gap that was a presence event is filled from a history page and delivered as presence", async () => {
  const t = await connected({ gapWaitMs: 200, store: new MemoryStore({ "room:den": 0 }) });
  const ws = t.sockets[0];
  ws.receive(message("room:den", 1));
  ws.receive(message("room:den", 3)); // our own enter (2) is never fanned out to us
  await t.clock.advance(200);
  const history = ws.last("history");
  assert.deepEqual([history.stream, history.after], ["room:den", 1]);
  const page = [presence("room:den", 2, "enter", "u_1"), message("room:den", 3)];
  ws.receive({ type: "history", ref: history.ref, stream: "room:den", messages: page, next: null, last: 3 });
  await flush();
  assert.deepEqual(t.messages, ["room:den#1", "room:den#2 enter u_1", "room:den#3"]);
  assert.equal(t.client.counters.filledByHistory, 1);
  assert.equal(t.client.counters.gapFetches, 1);
});

test("members() asks for a room's roster; a non-member's request rejects with forbidden", async () => {
  const t = await connected();
  const ws = t.sockets[0];
  const roster = t.client.members("den");
  const asked = ws.last("members");
  assert.equal(asked.room, "den");
  const users = [{ userId: "u_1", connections: 2 }];
  ws.receive({ type: "members", ref: asked.ref, room: "den", count: 1, users, truncated: false });
  assert.deepEqual((await roster).users, users);
  const refused = t.client.members("elsewhere");
  ws.receive({ type: "error", ref: ws.last("members").ref, code: "forbidden", message: "join it first" });
  await assert.rejects(refused, { code: "forbidden" });
});

test("rate_limited passes retryAfterMs through; a re-sent send waits it out and asks again", async () => {
  const t = await connected({ requestTimeoutMs: 5000 });
  let ws = t.sockets[0];
  const limited = t.client.sendRoom("lobby", "too fast");
  const frame = { type: "error", ref: ws.last("sendRoom").ref, code: "rate_limited", message: "slow down", retryAfterMs: 120 };
  ws.receive(frame);
  await assert.rejects(limited, (err) => err.code === "rate_limited" && err.retryAfterMs === 120);

  const resent = t.client.sendRoom("lobby", "ack lost");
  const id = ws.last("sendRoom").clientMsgId;
  ws.drop();
  await t.clock.advance(1000);
  ws = t.sockets[1];
  ws.open();
  await ws.sync();
  // The first try is still being logged: "in progress", without retryAfterMs.
  ws.receive({ type: "error", ref: ws.last("sendRoom").ref, code: "rate_limited", message: "still in progress" });
  await flush();
  assert.equal(ws.sent.filter((f) => f.action === "sendRoom").length, 1);
  await t.clock.advance(250);
  const again = ws.sent.filter((f) => f.action === "sendRoom");
  assert.equal(again.length, 2);
  assert.equal(again[1].clientMsgId, id, "the same clientMsgId");
  ws.receive({ type: "ack", ref: again[1].ref, stream: "room:lobby", seq: 7, duplicate: true, delivered: 0, failed: 0, gone: 0 });
  assert.equal((await resent).seq, 7);
  assert.equal(t.client.counters.retried, 1);
});

test("a re-send waiting out rate_limited goes again after the next resume; close() rejects it", async () => {
  const t = await connected({ requestTimeoutMs: 60_000 });
  let ws = t.sockets[0];
  const pending = t.client.sendRoom("lobby", "x");
  ws.drop();
  await t.clock.advance(1000);
  ws = t.sockets[1];
  ws.open();
  await ws.sync();
  ws.receive({ type: "error", ref: ws.last("sendRoom").ref, code: "rate_limited", message: "slow", retryAfterMs: 5000 });
  await flush();
  ws.drop();
  await t.clock.advance(1000);
  ws = t.sockets[2];
  ws.open();
  await ws.sync();
  assert.equal(ws.sent.filter((f) => f.action === "sendRoom").length, 1, "sent after the resume, not after 5 s");
  t.client.close();
  await assert.rejects(pending, { code: "closed" });
  assert.equal(t.clock.pending(), 0, "no timer left");
});

test("a gap that arrives live meanwhile needs no history", async () => {
  const t = setup({ gapWaitMs: 200 });
  t.client.connect();
  await flush();
  const ws = t.sockets[0];
  ws.open();
  await ws.sync({ summaries: { all: { after: NOW_SEQ, last: 4, replayed: 0, truncated: false } } });
  ws.receive(message("all", 5));
  ws.receive(message("all", 7));
  ws.receive(message("all", 6));
  await t.clock.advance(500);
  assert.equal(ws.last("history"), undefined);
  assert.deepEqual(t.messages, ["all#5", "all#6", "all#7"]);
});

test("a truncated resume pages history; skipped seqs and expired ones are not waited for", async () => {
  const t = setup({ store: new MemoryStore({ all: 2 }) });
  const gaps = [];
  t.client.on("gap", (g) => gaps.push(g));
  t.client.connect();
  await flush();
  t.sockets[0].open();
  const ws = t.sockets[0];
  const syncing = ws.sync({
    replay: [message("all", 5)],
    summaries: { all: { after: 2, last: 9, replayed: 1, truncated: true, oldest: 5, next: 6 } },
  });
  await syncing;
  const page = ws.last("history");
  assert.deepEqual([page.stream, page.after], ["all", 5]);
  ws.receive({ type: "history", ref: page.ref, stream: "all", messages: [message("all", 6), message("all", 8)], skipped: [7], next: 9, last: 9 });
  await flush();
  const page2 = ws.last("history");
  assert.equal(page2.after, 8);
  assert.equal(t.client.state, "connecting", "not open before the paging is done");
  ws.receive({ type: "history", ref: page2.ref, stream: "all", messages: [message("all", 9)], next: null, last: 9 });
  await flush();
  assert.equal(t.client.state, "open");
  assert.deepEqual(gaps, [{ stream: "all", from: 3, to: 4 }]);
  assert.deepEqual(t.messages, ["all#5", "all#6", "all#8", "all#9"]);
});

test("pings under the idle timeout; a missing pong reconnects", async () => {
  const t = await connected({ pingIntervalMs: 1000, requestTimeoutMs: 300 });
  const ws = t.sockets[0];
  await t.clock.advance(1000);
  const ping = ws.last("ping");
  ws.receive({ type: "pong", ref: ping.ref });
  await t.clock.advance(1000);
  assert.equal(ws.sent.filter((f) => f.action === "ping").length, 2);
  await t.clock.advance(300);
  assert.equal(t.client.state, "reconnecting");
});

test("reconnects on its own terms before the maximum connection duration", async () => {
  const t = await connected({ maxConnectionMs: 5000, pingIntervalMs: 2000 });
  const reasons = [];
  t.client.on("reconnecting", (e) => reasons.push([e.reason, e.delay]));
  for (let i = 0; i < 2; i++) {
    await t.clock.advance(2000);
    t.sockets[0].receive({ type: "pong", ref: t.sockets[0].last("ping").ref });
  }
  await t.clock.advance(1000);
  assert.equal(reasons.length, 1);
  assert.match(reasons[0][0], /planned/);
  assert.equal(reasons[0][1], 0);
  await t.clock.advance(0);
  assert.equal(t.sockets.length, 2);
});

test("close() rejects what is queued and stops every timer", async () => {
  const t = await connected();
  t.sockets[0].drop();
  const queued = t.client.join("lobby");
  t.client.close();
  await assert.rejects(queued, { code: "closed" });
  assert.equal(t.client.state, "closed");
  assert.equal(t.clock.pending(), 0);
});

test("stored seqs are resumed from after a restart, and every delivery is saved", async () => {
  const store = new MemoryStore({ "user:u_1": 3 });
  const t = setup({ store });
  t.client.connect();
  await flush();
  t.sockets[0].open();
  const resume = await t.sockets[0].sync({ replay: [message("user:u_1", 4)] });
  assert.deepEqual(resume.streams, { "user:u_1": 3, all: NOW_SEQ });
  assert.deepEqual(store.load(), { "user:u_1": 4, all: 0 });
});

test("LocalStorageStore and FileStore keep seqs across instances; bad content counts as empty", () => {
  const items = new Map();
  const storage = { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, v) };
  new LocalStorageStore("k", storage).save("all", 5);
  assert.deepEqual(new LocalStorageStore("k", storage).load(), { all: 5 });
  items.set("k", "{not json");
  assert.deepEqual(new LocalStorageStore("k", storage).load(), {});
  assert.throws(() => new LocalStorageStore("k", undefined), TypeError);
  const path = join(mkdtempSync(join(tmpdir(), "sb-")), "seqs.json");
  const file = new FileStore(path);
  assert.deepEqual(file.load(), {});
  file.save("room:a", 7);
  file.flush();
  assert.deepEqual(JSON.parse(readFileSync(path, "utf8")), { "room:a": 7 });
  assert.deepEqual(new FileStore(path).load(), { "room:a": 7 });
});

test("a client id is random", () => {
  assert.notEqual(randomId(), randomId());
});

test("bad options are a clear error", () => {
  assert.throws(() => new SwitchboardClient({}), /url/);
  assert.throws(() => new SwitchboardClient({ url: "ws://x", WebSocket: 1 }), /WebSocket/);
});

test("the default timers call setTimeout as a global (browsers refuse it as a method)", async () => {
  const { setTimeout: realSet, clearTimeout: realClear } = globalThis;
  // A browser's setTimeout throws "Illegal invocation" when `this` is another object.
  globalThis.setTimeout = function (fn, ms) {
    if (this !== undefined && this !== globalThis) throw new TypeError("Illegal invocation");
    return realSet(fn, ms);
  };
  globalThis.clearTimeout = function (handle) {
    if (this !== undefined && this !== globalThis) throw new TypeError("Illegal invocation");
    return realClear(handle);
  };
  try {
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const client = new SwitchboardClient({ url: "ws://gw/api", userId: "u_1", WebSocket: FakeWebSocket });
    client.connect().catch(() => {});
    await flush();
    assert.equal(client.state, "connecting");
    assert.equal(sockets.length, 1);
    client.close();
    assert.equal(client.state, "closed");
  } finally {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
  }
});
