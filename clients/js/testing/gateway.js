// Starts the project's local gateway (`python -m local_gateway`) on ephemeral ports for the
// integration tests, and reads its URLs from the banner it prints when ready.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { SwitchboardClient } from "../src/index.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

function python() {
  if (process.env.SWITCHBOARD_PYTHON) return process.env.SWITCHBOARD_PYTHON;
  const venv = join(REPO_ROOT, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

// The app's abuse limits (a connection's frame rate, a user's connections) are sized for
// people; the tests send fast and reconnect often, so their gateways raise them.
export const TEST_LIMITS = Object.freeze({
  MESSAGE_RATE: "1000",
  MESSAGE_BURST: "1000",
  MAX_CONNECTIONS_PER_USER: "1000",
});

/** Start a gateway with AUTH_MODE=none, TEST_LIMITS (overridden by `env`) and the given extra
 * flags; resolves with `{ wsUrl, restUrl, stop() }` once the banner is printed. */
export function startGateway(flags = [], { timeoutMs = 60_000, env = {} } = {}) {
  const appEnv = Object.entries({ ...TEST_LIMITS, ...env }).flatMap(([k, v]) => ["--env", `${k}=${v}`]);
  const args = ["-m", "local_gateway", "--port", "0", "--ws-port", "0", "--auth-mode", "none", "--log-level", "WARNING", "--generate-secret", "CONTINUATION_KEY", ...appEnv, ...flags];
  const proc = spawn(python(), args, {
    cwd: REPO_ROOT,
    env: { ...process.env, PYTHONUNBUFFERED: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stderr.on("data", (chunk) => (err += chunk));
  const stop = () =>
    new Promise((done) => {
      if (proc.exitCode !== null) return done();
      proc.once("exit", () => done());
      proc.kill("SIGINT");
      setTimeout(() => proc.exitCode === null && proc.kill("SIGKILL"), 10_000).unref();
    });
  return new Promise((ready, fail) => {
    const timer = setTimeout(() => {
      stop();
      fail(new Error(`gateway not ready in ${timeoutMs} ms:\n${out}\n${err}`));
    }, timeoutMs);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`gateway exited with ${code}:\n${out}\n${err}`));
    });
    proc.stdout.on("data", (chunk) => {
      out += chunk;
      if (!out.includes("Ctrl-C")) return;
      clearTimeout(timer);
      const ws = out.match(/WebSocket API\s+(ws:\/\/\S+)/);
      const rest = out.match(/REST API\s+(http:\/\/\S+)/);
      if (!ws || !rest) {
        stop();
        fail(new Error(`cannot read the banner:\n${out}`));
        return;
      }
      ready({ wsUrl: ws[1], restUrl: rest[1].replace(/\/$/, ""), stop });
    });
  });
}

/** Close a client's socket from the server side: the app's REST route
 * `DELETE /connections/{id}` (the kick), which closes it through `@connections` with the
 * gateway's own signed credentials. The gateway runs with AUTH_MODE=none, so no bearer token.
 * Resolves with the route's status (204 when it closed the socket). */
export async function kick(gateway, connectionId) {
  const url = `${gateway.restUrl}/connections/${encodeURIComponent(connectionId)}`;
  const response = await fetch(url, { method: "DELETE" });
  await response.arrayBuffer(); // drain: keep-alive sockets are reused
  return response.status;
}

/** Resolve when `predicate()` holds, checked on each `event` of `emitter`; reject after `ms`. */
export function until(emitter, event, predicate, ms, what) {
  return new Promise((done, fail) => {
    if (predicate()) return done();
    const timer = setTimeout(() => {
      emitter.off(event, check);
      fail(new Error(`timed out waiting for ${what}`));
    }, ms);
    const check = () => {
      if (!predicate()) return;
      clearTimeout(timer);
      emitter.off(event, check);
      done();
    };
    emitter.on(event, check);
  });
}

/** A client of `gateway` as `userId`, with short backoff and gap waits for tests. */
export function testClient(gateway, userId, options = {}) {
  const reconnect = { initialDelayMs: 50, maxDelayMs: 400 };
  return new SwitchboardClient({ url: gateway.wsUrl, userId, WebSocket, reconnect, gapWaitMs: 150, ...options });
}
