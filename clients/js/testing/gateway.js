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

/** Start a gateway with AUTH_MODE=none and the given extra flags; resolves with
 * `{ wsUrl, connectionsUrl, stop() }` once the banner is printed. */
export function startGateway(flags = [], { timeoutMs = 60_000 } = {}) {
  const args = ["-m", "local_gateway", "--port", "0", "--ws-port", "0", "--auth-mode", "none", "--log-level", "WARNING", ...flags];
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
      const mgmt = out.match(/@connections\s+(http:\/\/\S+)\/@connections\//);
      if (!ws || !mgmt) {
        stop();
        fail(new Error(`cannot read the banner:\n${out}`));
        return;
      }
      ready({ wsUrl: ws[1], connectionsUrl: `${mgmt[1]}/@connections`, stop });
    });
  });
}

// The local gateway, like API Gateway, refuses unsigned management calls; it checks that a
// SigV4 header is there, not the signature, so a placeholder one is enough in tests.
const SIGNED = { authorization: "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/execute-api/aws4_request" };

/** Close a client's socket from the server side (`DELETE @connections/{id}`, 204 or 410). */
export async function kick(gateway, connectionId) {
  const url = `${gateway.connectionsUrl}/${encodeURIComponent(connectionId)}`;
  const response = await fetch(url, { method: "DELETE", headers: SIGNED });
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
