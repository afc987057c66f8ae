// A JS client driven from a Python test (tests/clients/test_clients_e2e.py): connects to the
// URL in argv[2] as the user in argv[3] with the client's default backoff, and prints one JSON
// line per state change and per message, with the wall-clock time in ms, until stdin closes.
// Options as JSON in argv[4] (e.g. {"rooms": ["r2"], "store": "path.json", "echo": true}).

import { FileStore } from "../src/file-store.js";
import { SwitchboardClient } from "../src/index.js";
import WebSocket from "ws";

const [url, userId, raw = "{}"] = process.argv.slice(2);
const options = JSON.parse(raw);
const out = (record) => process.stdout.write(`${JSON.stringify({ t: Date.now(), ...record })}\n`);
const store = options.store ? new FileStore(options.store, { flushMs: 10 }) : undefined;
const client = new SwitchboardClient({ url, userId, WebSocket, store, echo: options.echo === true });
client.on("state", (e) => out({ state: e.state, reason: e.reason, status: e.status, connectionId: e.connectionId }));
client.on("message", (m) => out({ message: { stream: m.stream, seq: m.seq, sender: m.sender, text: m.text, echo: m.echo === true } }));
client.on("error", (e) => out({ error: e.code, status: e.status }));

process.stdin.setEncoding("utf8");
let buffer = "";
process.stdin.on("data", async (chunk) => {
  buffer += chunk;
  let newline;
  while ((newline = buffer.indexOf("\n")) >= 0) {
    const line = buffer.slice(0, newline);
    buffer = buffer.slice(newline + 1);
    const command = JSON.parse(line);
    try {
      if (command.send) out({ ack: await client.sendRoom(command.send.room, command.send.text) });
      if (command.join) out({ joined: (await client.join(command.join)).room ?? command.join });
    } catch (err) {
      out({ failed: err.code });
    }
  }
});
process.stdin.on("end", () => {
  client.close();
  store?.flush();
  process.exit(0);
});

client.connect().then(
  async () => {
    for (const room of options.rooms ?? []) await client.join(room);
    out({ ready: true });
  },
  (err) => out({ connectFailed: err.code, status: err.status, serverMessage: err.serverMessage }),
);
