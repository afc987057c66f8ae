// Chaos against the real local gateway: sockets are closed at random from the server side
// (the REST kick, DELETE /connections/{id}), idle and maximum-duration timeouts fire, while two
// senders keep sending to one room. Every receiver must see every entry of the room's stream
// (messages, and the presence events the reconnects cause) once, in seq order, none lost, and
// every text exactly once: the server dedupes re-sent sends by clientMsgId.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { kick, startGateway, testClient, until } from "../testing/gateway.js";

const PER_SENDER = Number(process.env.CHAOS_MESSAGES ?? 150);
const ROOM = "chaos";
const STREAM = `room:${ROOM}`;
let gateway;

before(async () => {
  // Idle timeout under the quiet receiver's ping interval, max duration a few seconds.
  gateway = await startGateway(["--idle-timeout", "1.5", "--max-duration", "4"]);
});

after(() => gateway?.stop());

function client(userId, options = {}) {
  const c = testClient(gateway, userId, { requestTimeoutMs: 20_000, ...options });
  c.seen = []; // the room stream's entries: messages and presence events, as delivered
  c.on("message", (m) => m.stream === STREAM && c.seen.push(m));
  c.on("presence", (p) => p.stream === STREAM && c.seen.push(p));
  c.on("error", (e) => c.errors?.push(e) ?? (c.errors = [e]));
  return c;
}

test("random kicks and timeouts: every message once, in seq order, none lost", { timeout: 180_000 }, async () => {
  const quiet = client("r_quiet", { pingIntervalMs: 60_000 }); // idle timeout closes it
  const planned = client("r_planned", { pingIntervalMs: 500, maxConnectionMs: 2500 });
  const senders = [client("s_1", { pingIntervalMs: 500 }), client("s_2", { pingIntervalMs: 500 })];
  const all = [quiet, planned, ...senders];
  await Promise.all(all.map((c) => c.connect()));
  await Promise.all(all.map((c) => c.join(ROOM)));
  await new Promise((r) => setTimeout(r, 300)); // the joins' baselines are read

  let kicks = 0;
  let sending = true;
  const killer = (async () => {
    while (sending) {
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 300));
      const victim = all[Math.floor(Math.random() * all.length)];
      if (victim.state === "open" && victim.connectionId && (await kick(gateway, victim.connectionId)) === 204) {
        kicks += 1;
      }
    }
  })();

  const acked = new Map(); // seq -> text
  const sent = [];
  await Promise.all(
    senders.map(async (s, n) => {
      for (let i = 0; i < PER_SENDER; i += 3) {
        const batch = [];
        for (let j = i; j < Math.min(i + 3, PER_SENDER); j++) {
          const text = `s${n + 1}-${j}`;
          sent.push(text);
          batch.push(s.sendRoom(ROOM, text).then((ack) => acked.set(ack.seq, text)));
        }
        await Promise.all(batch);
      }
    }),
  );
  sending = false;
  await killer;
  const top = Math.max(...acked.keys());
  for (const c of all) {
    await until(c, "message", () => (c.cursors[STREAM] ?? 0) >= top, 60_000, `${c.userId} to reach seq ${top}`);
  }

  const report = { sent: sent.length, kicks, top };
  for (const c of [quiet, planned]) {
    // Presence seqs count: the stream is contiguous only with them in it.
    const seqs = c.seen.map((m) => m.seq);
    const first = seqs[0];
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, k) => first + k), `${c.userId}: contiguous, in order`);
    for (const seq of acked.keys()) assert.ok(seq >= first, `${c.userId}: seq ${seq} before its start ${first}`);
    const messages = c.seen.filter((m) => m.type === "message");
    const presence = c.seen.filter((m) => m.type === "presence");
    for (const p of presence) assert.ok(["enter", "leave"].includes(p.event) && p.room === ROOM, JSON.stringify(p));
    const texts = new Map();
    for (const m of messages) texts.set(m.text, (texts.get(m.text) ?? 0) + 1);
    for (const text of sent) assert.ok(texts.has(text), `${c.userId} never got ${text}`);
    for (const [seq, text] of acked) assert.equal(messages.find((m) => m.seq === seq)?.text, text, `seq ${seq}`);
    const counters = c.counters;
    report[c.userId] = {
      received: messages.length,
      presence: presence.length,
      duplicatesSuppressed: counters.duplicates,
      filledByHistory: counters.filledByHistory,
      gapFetches: counters.gapFetches,
      reconnects: counters.reconnects,
      // A send whose ack was lost with its socket goes again with its clientMsgId; the
      // server answers the repeat with the original ack, so no text is logged twice.
      textsTwice: [...texts.values()].filter((k) => k > 1).length,
    };
    assert.equal(report[c.userId].textsTwice, 0, `${c.userId}: texts stored twice`);
    assert.equal(messages.length, sent.length, `${c.userId}: every text exactly once`);
    assert.ok(presence.length >= 1, `${c.userId}: the reconnects were announced`);
    assert.ok(counters.reconnects >= 2, `${c.userId} reconnected ${counters.reconnects} times`);
  }
  report.resent = senders.reduce((n, s) => n + s.counters.resent, 0);
  report.retried = senders.reduce((n, s) => n + s.counters.retried, 0);
  assert.equal(acked.size, sent.length, "one seq per text");
  console.log(`# chaos ${JSON.stringify(report)}`);
  assert.ok(kicks >= 3, `only ${kicks} kicks`);
  for (const c of all) c.close();
});
