// Runs the shared conformance cases (clients/conformance/*.json: server frames in, app-visible
// events out) against the JS client; tests/clients/python/test_conformance.py runs the same
// files against the Python client. See clients/conformance/README.md for the format.

import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { MemoryStore, SwitchboardClient } from "../src/index.js";
import { FakeClock, fakeWebSocketClass, flush } from "../testing/fakes.js";

const CASES = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "conformance");
const NOW_SEQ = 2 ** 53;

function project(type, value) {
  switch (type) {
    case "message":
      return {
        type,
        stream: value.stream,
        seq: Number.isSafeInteger(value.seq) ? value.seq : null,
        sender: value.sender,
        text: value.text ?? null,
        event: value.event ?? "message",
        data: value.data ?? null,
        echo: value.echo === true,
      };
    case "presence":
      return { type, stream: value.stream, seq: value.seq, room: value.room, event: value.event, userId: value.userId };
    case "reset":
      return { type, stream: value.stream, epoch: value.epoch, previousEpoch: value.previousEpoch };
    case "gap":
      return { type, stream: value.stream, from: value.from, to: value.to };
    case "removed":
      return { type, room: value.room, reason: value.reason };
    default:
      throw new Error(type);
  }
}

function contains(actual, expected, path = "") {
  for (const [key, value] of Object.entries(expected)) {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) contains(actual?.[key], value, `${path}${key}.`);
    else assert.deepEqual(actual?.[key], value, `${path}${key}`);
  }
}

for (const file of readdirSync(CASES).filter((f) => f.endsWith(".json")).sort()) {
  const spec = JSON.parse(readFileSync(join(CASES, file), "utf8"));
  test(`conformance ${file}: ${spec.name}`, async () => {
    const clock = new FakeClock();
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const options = spec.options ?? {};
    const client = new SwitchboardClient({
      url: "ws://gw/api",
      userId: "u_1",
      WebSocket: FakeWebSocket,
      timers: clock,
      now: clock.now,
      random: () => 0.5,
      store: new MemoryStore(options.store ?? {}),
      echo: options.echo === true,
    });
    const events = [];
    for (const type of ["message", "presence", "reset", "gap", "removed"]) {
      client.on(type, (value) => events.push(project(type, value)));
    }
    const opened = client.connect();
    await flush();
    const ws = sockets[0];
    ws.open();
    await flush();
    ws.receive({ type: "identity", ref: ws.last("whoami").ref, connectionId: "c1", userId: "u_1", rooms: [] });
    await flush();
    const resume = ws.last("resume");
    const streams = {};
    for (const [stream, after] of Object.entries(resume.streams)) {
      streams[stream] = options.resumed?.[stream] ?? { after, last: 0, replayed: 0, truncated: false };
    }
    ws.receive({ type: "resumed", ref: resume.ref, streams });
    await opened;
    const answered = new Set(ws.sent.map((f) => f.ref)); // the connect's own requests
    for (const step of spec.steps) {
      if (step.call) {
        client[step.call](...step.args).catch(() => {});
      } else if (step.reply) {
        await flush();
        const request = ws.sent.find((f) => f.action === step.reply.action && !answered.has(f.ref));
        assert.ok(request, `no unanswered ${step.reply.action} to reply to`);
        answered.add(request.ref);
        ws.receive({ ...step.reply.frame, ref: request.ref });
      } else if (step.in) {
        ws.receive(step.in);
      } else if (step.expectSent) {
        await flush();
        contains(ws.last(step.expectSent.action), step.expectSent);
      }
      await flush();
    }
    assert.deepEqual(events, spec.events);
    assert.equal(NOW_SEQ, 2 ** 53);
    client.close();
  });
}
