// Deterministic fakes for unit tests: a clock whose timers run only when advanced, and a
// WebSocket class whose instances the test opens, feeds and closes by hand.

export class FakeClock {
  constructor() {
    this.time = 0;
    this._timers = new Map();
    this._next = 1;
    this.setTimeout = (fn, ms) => {
      const id = this._next++;
      this._timers.set(id, { at: this.time + Math.max(0, ms), fn });
      return id;
    };
    this.clearTimeout = (id) => this._timers.delete(id);
    this.now = () => this.time;
  }

  /** Run every timer due within `ms`, in time order, letting promises settle between. */
  async advance(ms) {
    const end = this.time + ms;
    for (;;) {
      await flush();
      let first;
      for (const [id, t] of this._timers) {
        if (t.at <= end && (!first || t.at < first[1].at)) first = [id, t];
      }
      if (!first) break;
      this._timers.delete(first[0]);
      this.time = first[1].at;
      first[1].fn();
    }
    this.time = end;
    await flush();
  }

  pending() {
    return this._timers.size;
  }
}

/** Let queued promise callbacks run. */
export async function flush() {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.closed = undefined;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      this.listeners = {};
      sockets.push(this);
    }

    // Node's `ws` also has on(): the client listens for "unexpected-response" there.
    on(event, fn) {
      (this.listeners[event] ??= []).push(fn);
      return this;
    }

    send(data) {
      if (this.closed) throw new Error("closed");
      this.sent.push(JSON.parse(data));
    }

    close(code = 1000) {
      this.closed = { code, by: "client" };
    }

    // --- test side ---
    open() {
      this.onopen?.({});
    }

    receive(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }

    /** The server refuses the handshake with an HTTP `status` and `body`: as Node's `ws`
     * reports it (an "unexpected-response" event), or as a browser does (`browser`: a close
     * 1006 with neither). */
    refuse(status, body = "", { browser = false } = {}) {
      const listeners = this.listeners["unexpected-response"] ?? [];
      if (browser || listeners.length === 0) {
        this.drop(1006, "");
        return;
      }
      const handlers = {};
      const res = {
        statusCode: status,
        setEncoding() {},
        on(event, fn) {
          handlers[event] = fn;
          return res;
        },
      };
      const req = { destroy: () => (this.closed = { code: 1006, by: "client" }) };
      for (const fn of listeners) fn(req, res);
      handlers.data?.(body);
      handlers.end?.();
    }

    drop(code = 1001, reason = "Going away") {
      this.closed = { code, by: "server" };
      this.onclose?.({ code, reason });
    }

    /** The last sent frame with this action. */
    last(action) {
      return this.sent.filter((f) => f.action === action).at(-1);
    }

    /** Answer the client's sync: whoami, rejoins, then resume with `summaries`. */
    async sync({ userId = "u_1", connectionId = "c1", summaries = {}, replay = [] } = {}) {
      await flush();
      const who = this.last("whoami");
      this.receive({ type: "identity", ref: who.ref, connectionId, userId, rooms: [] });
      await flush();
      for (const join of this.sent.filter((f) => f.action === "join")) {
        this.receive({ type: "ack", ref: join.ref, delivered: 0, failed: 0, gone: 0, room: join.room, joined: true });
      }
      await flush();
      const resume = this.last("resume");
      for (const message of replay) this.receive({ ...message, replayed: true });
      const streams = {};
      for (const [stream, after] of Object.entries(resume.streams)) {
        streams[stream] = summaries[stream] ?? { after, last: after === 2 ** 53 ? 0 : after, replayed: 0, truncated: false };
      }
      this.receive({ type: "resumed", ref: resume.ref, streams });
      await flush();
      return resume;
    }
  }
  return { FakeWebSocket, sockets };
}

export function message(stream, seq, text = `${stream}#${seq}`) {
  return { type: "message", id: `${stream}-${seq}`, from: "u_x", scope: "room", text, sentAt: 0, stream, seq };
}

export function presence(stream, seq, event = "enter", userId = "u_x") {
  return { type: "presence", room: stream.replace(/^room:/, ""), event, userId, stream, seq };
}

/** An unsigned JWT-shaped token whose payload has `exp` (seconds): the client reads it only to
 * know when to refresh. */
export function fakeJwt(expSeconds, sub = "u_1") {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: expSeconds })}.sig`;
}
