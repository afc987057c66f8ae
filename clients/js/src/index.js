// switchboard's JavaScript client: one WebSocket, kept alive, resumed after every reconnect.
//
// The connection is a state machine in the manner of Ably's connection states, socket.io's
// reconnection manager and pusher-js's connection_manager: four explicit states, one timer
// per state (the dial timeout, the backoff delay, the keepalive/planned-reconnect tick),
// events out, and no retry that the app cannot see in a `state` event.
//
//   closed --connect()--> connecting --synced--> open --socket lost--> reconnecting
//   reconnecting --delay, dial, synced--> open;   any --close() or gave up--> closed
//
// "Synced" means: the socket is up, remembered rooms are rejoined, `resume` has replayed what
// the streams missed and `history` has paged on where the resume was truncated. Sends made
// before that are queued (bounded) and go out after it, re-using their `clientMsgId`.
// Rooms' presence events (`{"type":"presence","event":"enter"|"leave",...}`) are logged in the
// room's stream: they take a seq there, so they go through the same ordering and dedupe as
// messages and reach the app as `presence` events, in seq order with the room's messages.
// No runtime dependencies: pass a WebSocket class where there is no global one (Node 20: `ws`).

import { StreamOrder } from "./streams.js";
import { LocalStorageStore, MemoryStore } from "./store.js";

export { LocalStorageStore, MemoryStore, StreamOrder };

export const STATES = Object.freeze(["connecting", "open", "reconnecting", "closed"]);

// A send re-sent after a reconnect may be answered `rate_limited` while its first try is still
// being logged on the server (no retryAfterMs then): the client asks again after this long.
const IN_PROGRESS_RETRY_MS = 250;

// The server accepts seqs up to 2**53 (protocol.MAX_SEQ); resuming from it replays nothing
// and answers the stream's `last`: how a new stream learns where "now" is.
const NOW_SEQ = 2 ** 53;

const DEFAULTS = Object.freeze({
  connectTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  // A resume replays up to HISTORY_MAX_REPLAY messages per stream, one post each.
  resumeTimeoutMs: 30_000,
  // API Gateway closes a connection idle for 10 minutes and any connection after 2 hours
  // (API Gateway quotas for WebSocket APIs): ping well inside the first, and reconnect on
  // our own terms a little before the second.
  pingIntervalMs: 5 * 60_000,
  maxConnectionMs: 2 * 60 * 60_000 - 5 * 60_000,
  reconnect: { initialDelayMs: 500, maxDelayMs: 30_000, maxAttempts: Infinity },
  gapWaitMs: 500,
  historyLimit: 100,
  maxQueue: 1000,
  startFrom: "latest",
});

/** A request's failure: the server's error `code` (with its frame), or a client-side one
 * (`timeout`, `closed`, `queue_full`, `gave_up`, `resume_refused`, `bad_frame`).
 * `retryAfterMs`: on `rate_limited`, how long the server asks to wait (when it says). */
export class SwitchboardError extends Error {
  constructor(code, message, frame = undefined) {
    super(message);
    this.name = "SwitchboardError";
    this.code = code;
    this.frame = frame;
    const wait = frame?.retryAfterMs;
    this.retryAfterMs = Number.isFinite(wait) && wait >= 0 ? wait : undefined;
  }
}

/** Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): a uniform delay
 * between 0 and min(cap, base * 2^attempt). */
export function backoffDelay(attempt, { initialDelayMs, maxDelayMs }, random = Math.random) {
  const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt, 52));
  return Math.floor(random() * ceiling);
}

/** A random id for `clientMsgId`: crypto.randomUUID where there is one (browsers, Node),
 * else getRandomValues, else (old React Native) Math.random. */
export function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return this;
  }

  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
    return this;
  }

  once(event, listener) {
    const wrapped = (value) => {
      this.off(event, wrapped);
      listener(value);
    };
    return this.on(event, wrapped);
  }

  emit(event, value) {
    for (const listener of [...(this._listeners.get(event) ?? [])]) {
      try {
        listener(value);
      } catch (err) {
        // An app bug in a listener must not break the connection's bookkeeping: report it
        // the way an uncaught error would be, outside this call.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}

export class SwitchboardClient extends Emitter {
  /**
   * @param {object} options see index.d.ts (`ClientOptions`)
   */
  constructor(options) {
    super();
    if (!options || typeof options.url !== "string") {
      throw new TypeError("SwitchboardClient needs { url: 'wss://…' }");
    }
    this._opts = {
      ...DEFAULTS,
      ...options,
      reconnect: { ...DEFAULTS.reconnect, ...options.reconnect },
    };
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("no WebSocket implementation: pass { WebSocket } (e.g. from 'ws')");
    }
    // Called as globals: browsers throw "Illegal invocation" for a setTimeout called as a
    // method of another object (`this._timers.setTimeout(...)`).
    this._timers = options.timers ?? {
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (handle) => clearTimeout(handle),
    };
    this._now = options.now ?? (() => Date.now());
    this._random = options.random ?? Math.random;
    this._store = options.store ?? new MemoryStore();
    this._state = "closed";
    this._timer = undefined; // the one timer of the current state
    this._socket = undefined;
    this._generation = 0; // bumped per socket: events of an old socket are ignored
    this._attempt = 0;
    this._refSeq = 0;
    this._inflight = new Map();
    this._queue = [];
    this._rooms = new Set();
    this._gapTimers = new Map();
    this._retrying = new Set(); // re-sent sends waiting out a rate_limited answer
    this._openedAt = 0;
    this._lastPingAt = 0;
    this._connecting = undefined;
    this.userId = undefined;
    this.connectionId = undefined;
    this.stats = { reconnects: 0, gapFetches: 0, filledByHistory: 0, resent: 0, retried: 0, presence: 0 };
    this._order = new StreamOrder(
      (entry) => this._deliver(entry),
      (stream, seq) => this._persist(stream, seq),
    );
  }

  get state() {
    return this._state;
  }

  /** Rooms this client is in, rejoined after every reconnect. */
  get rooms() {
    return [...this._rooms];
  }

  /** Delivered, duplicates suppressed, held; plus reconnects and history fetches. */
  get counters() {
    return { ...this._order.stats, ...this.stats };
  }

  /** The last seq delivered per stream. */
  get cursors() {
    return this._order.cursors();
  }

  /** Open the connection; resolves once it is `open` (synced), rejects if closed first. */
  connect() {
    if (this._state !== "closed") return this._connecting?.promise ?? Promise.resolve();
    let settle;
    const promise = new Promise((resolve, reject) => {
      settle = { resolve, reject };
    });
    this._connecting = { promise, ...settle };
    this._attempt = 0;
    this._setState("connecting", { reason: "connect" });
    const generation = this._generation;
    Promise.resolve()
      .then(() => this._store.load())
      .then((seqs) => {
        for (const [stream, seq] of Object.entries(seqs ?? {})) this._order.start(stream, seq);
        if (generation === this._generation && this._state === "connecting") this._dial();
      })
      .catch((err) => this._shutdown(new SwitchboardError("store", `store load failed: ${err}`)));
    return promise;
  }

  /** Close for good: queued and unanswered requests reject with `closed`. */
  close() {
    this._shutdown(new SwitchboardError("closed", "the client was closed"));
  }

  sendMessage(userId, text) {
    return this._request({ action: "sendMessage", targetUserId: userId, text, clientMsgId: randomId() });
  }

  sendRoom(room, text) {
    return this._request({ action: "sendRoom", room, text, clientMsgId: randomId() });
  }

  broadcast(text) {
    return this._request({ action: "broadcastAll", text, clientMsgId: randomId() });
  }

  async join(room) {
    const ack = await this._request({ action: "join", room });
    this._rooms.add(room);
    const stream = `room:${room}`;
    if (this._order.cursor(stream) === undefined && this._state === "open") {
      // Learn where the room's stream is now, so a reconnect resumes from there.
      // Lost with the connection, it is resumed with the others after the reconnect.
      this._resume([stream]).catch((err) => err.code !== "disconnected" && this._report(err));
    }
    return ack;
  }

  leave(room) {
    this._rooms.delete(room); // not rejoined after a reconnect, whatever the answer
    return this._request({ action: "leave", room });
  }

  whoami() {
    return this._request({ action: "whoami" });
  }

  /** Who is in `room` (`members` frame: count, users, truncated); members of the room only,
   * others get `forbidden`. */
  members(room) {
    return this._request({ action: "members", room });
  }

  /** One page of a stream's log (`history` frame); queued like the others while not open. */
  history(stream, after = 0, limit = this._opts.historyLimit) {
    return this._request({ action: "history", stream, after, limit });
  }

  // --- states and the one timer ----------------------------------------------------------

  _setState(state, info = {}) {
    const previous = this._state;
    this._state = state;
    this._clearTimer();
    const event = { state, previous, ...info };
    this.emit("state", event);
    this.emit(state, event);
  }

  _setTimer(ms, fn) {
    this._clearTimer();
    this._timer = this._timers.setTimeout(() => {
      this._timer = undefined;
      fn();
    }, Math.max(0, ms));
  }

  _clearTimer() {
    if (this._timer !== undefined) this._timers.clearTimeout(this._timer);
    this._timer = undefined;
  }

  async _url() {
    const { url, token, userId } = this._opts;
    const value = typeof token === "function" ? await token() : token;
    const sep = url.includes("?") ? "&" : "?";
    if (value) return `${url}${sep}token=${encodeURIComponent(value)}`;
    if (userId) return `${url}${sep}userId=${encodeURIComponent(userId)}`;
    return url;
  }

  async _dial() {
    const generation = ++this._generation;
    this._setTimer(this._opts.connectTimeoutMs, () => this._drop("connect timeout"));
    let ws;
    try {
      const url = await this._url();
      if (generation !== this._generation) return;
      ws = new this._WebSocket(url);
    } catch (err) {
      if (generation === this._generation) this._drop(`dial failed: ${err?.message ?? err}`);
      return;
    }
    this._socket = ws;
    const current = () => generation === this._generation;
    ws.onopen = () => {
      if (!current()) return;
      this._clearTimer(); // the sync requests carry their own timeouts
      this._sync(generation);
    };
    ws.onmessage = (event) => current() && this._onFrame(event.data);
    ws.onerror = () => {}; // a close follows; `ws` throws on an error nobody listens to
    ws.onclose = (event) => {
      if (current()) this._drop(`socket closed (${event?.code ?? "?"} ${event?.reason ?? ""})`.trim());
    };
  }

  /** The socket is gone or must go: requeue what was unanswered and schedule the next dial. */
  _drop(reason, { planned = false } = {}) {
    if (this._state === "closed") return;
    this._discardSocket();
    if (this._state === "open") this.stats.reconnects += 1;
    const { maxAttempts } = this._opts.reconnect;
    if (!planned && this._attempt >= maxAttempts) {
      this._shutdown(new SwitchboardError("gave_up", `gave up after ${this._attempt} attempts: ${reason}`));
      return;
    }
    const delay = planned ? 0 : backoffDelay(this._attempt, this._opts.reconnect, this._random);
    if (!planned) this._attempt += 1;
    this._setState("reconnecting", { reason, attempt: this._attempt, delay });
    this._setTimer(delay, () => this._dial());
  }

  _discardSocket() {
    this._generation += 1;
    const ws = this._socket;
    this._socket = undefined;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = () => {};
      try {
        ws.close(1000);
      } catch {
        // already closing or closed
      }
    }
    // Unanswered app requests go out again after the resume (sends keep their clientMsgId,
    // so the server can tell a retry); the client's own sync requests are simply dropped.
    const again = [];
    for (const op of this._inflight.values()) {
      if (op.internal) this._settle(op, new SwitchboardError("disconnected", "the connection was lost"));
      else again.push(op);
    }
    this._inflight.clear();
    this.stats.resent += again.length;
    for (const op of again) op.resent = true;
    // Those waiting out a rate_limited answer go with the rest after the next resume.
    for (const op of this._retrying) {
      this._timers.clearTimeout(op.retryTimer);
      again.push(op);
    }
    this._retrying.clear();
    this._queue.unshift(...again);
    for (const timer of this._gapTimers.values()) this._timers.clearTimeout(timer);
    this._gapTimers.clear();
  }

  _shutdown(error) {
    if (this._state === "closed") return;
    this._discardSocket();
    for (const op of this._queue.splice(0)) this._settle(op, error);
    this._setState("closed", { reason: error.message, code: error.code });
    try {
      this._store.flush?.();
    } catch (err) {
      this._report(err);
    }
    this._connecting?.reject(error);
    this._connecting = undefined;
  }

  async _sync(generation) {
    try {
      const me = await this._request({ action: "whoami" }, { internal: true });
      this.userId = me.userId;
      this.connectionId = me.connectionId;
      await Promise.all([...this._rooms].map((room) => this._rejoin(room)));
      const streams = [`user:${me.userId}`, "all", ...[...this._rooms].map((r) => `room:${r}`)];
      await this._resume(streams);
    } catch (err) {
      if (generation === this._generation) this._drop(`resume failed: ${err.message}`);
      return;
    }
    if (generation === this._generation) this._opened();
  }

  async _rejoin(room) {
    try {
      await this._request({ action: "join", room }, { internal: true });
    } catch (err) {
      if (err.frame === undefined) throw err; // no answer: the connection is bad
      this._rooms.delete(room); // refused (e.g. the room limit): tell the app, carry on
      this._report(new SwitchboardError(err.code, `rejoining ${room}: ${err.message}`, err.frame));
    }
  }

  _opened() {
    this._attempt = 0;
    this._openedAt = this._now();
    this._lastPingAt = this._openedAt;
    this._setState("open", { connectionId: this.connectionId });
    this._connecting?.resolve();
    this._connecting = undefined;
    for (const op of this._queue.splice(0)) this._transmit(op);
    for (const stream of this._order.gaps()) this._scheduleGap(stream);
    this._armOpenTimer();
  }

  /** While open, the one timer wakes for the next keepalive ping or the planned reconnect. */
  _armOpenTimer() {
    const now = this._now();
    const plannedAt = this._openedAt + this._opts.maxConnectionMs;
    const pingAt = this._lastPingAt + this._opts.pingIntervalMs;
    this._setTimer(Math.min(plannedAt, pingAt) - now, () => {
      if (this._now() >= plannedAt) {
        this._drop("planned reconnect before the connection's maximum duration", { planned: true });
        return;
      }
      this._lastPingAt = this._now();
      const generation = this._generation;
      this._request({ action: "ping" }, { internal: true }).catch((err) => {
        if (generation === this._generation && err.code === "timeout") this._drop("no pong");
      });
      this._armOpenTimer();
    });
  }

  // --- requests --------------------------------------------------------------------------

  /** Send a frame with a fresh `ref`; resolves with the answer, rejects with its error. App
   * requests wait in the queue while not open; internal ones (the sync) go out at once. */
  _request(frame, { internal = false } = {}) {
    if (this._state === "closed") {
      return Promise.reject(new SwitchboardError("closed", "connect() first, or the client was closed"));
    }
    if (internal && !this._socket) {
      return Promise.reject(new SwitchboardError("disconnected", "the connection was lost"));
    }
    return new Promise((resolve, reject) => {
      const op = { frame, resolve, reject, internal, ref: undefined, timer: undefined };
      const ms = frame.action === "resume" ? this._opts.resumeTimeoutMs : this._opts.requestTimeoutMs;
      op.timer = this._timers.setTimeout(
        () => this._settle(op, new SwitchboardError("timeout", `no answer to ${frame.action} in ${ms} ms`)),
        ms,
      );
      if (internal || this._state === "open") {
        this._transmit(op);
      } else if (this._queue.length >= this._opts.maxQueue) {
        this._settle(op, new SwitchboardError("queue_full", `${this._queue.length} requests already queued`));
      } else {
        this._queue.push(op);
      }
    });
  }

  _transmit(op) {
    op.ref = ++this._refSeq;
    this._inflight.set(op.ref, op);
    try {
      this._socket.send(JSON.stringify({ ...op.frame, ref: op.ref }));
    } catch {
      // The socket is closing: its close event requeues this request.
    }
  }

  _settle(op, error, value = undefined) {
    this._timers.clearTimeout(op.timer);
    this._timers.clearTimeout(op.retryTimer);
    this._retrying.delete(op);
    if (op.ref !== undefined) this._inflight.delete(op.ref);
    const queued = this._queue.indexOf(op);
    if (queued >= 0) this._queue.splice(queued, 1);
    if (error) op.reject(error);
    else op.resolve(value);
  }

  _onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      this._report(new SwitchboardError("bad_frame", "the server sent a frame that is not JSON"));
      return;
    }
    if (frame?.type === "message" || frame?.type === "presence") {
      this._receive(frame);
      return;
    }
    const op = frame?.ref !== undefined ? this._inflight.get(frame.ref) : undefined;
    if (op) {
      if (frame.type === "error" && frame.code === "rate_limited" && op.resent) this._retryLater(op, frame);
      else if (frame.type === "error") this._settle(op, new SwitchboardError(frame.code, frame.message, frame));
      else this._settle(op, undefined, frame);
    } else if (frame?.type === "error" || frame?.message === "Internal server error") {
      this._report(new SwitchboardError(frame.code ?? "internal", frame.message, frame));
    }
  }

  /** A send re-sent after a reconnect and answered `rate_limited`: its first try may still be
   * in progress on the server (or the connection's rate limit bites the burst of re-sends).
   * The app made one call and its first try may have gone through, so the client asks again,
   * with the same clientMsgId, after `retryAfterMs` (or a short wait), within the request's
   * own timeout; a repeat of a logged send is answered with its original ack. */
  _retryLater(op, frame) {
    this._inflight.delete(op.ref);
    this.stats.retried += 1;
    const wait = Number.isFinite(frame.retryAfterMs) ? frame.retryAfterMs : IN_PROGRESS_RETRY_MS;
    this._retrying.add(op);
    op.retryTimer = this._timers.setTimeout(() => {
      this._retrying.delete(op);
      if (this._state === "open") this._transmit(op);
      else this._queue.push(op);
    }, wait);
  }

  _report(error) {
    this.emit("error", error);
  }

  // --- streams: order, dedupe, resume, gaps ----------------------------------------------

  _receive(entry, fromHistory = false) {
    if (entry.type === "presence" && !(typeof entry.stream === "string" && Number.isSafeInteger(entry.seq))) {
      this._deliver(entry); // not logged in a stream: nothing to order it by
      return;
    }
    const outcome = this._order.push(entry);
    if (fromHistory && outcome !== "duplicate") this.stats.filledByHistory += 1;
    if (outcome === "held") this._scheduleGap(entry.stream);
  }

  /** One stream entry, in order: a presence event or a message. */
  _deliver(entry) {
    if (entry.type === "presence") {
      this.stats.presence += 1;
      this.emit("presence", entry);
    } else {
      this.emit("message", entry);
    }
  }

  _persist(stream, seq) {
    try {
      this._store.save(stream, seq);
    } catch (err) {
      this._report(err);
    }
  }

  /** `resume` the given streams from their cursors (a new one from now, or from the start),
   * then page `history` where the answer says truncated. */
  async _resume(streams) {
    const from = {};
    for (const stream of streams) {
      const cursor = this._order.cursor(stream);
      from[stream] = cursor ?? (this._opts.startFrom === "earliest" ? 0 : NOW_SEQ);
    }
    const resumed = await this._request({ action: "resume", streams: from }, { internal: true });
    for (const [stream, summary] of Object.entries(resumed.streams ?? {})) {
      if (summary.refused) {
        this._report(new SwitchboardError("resume_refused", `${stream}: ${summary.refused}`, resumed));
        continue;
      }
      if (summary.after === NOW_SEQ) this._order.begin(stream, summary.last);
      this._applyPage(stream, summary);
      let next = summary.next;
      while (Number.isSafeInteger(next)) {
        const page = await this._page(stream, next - 1);
        for (const message of page.messages ?? []) this._receive(message, true);
        this._applyPage(stream, page);
        const progress = (page.messages?.length ?? 0) + (page.skipped?.length ?? 0);
        // A hole still being written: the gap timer asks again later.
        next = progress > 0 ? page.next : undefined;
      }
    }
  }

  _page(stream, after) {
    const frame = { action: "history", stream, after, limit: this._opts.historyLimit };
    return this._request(frame, { internal: true });
  }

  /** What a resume summary or history page says besides its messages. */
  _applyPage(stream, page) {
    if (Array.isArray(page.skipped)) this._order.skip(stream, page.skipped);
    if (page.truncated && Number.isSafeInteger(page.oldest)) {
      this._lost(stream, page.oldest - 1);
    } else if (page.truncated && page.oldest == null && page.next == null && Number.isSafeInteger(page.last)) {
      this._lost(stream, page.last); // everything after the cursor is past retention
    }
  }

  _lost(stream, seq) {
    const gap = this._order.lose(stream, seq);
    if (gap) this.emit("gap", gap);
  }

  _scheduleGap(stream) {
    if (this._state !== "open" || this._gapTimers.has(stream)) return;
    const timer = this._timers.setTimeout(() => this._fillGap(stream), this._opts.gapWaitMs);
    this._gapTimers.set(stream, timer);
  }

  async _fillGap(stream) {
    const generation = this._generation;
    if (!this._order.hasGap(stream)) {
      this._gapTimers.delete(stream);
      return;
    }
    this.stats.gapFetches += 1;
    try {
      const page = await this._page(stream, this._order.cursor(stream));
      for (const message of page.messages ?? []) this._receive(message, true);
      this._applyPage(stream, page);
    } catch (err) {
      if (err.frame) this._report(err);
    }
    if (generation !== this._generation) return; // a reconnect resumes this stream instead
    this._gapTimers.delete(stream);
    if (this._order.hasGap(stream)) this._scheduleGap(stream);
  }
}

export default SwitchboardClient;
