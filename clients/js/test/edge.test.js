// The app's edge (issue 25): restarts resume at once, own sends never come back as incoming,
// refusals end in `failed`, tokens are refreshed over the live connection, error codes are
// exported, and the event-model frames (epochs and `reset`, `replay`, ephemeral sends,
// `removed`). Each test drives the client through the fakes in testing/fakes.js.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ConnectError, ErrorCode, MemoryStore, SwitchboardClient, isRetryable, jwtExpiryMs } from "../src/index.js";
import { FakeClock, fakeJwt, fakeWebSocketClass, flush, message } from "../testing/fakes.js";

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
  const seen = [];
  const errors = [];
  client.on("message", (m) => seen.push(`${m.stream}#${m.seq}${m.echo ? " echo" : ""}`));
  client.on("reset", (r) => seen.push(`reset ${r.stream} ${r.previousEpoch}->${r.epoch}`));
  client.on("error", (e) => errors.push(e));
  return { clock, client, sockets, seen, errors };
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

function ack(ws, frame, extra = {}) {
  ws.receive({ type: "ack", ref: frame.ref, delivered: 1, failed: 0, gone: 0, ...extra });
}

async function joinRoom(t, room, summary) {
  const ws = t.sockets.at(-1);
  const joined = t.client.join(room);
  ack(ws, ws.last("join"), { room, joined: true });
  await flush();
  const resume = ws.last("resume");
  ws.receive({ type: "resumed", ref: resume.ref, streams: { [`room:${room}`]: summary(resume.streams[`room:${room}`]) } });
  await joined;
  await flush();
  return resume;
}

// --- 1. a restart in a quiet room ------------------------------------------------------------

test("after a restart, join resumes a stored room's stream at once (no new message needed)", async () => {
  const t = await connected({ store: new MemoryStore({ "room:r2": 3 }) });
  const ws = t.sockets[0];
  const resume = await joinRoom(t, "r2", (after) => ({ after, last: 6, replayed: 3, truncated: false }));
  assert.equal(resume.streams["room:r2"], 3, "resumed from the stored cursor, not from now");
  // (what the server replays before `resumed`; sent after the fact here, still delivered)
  for (const seq of [4, 5, 6]) ws.receive({ ...message("room:r2", seq), replayed: true });
  assert.deepEqual(t.seen, ["room:r2#4", "room:r2#5", "room:r2#6"]);
});

// --- 2. own sends ----------------------------------------------------------------------------

test("an own send's seq, from its ack, is never delivered later as incoming (gap fill)", async () => {
  const t = await connected({ gapWaitMs: 100 });
  const ws = t.sockets[0];
  await joinRoom(t, "lobby", (after) => ({ after, last: 4, replayed: 0, truncated: false }));
  const sent = t.client.sendRoom("lobby", "x1");
  ack(ws, ws.last("sendRoom"), { stream: "room:lobby", seq: 5, id: "m5" });
  await sent;
  ws.receive(message("room:lobby", 6));
  await t.clock.advance(1000);
  assert.equal(ws.last("history"), undefined, "no gap: seq 5 is ours");
  assert.deepEqual(t.seen, ["room:lobby#6"]);
  assert.equal(t.client.counters.own, 1);
});

test("an own message replayed before its ack (a re-send after a drop) is not incoming", async () => {
  const t = await connected();
  const ws = t.sockets[0];
  await joinRoom(t, "lobby", (after) => ({ after, last: 4, replayed: 0, truncated: false }));
  const sent = t.client.sendRoom("lobby", "x1");
  ws.drop();
  await t.clock.advance(1000);
  const ws2 = t.sockets[1];
  ws2.open();
  const own = { ...message("room:lobby", 5, "x1"), from: "u_1" };
  await ws2.sync({ replay: [own, message("room:lobby", 6)] });
  const resent = ws2.last("sendRoom");
  ack(ws2, resent, { stream: "room:lobby", seq: 5, duplicate: true });
  await sent;
  assert.deepEqual(t.seen, ["room:lobby#6"]);
});

test("with echo, an own send is delivered once, in stream order, when its ack arrives", async () => {
  const t = await connected({ echo: true });
  const ws = t.sockets[0];
  await joinRoom(t, "lobby", (after) => ({ after, last: 4, replayed: 0, truncated: false }));
  const got = [];
  t.client.on("message", (m) => got.push(m));
  const sent = t.client.publish("lobby", "cursor", { x: 1 });
  ws.receive(message("room:lobby", 5));
  ack(ws, ws.last("sendRoom"), { stream: "room:lobby", seq: 6, id: "m6" });
  await sent;
  ws.receive({ ...message("room:lobby", 6), from: "u_1" }); // a late copy: a duplicate
  assert.deepEqual(t.seen, ["room:lobby#5", "room:lobby#6 echo"]);
  assert.deepEqual([got[1].event, got[1].data, got[1].sender], ["cursor", { x: 1 }, "u_1"]);
});

// --- 5. refusals -----------------------------------------------------------------------------

test("a handshake refused with 400 fails at once: `failed`, a typed error with status and message", async () => {
  const t = setup();
  const states = [];
  t.client.on("state", (e) => states.push(e.state));
  const opened = t.client.connect();
  await flush();
  t.sockets[0].refuse(400, JSON.stringify({ message: "userId is required" }));
  await assert.rejects(opened, (err) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, ErrorCode.HANDSHAKE_REFUSED);
    assert.equal(err.status, 400);
    assert.equal(err.serverMessage, "userId is required");
    assert.equal(err.retryable, false);
    return true;
  });
  assert.deepEqual(states, ["connecting", "failed"]);
  await t.clock.advance(60_000);
  assert.equal(t.sockets.length, 1, "never retried");
  assert.equal(t.errors.at(-1).status, 400);
});

test("a 503 handshake is retried with backoff", async () => {
  const t = setup();
  t.client.connect().catch(() => {});
  await flush();
  t.sockets[0].refuse(503, "busy");
  assert.equal(t.client.state, "reconnecting");
  await t.clock.advance(5_000);
  assert.equal(t.sockets.length, 2);
  t.client.close();
});

test("a 401 with a token callback is retried once with a fresh token, then fails", async () => {
  let calls = 0;
  const t = setup({ userId: undefined, token: () => `tok${++calls}` });
  const opened = t.client.connect();
  await flush();
  t.sockets[0].refuse(401, JSON.stringify({ message: "token expired" }));
  await t.clock.advance(0);
  assert.equal(t.sockets.length, 2);
  assert.match(t.sockets[1].url, /token=tok2$/);
  t.sockets[1].refuse(401, JSON.stringify({ message: "bad signature" }));
  await assert.rejects(opened, { code: "handshake_refused", status: 401, serverMessage: "bad signature" });
  assert.equal(t.client.state, "failed");
});

test("in a browser (no status), failed handshakes are `error` events with the attempt, bounded by maxAttempts", async () => {
  const t = setup({ maxAttempts: 2 });
  const opened = t.client.connect();
  for (let i = 0; i < 3; i++) {
    await t.clock.advance(5_000);
    t.sockets[i].refuse(400, "", { browser: true });
  }
  await assert.rejects(opened, (err) => err instanceof ConnectError && err.code === "gave_up" && err.attempts === 2);
  const failures = t.errors.filter((e) => e.code === ErrorCode.HANDSHAKE_FAILED);
  assert.deepEqual(failures.map((e) => e.attempt), [1, 2, 3]);
  assert.equal(t.client.state, "failed");
});

// --- 6. tokens -------------------------------------------------------------------------------

test("the token callback is asked before every connect and before expiry; the refresh goes over the live connection", async () => {
  const tokens = [];
  const clock = new FakeClock();
  clock.time = 1_000_000;
  const token = async () => {
    const t = fakeJwt(Math.floor(clock.time / 1000) + 600);
    tokens.push(t);
    return t;
  };
  const t = setup({ userId: undefined, token, timers: clock, now: clock.now, tokenRefreshMarginMs: 60_000, pingIntervalMs: 3_600_000 });
  t.clock = clock;
  t.client.connect();
  await flush();
  t.sockets[0].open();
  await t.sockets[0].sync();
  assert.equal(tokens.length, 1);
  await clock.advance(539_000);
  assert.equal(t.sockets[0].last("authorize"), undefined, "not yet: 61 s left");
  await clock.advance(1_000);
  const authorize = t.sockets[0].last("authorize");
  assert.equal(authorize.token, tokens[1]);
  t.sockets[0].receive({ type: "authorized", ref: authorize.ref, expiresAt: clock.time + 600_000 });
  await flush();
  assert.equal(t.client.counters.tokenRefreshes, 1);
  t.sockets[0].drop();
  await clock.advance(5_000);
  assert.equal(tokens.length, 3, "asked again before the reconnect");
  assert.match(t.sockets[1].url, new RegExp(`token=${tokens[2]}$`));
});

test("a send refused token_expired is retried once after the refresh; forbidden is not", async () => {
  let n = 0;
  const t = await connected({ userId: undefined, token: () => `tok${++n}` });
  const ws = t.sockets[0];
  const sent = t.client.sendRoom("lobby", "hi");
  const first = ws.last("sendRoom");
  ws.receive({ type: "error", ref: first.ref, code: "token_expired", message: "expired" });
  await flush();
  const authorize = ws.last("authorize");
  assert.equal(authorize.token, "tok2");
  ws.receive({ type: "authorized", ref: authorize.ref, expiresAt: 9e12 });
  await flush();
  const again = ws.last("sendRoom");
  assert.notEqual(again.ref, first.ref);
  assert.equal(again.clientMsgId, first.clientMsgId);
  ack(ws, again, { stream: "room:lobby", seq: 1 });
  assert.equal((await sent).seq, 1);
  // Expired again after the retry: rejected, not retried a second time.
  const twice = t.client.sendRoom("lobby", "x");
  ws.receive({ type: "error", ref: ws.last("sendRoom").ref, code: "token_expired", message: "expired" });
  await flush();
  ws.receive({ type: "authorized", ref: ws.last("authorize").ref, expiresAt: 9e12 });
  await flush();
  ws.receive({ type: "error", ref: ws.last("sendRoom").ref, code: "token_expired", message: "expired" });
  await assert.rejects(twice, { code: "token_expired" });
  const refused = t.client.sendRoom("secret", "x");
  const before = ws.sent.length;
  ws.receive({ type: "error", ref: ws.last("sendRoom").ref, code: "forbidden", message: "no send" });
  await assert.rejects(refused, (err) => err.code === "forbidden" && err.retryable === false);
  assert.equal(ws.sent.length, before, "a forbidden send is not retried");
});

test("jwtExpiryMs reads exp from a JWT and nothing from anything else", () => {
  assert.equal(jwtExpiryMs(fakeJwt(1234)), 1_234_000);
  assert.equal(jwtExpiryMs("not a jwt"), undefined);
  assert.equal(jwtExpiryMs("a.%%%.c"), undefined);
});

// --- 7. error codes --------------------------------------------------------------------------

test("error codes are exported constants with a retryable flag", () => {
  assert.equal(ErrorCode.TOKEN_EXPIRED, "token_expired");
  assert.equal(ErrorCode.UNAVAILABLE, "unavailable");
  assert.equal(isRetryable(ErrorCode.RATE_LIMITED), true);
  assert.equal(isRetryable(ErrorCode.FORBIDDEN), false);
  assert.ok(Object.isFrozen(ErrorCode));
});

// --- 3, 4. event-model frames ---------------------------------------------------------------

test("a resumed entry with reset restarts the stream's cursor and emits reset; nothing new is dropped", async () => {
  const store = new MemoryStore({ "room:lobby": { epoch: "e1", seq: 24 } });
  const t = await connected({ store });
  const ws = t.sockets[0];
  const joined = t.client.join("lobby");
  ack(ws, ws.last("join"), { room: "lobby", joined: true });
  await flush();
  const resume = ws.last("resume");
  assert.deepEqual(resume.streams["room:lobby"], { epoch: "e1", seq: 24 });
  const summary = { reset: true, epoch: "e2", after: 0, last: 2, replayed: 0, truncated: false };
  ws.receive({ type: "resumed", ref: resume.ref, streams: { "room:lobby": summary } });
  await flush();
  const history = ws.last("history");
  assert.deepEqual([history.stream, history.after], ["room:lobby", 0]);
  ws.receive({ type: "history", ref: history.ref, stream: "room:lobby", messages: [message("room:lobby", 1), message("room:lobby", 2)], next: null, last: 2 });
  await joined;
  ws.receive({ ...message("room:lobby", 3), epoch: "e2" });
  assert.deepEqual(t.seen, ["reset room:lobby e1->e2", "room:lobby#1", "room:lobby#2", "room:lobby#3"]);
  assert.deepEqual(store.load()["room:lobby"], { epoch: "e2", seq: 3 });
});

test("a live message of a new epoch resets the stream too", async () => {
  const t = await connected({ gapWaitMs: 50 });
  const ws = t.sockets[0];
  ws.receive({ ...message("all", 1), epoch: "a" });
  ws.receive({ ...message("all", 1), epoch: "b" });
  assert.deepEqual(t.seen, ["all#1", "reset all a->b", "all#1"]);
});

test("replay frames are unpacked in seq order; ephemeral messages bypass ordering", async () => {
  const t = await connected();
  const ws = t.sockets[0];
  const got = [];
  t.client.on("message", (m) => got.push(m));
  ws.receive(message("all", 1));
  ws.receive({ type: "replay", stream: "all", epoch: "e", messages: [3, 2].map((s) => ({ ...message("all", s), stream: undefined })) });
  ws.receive({ type: "message", from: "u_2", scope: "all", event: "typing", data: true, ephemeral: true, stream: "all" });
  ws.receive({ type: "message", from: "u_2", scope: "all", event: "typing", data: true, ephemeral: true, stream: "all" });
  assert.deepEqual(t.seen, ["all#1", "all#2", "all#3", "all#undefined", "all#undefined"]);
  assert.equal(got[1].replayed, true);
  assert.equal(got[3].ephemeral, true);
});

test("a removed frame drops the room (not rejoined) and is an event", async () => {
  const t = await connected();
  await joinRoom(t, "private:x", (after) => ({ after, last: 0, replayed: 0, truncated: false }));
  const removed = [];
  t.client.on("removed", (r) => removed.push(r.reason));
  t.sockets[0].receive({ type: "removed", room: "private:x", reason: "revoked" });
  assert.deepEqual(removed, ["revoked"]);
  assert.deepEqual(t.client.rooms, []);
});

test("an ephemeral send carries no clientMsgId", async () => {
  const t = await connected();
  t.client.publish("lobby", "cursor", { x: 1 }, { ephemeral: true });
  const frame = t.sockets[0].last("sendRoom");
  assert.equal(frame.ephemeral, true);
  assert.equal(frame.clientMsgId, undefined);
  assert.equal(NOW_SEQ > 0, true);
});

// --- 8. room and user objects ---------------------------------------------------------------

test("client.room(name) joins, sends, reads history and gets only its room's events", async () => {
  const t = await connected();
  const ws = t.sockets[0];
  const lobby = t.client.room("lobby");
  assert.equal(t.client.room("lobby"), lobby, "one object per room");
  const got = [];
  for (const type of ["message", "presence", "removed"]) lobby.on(type, (v) => got.push(`${type} ${v.seq ?? v.reason}`));
  const joined = lobby.join();
  ack(ws, ws.last("join"), { room: "lobby", joined: true });
  await flush();
  ws.receive({ type: "resumed", ref: ws.last("resume").ref, streams: { "room:lobby": { after: NOW_SEQ, last: 0 } } });
  await joined;
  assert.equal(lobby.joined, true);
  lobby.publish("cursor", { x: 1 });
  assert.deepEqual([ws.last("sendRoom").event, ws.last("sendRoom").data], ["cursor", { x: 1 }]);
  lobby.send("hi");
  assert.equal(ws.last("sendRoom").text, "hi");
  lobby.history({ before: 40, limit: 10 });
  assert.deepEqual([ws.last("history").stream, ws.last("history").before, ws.last("history").limit], ["room:lobby", 40, 10]);
  lobby.history();
  assert.equal(ws.last("history").latest, true);
  lobby.members();
  assert.equal(ws.last("members").room, "lobby");
  ws.receive(message("room:lobby", 1));
  ws.receive(message("room:other", 1));
  ws.receive({ type: "presence", room: "lobby", event: "enter", userId: "u_2", stream: "room:lobby", seq: 2 });
  ws.receive({ type: "removed", room: "lobby", reason: "revoked" });
  assert.deepEqual(got, ["message 1", "presence 2", "removed revoked"]);
});

test("client.user(id) sends direct messages and gets that user's", async () => {
  const t = await connected();
  const ws = t.sockets[0];
  const bob = t.client.user("u_2");
  const got = [];
  bob.on("message", (m) => got.push(m.text));
  bob.send("hi");
  assert.deepEqual([ws.last("sendMessage").targetUserId, ws.last("sendMessage").text], ["u_2", "hi"]);
  bob.publish("ping", 1);
  assert.equal(ws.last("sendMessage").event, "ping");
  ws.receive({ ...message("user:u_1", 1, "from bob"), from: "u_2", scope: "user" });
  ws.receive({ ...message("user:u_1", 2, "from carol"), from: "u_3", scope: "user" });
  assert.deepEqual(got, ["from bob"]);
});

test("index.d.ts declares every runtime export", async () => {
  const { readFileSync } = await import("node:fs");
  const types = readFileSync(new URL("../src/index.d.ts", import.meta.url), "utf8");
  const declared = new Set([...types.matchAll(/^export declare (?:class|function|const) (\w+)/gm)].map((m) => m[1]));
  const runtime = Object.keys(await import("../src/index.js")).filter((name) => name !== "default");
  assert.deepEqual(runtime.filter((name) => !declared.has(name)), []);
});

test("orderedSends: a send to a stream goes out after the previous one's answer", async () => {
  const t = await connected({ orderedSends: true });
  const ws = t.sockets[0];
  const first = t.client.sendRoom("lobby", "m1");
  const second = t.client.sendRoom("lobby", "m2");
  const elsewhere = t.client.sendRoom("other", "o1");
  await flush();
  assert.deepEqual(ws.sent.filter((f) => f.action === "sendRoom").map((f) => f.text), ["m1", "o1"]);
  ws.receive({ type: "error", ref: ws.last("sendRoom").ref, code: "forbidden", message: "no" });
  ack(ws, ws.sent.find((f) => f.text === "m1"), { stream: "room:lobby", seq: 1 });
  await flush();
  assert.equal(ws.last("sendRoom").text, "m2");
  ack(ws, ws.last("sendRoom"), { stream: "room:lobby", seq: 2 });
  assert.deepEqual([(await first).seq, (await second).seq], [1, 2]);
  await assert.rejects(elsewhere, { code: "forbidden" });
});

test("a server without authorize: the refresh falls back to a planned reconnect with a fresh token", async () => {
  let n = 0;
  const clock = new FakeClock();
  clock.time = 1_000_000;
  const token = () => `${fakeJwt(Math.floor(clock.time / 1000) + 120)}${++n}`;
  const t = setup({ userId: undefined, token, timers: clock, now: clock.now, pingIntervalMs: 3_600_000 });
  t.client.connect();
  await flush();
  t.sockets[0].open();
  await t.sockets[0].sync();
  await clock.advance(60_000); // 120 s token: refreshed halfway
  const authorize = t.sockets[0].last("authorize");
  t.sockets[0].receive({ type: "error", ref: authorize.ref, code: "unknown_action", message: "unknown action" });
  await clock.advance(0);
  assert.equal(t.sockets.length, 2, "reconnected at once");
  assert.equal(t.errors.at(-1).code, "unknown_action");
});

test("a display name rides with the userId (AUTH_MODE=none)", async () => {
  const t = setup({ name: "Ann B" });
  t.client.connect();
  await flush();
  assert.equal(t.sockets[0].url, "ws://gw/api?userId=u_1&name=Ann%20B");
});
