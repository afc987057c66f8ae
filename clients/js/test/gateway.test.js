// Against the real local gateway: acks and errors, rooms, a send during a reconnect.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { kick, startGateway, testClient, until } from "../testing/gateway.js";

let gateway;
const clients = [];

before(async () => {
  gateway = await startGateway();
});

after(async () => {
  for (const c of clients) c.close();
  await gateway?.stop();
});

async function client(userId, options = {}) {
  const c = testClient(gateway, userId, options);
  clients.push(c);
  c.received = [];
  c.on("message", (m) => c.received.push(m));
  await c.connect();
  return c;
}

test("acks carry stream and seq; errors reject with the server's code", async () => {
  const alice = await client("alice");
  const bob = await client("bob");
  assert.equal((await alice.join("lobby")).joined, true);
  await bob.join("lobby");
  const ack = await alice.sendRoom("lobby", "hello");
  assert.equal(ack.stream, "room:lobby");
  assert.ok(Number.isInteger(ack.seq));
  await until(bob, "message", () => bob.received.length === 1, 5000, "bob's message");
  assert.deepEqual([bob.received[0].text, bob.received[0].seq], ["hello", ack.seq]);
  const dm = await alice.sendMessage("bob", "psst");
  assert.equal(dm.stored, true);
  assert.equal(dm.seq, undefined); // never the recipient stream's seq (no online oracle)
  await assert.rejects(alice.sendRoom("elsewhere", "x"), { code: "forbidden" });
  // An offline recipient is not an error: the message is stored for their resume.
  assert.equal((await alice.sendMessage("nobody", "x")).stored, true);
  await assert.rejects(alice.leave("never-joined"), { code: "not_found" });
  await assert.rejects(alice.sendRoom("lobby", ""), { code: "bad_request" });
  assert.equal((await alice.broadcast("to all")).stream, "all");
  await until(bob, "message", () => bob.received.length === 3, 5000, "bob's dm and broadcast");
  assert.deepEqual(bob.received.map((m) => m.text), ["hello", "psst", "to all"]);
});

test("rooms are rejoined after a kick and what was missed is resumed", async () => {
  // Carol stays away ~1 s after the kick: the REST kick answers only after the socket is
  // closed, so with the tests' usual 0-50 ms backoff she could be back before dave sends.
  const carol = await client("carol", { reconnect: { initialDelayMs: 1000, maxDelayMs: 1000 }, random: () => 0.999 });
  const dave = await client("dave");
  await carol.join("den");
  await dave.join("den");
  const first = carol.connectionId;
  const reopened = until(carol, "open", () => carol.connectionId !== first && carol.state === "open", 10_000, "carol back");
  assert.equal(await kick(gateway, first), 204);
  const acks = [];
  for (let i = 0; i < 5; i++) acks.push((await dave.sendRoom("den", `m${i}`)).seq);
  await reopened;
  assert.deepEqual(carol.rooms, ["den"]);
  await until(carol, "message", () => carol.received.length === 5, 10_000, "carol's resume");
  assert.deepEqual(carol.received.map((m) => m.seq), acks);
  assert.ok(carol.received.some((m) => m.replayed), "some came from the resume");
});

test("a send made during a reconnect is delivered exactly once", async () => {
  const erin = await client("erin");
  const frank = await client("frank");
  await erin.join("hall");
  await frank.join("hall");
  const reconnecting = until(erin, "state", () => erin.state === "reconnecting", 5000, "erin reconnecting");
  await kick(gateway, erin.connectionId);
  await reconnecting;
  const ack = await erin.sendRoom("hall", "sent while away");
  await until(frank, "message", () => frank.received.length >= 1, 5000, "frank's message");
  await new Promise((r) => setTimeout(r, 500)); // a second copy would arrive by now
  assert.deepEqual(frank.received.map((m) => [m.text, m.seq]), [["sent while away", ack.seq]]);
});
