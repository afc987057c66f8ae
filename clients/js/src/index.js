// switchboard's JavaScript client: one WebSocket, kept alive, resumed after every reconnect.
//
// The connection is a state machine in the manner of Ably's connection states, socket.io's
// reconnection manager and pusher-js's connection_manager: five explicit states, one timer
// per state (the dial timeout, the backoff delay, the keepalive/planned-reconnect tick; plus
// the token refresh while open), events out, and no retry that the app cannot see in a
// `state` event.
//
//   closed --connect()--> connecting --synced--> open --socket lost--> reconnecting
//   reconnecting --delay, dial, synced--> open;   any --close()--> closed
//   connecting/reconnecting --refused for good, or maxAttempts used up--> failed
//
// The app's edge: its own sends never come back as incoming (each ack's `(stream, seq)` is
// marked seen; `echo` presents them once instead), a join resumes the room at once from the
// stored cursor, a stream whose log was recreated restarts its cursor (`reset`), a token
// callback is asked before every dial and before the token expires (`authorize` over the live
// connection), and a send refused `token_expired` is retried once after the refresh.
//
// "Synced" means: the socket is up, remembered rooms are rejoined, `resume` has replayed what
// the streams missed and `history` has paged on where the resume was truncated. Sends made
// before that are queued (bounded) and go out after it, re-using their `clientMsgId`.
// Rooms' presence events (`{"type":"presence","event":"enter"|"leave",...}`) are logged in the
// room's stream: they take a seq there, so they go through the same ordering and dedupe as
// messages and reach the app as `presence` events, in seq order with the room's messages.
// No runtime dependencies: pass a WebSocket class where there is no global one (Node 20: `ws`).

import { ConnectError, ErrorCode, SwitchboardError, isRetryable, refusalIsFinal } from "./errors.js";
import { StreamOrder } from "./streams.js";
import { LocalStorageStore, MemoryStore } from "./store.js";

export { ConnectError, ErrorCode, LocalStorageStore, MemoryStore, StreamOrder, SwitchboardError, isRetryable };

// `failed`: the connection cannot be opened by retrying (a refused handshake, or `maxAttempts`
// used up); final like `closed`, which only the app's close() reaches.
export const STATES = Object.freeze(["connecting", "open", "reconnecting", "failed", "closed"]);

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
  // The cap bounds how long a client waits after the network returns (full jitter: half of
  // it on average once attempts have piled up); 5 s as socket.io's reconnectionDelayMax.
  reconnect: { initialDelayMs: 500, maxDelayMs: 5_000, maxAttempts: Infinity },
  // A token callback is asked for a fresh token this long before the current one expires,
  // and the new one is sent over the live connection (`authorize`).
  tokenRefreshMarginMs: 60_000,
  // Own sends are never presented as incoming; with `echo`, each is presented once, in stream
  // order, when its ack arrives (Ably's echoMessages; the server itself never echoes).
  echo: false,
  // Per-publisher order: a send to a stream goes out only after the previous send to that
  // stream is answered, so the log keeps this client's order (API Gateway runs a
  // connection's frames as concurrent invocations: back-to-back sends can be logged out of
  // order). Costs a round trip per send to one stream; off by default.
  orderedSends: false,
  gapWaitMs: 500,
  historyLimit: 100,
  maxQueue: 1000,
  startFrom: "latest",
});

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

/**
 * One room, as Ably's `channels.get`, Pusher's `subscribe` or Centrifugo's `newSubscription`
 * give it: `client.room("lobby")` (the same object each time). Its events are the client's,
 * for this room only: `message`, `presence`, `removed`, `reset`, `gap`.
 */
export class Room extends Emitter {
  constructor(client, name) {
    super();
    this.client = client;
    this.name = name;
    this.stream = `room:${name}`;
  }

  /** Join (remembered across reconnects); resolves once the room's stream is resumed. */
  join() {
    return this.client.join(this.name);
  }

  leave() {
    return this.client.leave(this.name);
  }

  /** A structured send: `event` (a name) and `data` (any JSON value); `{ text, ephemeral }`. */
  publish(event, data, options = {}) {
    return this.client.publish(this.name, event, data, options);
  }

  send(text) {
    return this.client.sendRoom(this.name, text);
  }

  /** One page of the room's log: the newest `limit` (default), or those before `before`
   * (`prev` of a page is the `before` of the page before it), or forward from `after`. */
  history({ before, after, limit = 50, latest } = {}) {
    const query = { limit }; // 50: the server's default page for recent history
    if (before !== undefined) query.before = before;
    else if (after !== undefined) query.after = after;
    else query.latest = latest ?? true;
    return this.client.history(this.stream, query);
  }

  members() {
    return this.client.members(this.name);
  }

  get joined() {
    return this.client.rooms.includes(this.name);
  }
}

/** Direct messages with one user: `client.user("u_2")`; its `message` event is what that user
 * sent this client directly. */
export class User extends Emitter {
  constructor(client, id) {
    super();
    this.client = client;
    this.id = id;
  }

  send(text) {
    return this.client.sendMessage(this.id, text);
  }

  publish(event, data, options = {}) {
    return this.client._send({ action: "sendMessage", targetUserId: this.id }, { ...options, event, data });
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
    // `maxAttempts` at the top level, as the issue and other clients spell it, wins.
    if (options.maxAttempts !== undefined) this._opts.reconnect.maxAttempts = options.maxAttempts;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError(
        "no WebSocket implementation: Node before 22 has no global WebSocket; " +
          "`npm install ws` and pass { WebSocket } from 'ws'",
      );
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
    this._tokenTimer = undefined; // the refresh before the token expires (while open)
    this._socket = undefined;
    this._generation = 0; // bumped per socket: events of an old socket are ignored
    this._attempt = 0;
    this._refused401 = false; // the last handshake got 401: one more try with a fresh token
    this._refSeq = 0;
    this._inflight = new Map();
    this._queue = [];
    this._rooms = new Set();
    this._roomObjects = new Map();
    this._userObjects = new Map();
    this._gapTimers = new Map();
    this._sendChains = new Map(); // stream -> the last ordered send to it (orderedSends)
    this._retrying = new Set(); // sends waiting out a rate_limited answer or a token refresh
    this._refreshing = undefined; // the token refresh in progress (a Promise)
    this._tokenExpiresAt = undefined;
    this._openedAt = 0;
    this._lastPingAt = 0;
    this._connecting = undefined;
    this._onOnline = () => this.reconnectNow();
    this.userId = undefined;
    this.connectionId = undefined;
    this.stats = {
      reconnects: 0,
      gapFetches: 0,
      filledByHistory: 0,
      resent: 0,
      retried: 0,
      presence: 0,
      own: 0,
      resets: 0,
      tokenRefreshes: 0,
    };
    this._order = new StreamOrder(
      (entry) => this._deliver(entry),
      (stream, seq, epoch) => this._persist(stream, seq, epoch),
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

  /** Open the connection; resolves once it is `open` (synced), rejects with a `ConnectError`
   * if the handshake is refused for good or the client gives up (`failed`), or with a
   * `SwitchboardError` `closed` if the app closes it first. */
  connect() {
    if (this._state !== "closed" && this._state !== "failed") return this._connecting?.promise ?? Promise.resolve();
    let settle;
    const promise = new Promise((resolve, reject) => {
      settle = { resolve, reject };
    });
    this._connecting = { promise, ...settle };
    this._attempt = 0;
    this._refused401 = false;
    this._setState("connecting", { reason: "connect" });
    globalThis.addEventListener?.("online", this._onOnline);
    const generation = this._generation;
    Promise.resolve()
      .then(() => this._store.load())
      .then((seqs) => {
        for (const [stream, value] of Object.entries(seqs ?? {})) {
          if (typeof value === "number") this._order.start(stream, value);
          else if (value && typeof value === "object") this._order.start(stream, value.seq, value.epoch);
        }
        if (generation === this._generation && this._state === "connecting") this._dial();
      })
      .catch((err) => this._shutdown(new SwitchboardError("store", `store load failed: ${err}`)));
    return promise;
  }

  /** Close for good: queued and unanswered requests reject with `closed`. */
  close() {
    this._shutdown(new SwitchboardError("closed", "the client was closed"));
  }

  /** While `reconnecting`, dial now instead of waiting out the backoff (browsers call it on
   * their `online` event; apps may call it on their platform's network-change callback). */
  reconnectNow() {
    if (this._state !== "reconnecting" || this._socket) return;
    this._setTimer(0, () => this._dial());
  }

  /** The room object for `name` (created once; events for the room go to it too). */
  room(name) {
    let room = this._roomObjects.get(name);
    if (!room) {
      room = new Room(this, name);
      this._roomObjects.set(name, room);
    }
    return room;
  }

  /** The direct-message object for user `id`. */
  user(id) {
    let user = this._userObjects.get(id);
    if (!user) {
      user = new User(this, id);
      this._userObjects.set(id, user);
    }
    return user;
  }

  /** The room object an event of `stream` goes to, if the app made one. */
  _roomOf(stream) {
    return typeof stream === "string" && stream.startsWith("room:") ? this._roomObjects.get(stream.slice(5)) : undefined;
  }

  /** A direct message to `userId` (`text`, or `{ event, data, text, ephemeral }`). */
  sendMessage(userId, text) {
    return this._send({ action: "sendMessage", targetUserId: userId }, text);
  }

  sendRoom(room, text) {
    return this._send({ action: "sendRoom", room }, text);
  }

  broadcast(text) {
    return this._send({ action: "broadcastAll" }, text);
  }

  /** A structured send to a room: `event` (a name) and `data` (any JSON value); options
   * `{ text, ephemeral }`. */
  publish(room, event, data, options = {}) {
    return this._send({ action: "sendRoom", room }, { ...options, event, data });
  }

  async join(room) {
    const ack = await this._request({ action: "join", room });
    this._rooms.add(room);
    const stream = `room:${room}`;
    if (this._state === "open") {
      // Resume the room's stream at once (join resolves after it): from the stored cursor (an
      // app restarted in a quiet room gets what it missed now, not when the next message
      // reveals the gap), or learn where "now" is for a new stream so a reconnect resumes from
      // there. Lost with the connection, it is resumed with the others after the reconnect.
      await this._resume([stream]).catch((err) => err.code !== "disconnected" && this._report(err));
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

  /** One page of a stream's log (`history` frame); queued like the others while not open.
   * `history(stream, after, limit)` pages forward; `history(stream, { latest, before, after,
   * limit })` also reads the newest messages (`latest: true`) or backwards (`before`). */
  history(stream, after = 0, limit = this._opts.historyLimit) {
    if (after !== null && typeof after === "object") {
      const frame = { action: "history", stream, limit: after.limit ?? this._opts.historyLimit };
      for (const key of ["latest", "before", "after"]) if (after[key] !== undefined) frame[key] = after[key];
      return this._request(frame);
    }
    return this._request({ action: "history", stream, after, limit });
  }

  /** Ask the token callback for a fresh token and send it over the live connection
   * (`authorize`); resolves with the `authorized` frame. Concurrent calls share one refresh. */
  refreshToken() {
    if (typeof this._opts.token !== "function") {
      return Promise.reject(new SwitchboardError("bad_token", "no token callback to refresh with"));
    }
    if (!this._refreshing) {
      this._refreshing = (async () => {
        const token = await this._opts.token();
        const answer = await this._request({ action: "authorize", token }, { internal: true });
        this.stats.tokenRefreshes += 1;
        this._tokenExpiresAt = Number.isFinite(answer.expiresAt) ? answer.expiresAt : jwtExpiryMs(token);
        this._armTokenTimer();
        return answer;
      })().finally(() => {
        this._refreshing = undefined;
      });
    }
    return this._refreshing;
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
    // A callback is asked before every connect: a reconnect never reuses an expired token.
    const value = typeof token === "function" ? await token() : token;
    this._tokenExpiresAt = value ? jwtExpiryMs(value) : undefined;
    const sep = url.includes("?") ? "&" : "?";
    if (value) return `${url}${sep}token=${encodeURIComponent(value)}`;
    // AUTH_MODE=none only: identity, and a display name for presence and members (`info`).
    const name = this._opts.name ? `&name=${encodeURIComponent(this._opts.name)}` : "";
    if (userId) return `${url}${sep}userId=${encodeURIComponent(userId)}${name}`;
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
    let opened = false;
    ws.onopen = () => {
      if (!current()) return;
      opened = true;
      this._clearTimer(); // the sync requests carry their own timeouts
      this._sync(generation);
    };
    ws.onmessage = (event) => current() && this._onFrame(event.data);
    ws.onerror = () => {}; // a close follows; `ws` throws on an error nobody listens to
    ws.onclose = (event) => {
      if (!current()) return;
      const reason = `socket closed (${event?.code ?? "?"} ${event?.reason ?? ""})`.trim();
      if (!opened) {
        // A browser hides why a handshake failed (status, body): tell the app how many
        // attempts failed so far; `maxAttempts` bounds them.
        this._report(
          Object.assign(new SwitchboardError("handshake_failed", `handshake failed: ${reason}`), {
            attempt: this._attempt + 1,
          }),
        );
      }
      this._drop(reason);
    };
    // Node's `ws` tells the refused handshake's status and body: a status no retry mends
    // ends in `failed` at once (browsers' WebSocket has no such event).
    if (typeof ws.on === "function") {
      ws.on("unexpected-response", (req, res) => {
        if (!current()) return;
        let body = "";
        res.setEncoding?.("utf8");
        res.on("data", (chunk) => {
          if (body.length < 2048) body += chunk;
        });
        // Read the body (the server's message), then drop the request: with a listener for
        // this event, `ws` leaves aborting it to us.
        const done = () => {
          req.destroy?.();
          if (current()) this._refused(res.statusCode, body);
        };
        res.on("end", done);
        res.on("error", done);
      });
    }
  }

  /** The server refused the handshake with `status`: final unless a retry can mend it. */
  _refused(status, body) {
    let serverMessage = typeof body === "string" && body ? body : undefined;
    try {
      const parsed = JSON.parse(body);
      if (typeof parsed?.message === "string") serverMessage = parsed.message;
    } catch {
      // not JSON: keep the text
    }
    const why = `handshake refused: HTTP ${status}${serverMessage ? ` (${serverMessage})` : ""}`;
    const retryWithFreshToken = status === 401 && typeof this._opts.token === "function" && !this._refused401;
    if (refusalIsFinal(status) && !retryWithFreshToken) {
      this._fail(new ConnectError("handshake_refused", why, { status, serverMessage, attempts: this._attempt + 1 }));
      return;
    }
    this._refused401 = status === 401;
    this._drop(why, { planned: retryWithFreshToken });
  }

  /** The socket is gone or must go: requeue what was unanswered and schedule the next dial. */
  _drop(reason, { planned = false } = {}) {
    if (this._state === "closed" || this._state === "failed") return;
    this._discardSocket();
    if (this._state === "open") this.stats.reconnects += 1;
    const { maxAttempts } = this._opts.reconnect;
    if (!planned && this._attempt >= maxAttempts) {
      const attempts = this._attempt;
      this._fail(new ConnectError("gave_up", `gave up after ${attempts} attempts: ${reason}`, { attempts }));
      return;
    }
    const delay = planned ? 0 : backoffDelay(this._attempt, this._opts.reconnect, this._random);
    if (!planned) this._attempt += 1;
    this._setState("reconnecting", { reason, attempt: this._attempt, delay });
    this._setTimer(delay, () => this._dial());
  }

  _discardSocket() {
    this._generation += 1;
    this._clearTokenTimer();
    const ws = this._socket;
    this._socket = undefined;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = () => {};
      try {
        if (typeof ws.terminate === "function" && ws.readyState === 0) ws.terminate();
        else ws.close(1000);
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

  /** A final failure the app did not ask for: `failed`, connect() rejects with `error`. */
  _fail(error) {
    this._end("failed", error);
  }

  _shutdown(error) {
    this._end("closed", error);
  }

  _end(state, error) {
    if (this._state === "closed" || (this._state === "failed" && state === "failed")) return;
    const wasFailed = this._state === "failed";
    this._discardSocket();
    globalThis.removeEventListener?.("online", this._onOnline);
    for (const op of this._queue.splice(0)) this._settle(op, error);
    this._setState(state, {
      reason: error.message,
      code: error.code,
      status: error.status,
      serverMessage: error.serverMessage,
      error,
    });
    if (state === "failed" && !wasFailed) this._report(error);
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
    this._refused401 = false;
    this._openedAt = this._now();
    this._lastPingAt = this._openedAt;
    this._setState("open", { connectionId: this.connectionId });
    this._connecting?.resolve();
    this._connecting = undefined;
    for (const op of this._queue.splice(0)) this._transmit(op);
    for (const stream of this._order.gaps()) this._scheduleGap(stream);
    this._armOpenTimer();
    this._armTokenTimer();
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

  /** With a token callback and a token that says when it expires: refresh it over the live
   * connection `tokenRefreshMarginMs` before then (or halfway, for a short-lived token). */
  _armTokenTimer() {
    this._clearTokenTimer();
    if (typeof this._opts.token !== "function" || !Number.isFinite(this._tokenExpiresAt)) return;
    if (this._state !== "open") return;
    const left = this._tokenExpiresAt - this._now();
    const wait = Math.max(0, left - Math.min(this._opts.tokenRefreshMarginMs, left / 2));
    const generation = this._generation;
    this._tokenTimer = this._timers.setTimeout(() => {
      this._tokenTimer = undefined;
      this.refreshToken().catch((err) => {
        if (generation !== this._generation) return;
        this._report(err);
        // The server does not know `authorize` (or refused the token): reconnect with a
        // fresh one before the old expires, rather than be closed by the server.
        if (err.frame) this._drop(`token refresh failed: ${err.message}`, { planned: true });
      });
    }, wait);
  }

  _clearTokenTimer() {
    if (this._tokenTimer !== undefined) this._timers.clearTimeout(this._tokenTimer);
    this._tokenTimer = undefined;
  }

  // --- requests --------------------------------------------------------------------------

  /** A message send: `content` is the text, or `{ text, event, data, ephemeral }`. */
  _send(frame, content) {
    const body = typeof content === "string" || content === undefined ? { text: content } : content;
    const out = { ...frame };
    for (const key of ["text", "event", "data"]) if (body[key] !== undefined) out[key] = body[key];
    if (body.ephemeral) out.ephemeral = true; // nothing to dedupe against: no clientMsgId
    else out.clientMsgId = randomId();
    const stream = sendStream(out);
    if (!this._opts.orderedSends || stream === undefined) return this._request(out);
    const previous = this._sendChains.get(stream) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(() => this._request(out));
    this._sendChains.set(stream, next);
    const forget = () => {
      if (this._sendChains.get(stream) === next) this._sendChains.delete(stream);
    };
    next.then(forget, forget);
    return next;
  }

  /** Send a frame with a fresh `ref`; resolves with the answer, rejects with its error. App
   * requests wait in the queue while not open; internal ones (the sync) go out at once. */
  _request(frame, { internal = false } = {}) {
    if (this._state === "closed" || this._state === "failed") {
      return Promise.reject(new SwitchboardError("closed", "connect() first, or the client was closed"));
    }
    if (internal && !this._socket) {
      return Promise.reject(new SwitchboardError("disconnected", "the connection was lost"));
    }
    return new Promise((resolve, reject) => {
      const op = { frame, resolve, reject, internal, ref: undefined, timer: undefined, stream: sendStream(frame) };
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
    op.settled = true;
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
    const type = frame?.type;
    if (type === "message" || type === "presence") {
      this._receive(frame);
      return;
    }
    if (type === "replay") {
      this._replay(frame);
      return;
    }
    if (type === "removed") {
      this._removed(frame);
      return;
    }
    const op = frame?.ref !== undefined ? this._inflight.get(frame.ref) : undefined;
    if (op) {
      if (type === "error" && frame.code === "rate_limited" && op.resent) this._retryLater(op, frame);
      else if (type === "error" && frame.code === "token_expired" && !op.internal && !op.tokenRetried) {
        this._retryAfterRefresh(op, frame);
      } else if (type === "error" && frame.code === "not_found" && op.frame.action === "sendMessage" && Number.isSafeInteger(frame.seq)) {
        // An offline recipient is not an error: the message is stored for their resume
        // (the server's newer answer is an ack with "stored": true).
        const { code: _code, message: _message, type: _type, ...rest } = frame;
        this._acked(op, { type: "ack", stored: true, delivered: 0, failed: 0, gone: 0, ...rest });
      } else if (type === "error") this._settle(op, new SwitchboardError(frame.code, frame.message, frame));
      else if (type === "ack") this._acked(op, frame);
      else this._settle(op, undefined, frame);
    } else if (type === "error" || frame?.message === "Internal server error") {
      this._report(new SwitchboardError(frame.code ?? "internal", frame.message, frame));
    }
  }

  /** A send's ack: its `(stream, seq)` is the client's own message, never shown as incoming
   * (with `echo`, shown once, in stream order, now). */
  _acked(op, ack) {
    this._settle(op, undefined, ack);
    if (op.claimed || !op.stream || !Number.isSafeInteger(ack.seq) || ack.stream !== op.stream) return;
    this._own(op, ack.seq, ack);
  }

  _own(op, seq, ack = {}) {
    this.stats.own += 1;
    const entry = this._opts.echo ? this._echoEntry(op, seq, ack) : undefined;
    if (ack.epoch !== undefined) this._order.epoch(op.stream, ack.epoch, (e) => this._resetEvent(e));
    const outcome = this._order.own(op.stream, seq, entry);
    if (outcome === "held") this._scheduleGap(op.stream);
  }

  _echoEntry(op, seq, ack) {
    const { frame } = op;
    const scope = frame.action === "sendRoom" ? "room" : frame.action === "sendMessage" ? "user" : "all";
    const entry = { type: "message", id: ack.id, from: this.userId, sender: this.userId, scope, sentAt: ack.sentAt ?? this._now() };
    if (frame.room !== undefined) entry.room = frame.room;
    for (const key of ["text", "event", "data"]) if (frame[key] !== undefined) entry[key] = frame[key];
    Object.assign(entry, { stream: op.stream, seq, echo: true });
    if (ack.epoch !== undefined) entry.epoch = ack.epoch;
    return entry;
  }

  /** A stream entry that is the client's own send still waiting for its ack (replayed or
   * fetched before the ack came, e.g. the first try of a send re-sent after a reconnect):
   * the unanswered send to that stream with the same content. */
  _claim(entry) {
    if (entry.type !== "message" || entry.from !== this.userId || this.userId === undefined) return undefined;
    for (const op of [...this._inflight.values(), ...this._queue, ...this._retrying]) {
      if (op.claimed || op.settled || op.stream !== entry.stream) continue;
      const f = op.frame;
      const same =
        (f.text || undefined) === (entry.text || undefined) &&
        (f.event ?? "message") === (entry.event ?? "message") &&
        JSON.stringify(f.data) === JSON.stringify(entry.data);
      if (same) {
        return op;
      }
    }
    return undefined;
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

  /** A request refused with `token_expired`: refresh the token (over this connection, or
   * with the reconnect the server's close forces) and send it once more. */
  _retryAfterRefresh(op, frame) {
    this._inflight.delete(op.ref);
    op.tokenRetried = true;
    if (typeof this._opts.token !== "function") {
      this._settle(op, new SwitchboardError(frame.code, frame.message, frame));
      return;
    }
    this.stats.retried += 1;
    this._retrying.add(op);
    const generation = this._generation;
    this.refreshToken().then(
      () => {
        if (!this._retrying.delete(op) || op.settled) return;
        if (this._state === "open" && generation === this._generation) this._transmit(op);
        else this._queue.push(op);
      },
      (err) => {
        // Lost with the connection: the reconnect asks the callback again and re-sends it.
        if (err.code === "disconnected" || !this._retrying.has(op)) return;
        this._settle(op, new SwitchboardError(frame.code, `${frame.message} (refresh failed: ${err.message})`, frame));
      },
    );
  }

  _report(error) {
    this.emit("error", error);
  }

  // --- streams: order, dedupe, resume, gaps ----------------------------------------------

  _receive(entry, fromHistory = false) {
    const logged = typeof entry.stream === "string" && Number.isSafeInteger(entry.seq);
    if (!logged && (entry.type === "presence" || entry.ephemeral === true)) {
      this._deliver(entry); // not logged in a stream (ephemeral): nothing to order it by
      return;
    }
    if (!logged) return;
    if (entry.epoch !== undefined) this._order.epoch(entry.stream, entry.epoch, (e) => this._resetEvent(e));
    const op = this._claim(entry);
    if (op) {
      op.claimed = true;
      this._own(op, entry.seq, { id: entry.id, sentAt: entry.sentAt, epoch: entry.epoch });
      return;
    }
    const outcome = this._order.push(entry);
    if (fromHistory && outcome !== "duplicate") this.stats.filledByHistory += 1;
    if (outcome === "held") this._scheduleGap(entry.stream);
  }

  /** A batch of one stream's missed entries (`replay`), in seq order. */
  _replay(frame) {
    for (const message of Array.isArray(frame.messages) ? frame.messages : []) {
      if (!message || typeof message !== "object") continue;
      this._receive({ stream: frame.stream, epoch: frame.epoch, ...message, replayed: true });
    }
  }

  /** The server took this connection out of a room (revoked, a right the new token lacks,
   * expired): it is not rejoined. */
  _removed(frame) {
    if (typeof frame.room === "string") this._rooms.delete(frame.room);
    this.emit("removed", frame);
    this._roomObjects.get(frame.room)?.emit("removed", frame);
  }

  _resetEvent(event) {
    this.stats.resets += 1;
    this.emit("reset", event);
    this._roomOf(event.stream)?.emit("reset", event);
  }

  /** One stream entry, in order: a presence event or a message. */
  _deliver(entry) {
    if (entry.type === "presence") {
      this.stats.presence += 1;
      this.emit("presence", entry);
      this._roomOf(entry.stream)?.emit("presence", entry);
    } else {
      // `sender`: the same field name as the Python client's Message (`from` is the wire's).
      const message = entry.sender === undefined && entry.from !== undefined ? { ...entry, sender: entry.from } : entry;
      this.emit("message", message);
      this._roomOf(message.stream)?.emit("message", message);
      if (message.scope === "user" && message.stream === `user:${this.userId}`) {
        this._userObjects.get(message.sender)?.emit("message", message);
      }
    }
  }

  _persist(stream, seq, epoch) {
    try {
      this._store.save(stream, seq, epoch);
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
      const epoch = this._order.epochOf(stream);
      const seq = cursor ?? (this._opts.startFrom === "earliest" ? 0 : NOW_SEQ);
      from[stream] = epoch !== undefined && cursor !== undefined ? { epoch, seq } : seq;
    }
    const resumed = await this._request({ action: "resume", streams: from }, { internal: true });
    for (const [stream, summary] of Object.entries(resumed.streams ?? {})) {
      if (summary.refused) {
        this._report(new SwitchboardError("resume_refused", `${stream}: ${summary.refused}`, resumed));
        continue;
      }
      // A log younger than the cursor we resumed from was recreated, even on a server without
      // epochs: the last seq it ever gave is below one we had delivered. (`after` echoes that
      // cursor; the cursor itself may have moved on since, with live messages past `last`.)
      const after = typeof summary.after === "number" ? summary.after : summary.after?.seq;
      const younger = Number.isSafeInteger(after) && after !== NOW_SEQ && Number.isSafeInteger(summary.last) && summary.last < after;
      if (summary.reset === true || younger) {
        // The stream's log was recreated (a new epoch): its old cursor means nothing now.
        this._order.reset(stream, summary.epoch ?? null, (e) => this._resetEvent(e));
        await this._pageAll(stream, 0, summary.last);
        continue;
      }
      if (summary.epoch !== undefined && summary.epoch !== null) {
        this._order.epoch(stream, summary.epoch, (e) => this._resetEvent(e));
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

  /** Page a stream from `after` up to `last` (a reset stream's new log). */
  async _pageAll(stream, after, last) {
    let cursor = after;
    while (Number.isSafeInteger(last) && cursor < last) {
      const page = await this._page(stream, cursor);
      for (const message of page.messages ?? []) this._receive(message, true);
      this._applyPage(stream, page);
      const next = page.next;
      if (!Number.isSafeInteger(next) || next - 1 <= cursor) break;
      cursor = next - 1;
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
    if (gap) {
      this.emit("gap", gap);
      this._roomOf(stream)?.emit("gap", gap);
    }
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

/** The stream a send's message is logged in (what its ack's `seq` numbers). */
function sendStream(frame) {
  if (frame.ephemeral) return undefined;
  if (frame.action === "sendRoom") return `room:${frame.room}`;
  if (frame.action === "broadcastAll") return "all";
  if (frame.action === "sendMessage") return `user:${frame.targetUserId}`;
  return undefined;
}

/** A JWT's `exp` in epoch ms, read without verifying (the server verifies); undefined when the
 * token is not a JWT or has no `exp`. */
export function jwtExpiryMs(token) {
  if (typeof token !== "string") return undefined;
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json =
      typeof atob === "function"
        ? decodeURIComponent(
            Array.from(atob(base64), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join(""),
          )
        : "";
    const exp = JSON.parse(json).exp;
    return Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

export default SwitchboardClient;
