// Type declarations for @switchboard/client (hand-written; the package has no build step).

/** `failed`: refused for good or out of attempts (final; connect() again to retry);
 * `closed`: the app's close(). */
export type State = "connecting" | "open" | "reconnecting" | "failed" | "closed";
export declare const STATES: readonly State[];

/** A stream: `room:<name>`, `user:<userId>` or `all`. */
export type Stream = string;
export type Ref = string | number;

export interface MessageFrame {
  type: "message";
  id: string;
  from: string;
  scope: "user" | "room" | "all";
  room?: string;
  text: string;
  sentAt: number;
  stream: Stream;
  seq: number;
  /** The wire's `from`, under the Python client's name. */
  sender: string;
  /** The structured send's name (default "message") and its JSON payload. */
  event?: string;
  data?: unknown;
  /** The stream log's incarnation (servers with epochs). */
  epoch?: string;
  /** Not logged: no seq (the field is absent), never deduplicated. */
  ephemeral?: boolean;
  /** The client's own send, presented once because of the `echo` option. */
  echo?: boolean;
  /** Present when the message came from a `resume`. */
  replayed?: boolean;
}

/** A user entered a room (their first connection joined) or left it (their last one left).
 * Logged in the room's stream: it takes a seq there, is replayed by a resume and listed in
 * history pages, and reaches the app once, in seq order with the room's messages. */
export interface PresenceFrame {
  type: "presence";
  room: string;
  event: "enter" | "leave";
  userId: string;
  stream: Stream;
  seq: number;
  /** Present when the event came from a `resume`. */
  replayed?: boolean;
  /** The member's `info` claim, where the server sends it. */
  info?: unknown;
}

/** What a stream holds: messages, and in a room's stream presence events too. */
export type StreamEntry = MessageFrame | PresenceFrame;

export interface MemberInfo {
  userId: string;
  /** The user's connections in the room. */
  connections: number;
}

/** The answer to `members(room)` (members of the room only). */
export interface MembersFrame {
  type: "members";
  ref: Ref;
  room: string;
  /** Users present. */
  count: number;
  /** The first users by userId (all of them unless `truncated`). */
  users: MemberInfo[];
  truncated: boolean;
}

export interface AckFrame {
  type: "ack";
  ref: Ref;
  /** Absent from a direct message's ack unless the server turns delivery receipts on. */
  delivered?: number;
  failed?: number;
  gone?: number;
  /** A direct message's ack: stored for the recipient (no `stream`/`seq`), online or not. */
  stored?: true;
  id?: string;
  stream?: Stream;
  seq?: number;
  room?: string;
  joined?: boolean;
  left?: boolean;
  /** A repeated `clientMsgId`: the original send's ack (same id, stream, seq), nothing sent. */
  duplicate?: boolean;
  /** A direct message to a user with no live connection: kept for their resume. */
  stored?: boolean;
  ephemeral?: boolean;
  epoch?: string;
}

export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  ref?: Ref;
  /** `rate_limited` by the connection's frame rate: how long until a frame would pass. */
  retryAfterMs?: number;
}

export interface IdentityFrame {
  type: "identity";
  ref: Ref;
  connectionId: string;
  userId: string;
  rooms: string[];
  role?: string;
}

export interface HistoryFrame {
  type: "history";
  ref: Ref;
  stream: Stream;
  /** Every entry of the page: messages and (room streams) presence events. */
  messages: StreamEntry[];
  next: number | null;
  last: number;
  skipped?: number[];
  truncated?: boolean;
  oldest?: number | null;
}

/** Errors: the server's `code` (bad_request, forbidden, not_found, too_large, rate_limited,
 * internal, …) with its frame, or the client's own: timeout, closed, queue_full, gave_up,
 * disconnected, resume_refused, bad_frame, store. */
export declare const ErrorCode: Readonly<{
  BAD_JSON: "bad_json";
  BAD_REQUEST: "bad_request";
  UNKNOWN_ACTION: "unknown_action";
  FORBIDDEN: "forbidden";
  NOT_FOUND: "not_found";
  TOO_LARGE: "too_large";
  RATE_LIMITED: "rate_limited";
  INTERNAL: "internal";
  TOKEN_EXPIRED: "token_expired";
  BAD_TOKEN: "bad_token";
  UNAVAILABLE: "unavailable";
  TIMEOUT: "timeout";
  DISCONNECTED: "disconnected";
  CLOSED: "closed";
  QUEUE_FULL: "queue_full";
  GAVE_UP: "gave_up";
  HANDSHAKE_REFUSED: "handshake_refused";
  HANDSHAKE_FAILED: "handshake_failed";
  RESUME_REFUSED: "resume_refused";
  BAD_FRAME: "bad_frame";
  STORE: "store";
}>;
/** Whether a request that failed with `code` may succeed if made again later, unchanged. */
export declare function isRetryable(code: string): boolean;

export declare class SwitchboardError extends Error {
  constructor(code: string, message: string, frame?: ErrorFrame | object);
  readonly code: string;
  readonly retryable: boolean;
  /** `handshake_failed` error events: the failed attempt's number. */
  readonly attempt?: number;
  readonly frame?: ErrorFrame | object;
  /** On `rate_limited`: the server's `retryAfterMs`, when it gave one. */
  readonly retryAfterMs?: number;
}

/** Where the last seq per stream is kept between app restarts. */
export declare class ConnectError extends SwitchboardError {
  /** The refused handshake's HTTP status (Node's `ws`; browsers hide it). */
  readonly status?: number;
  /** The server's message in the refusal's body. */
  readonly serverMessage?: string;
  readonly attempts: number;
}

export type StoredCursor = number | { epoch: string; seq: number };

export interface SeqStore {
  load(): Record<Stream, StoredCursor> | Promise<Record<Stream, StoredCursor>>;
  save(stream: Stream, seq: number, epoch?: string): void;
  flush?(): void;
}

export declare class MemoryStore implements SeqStore {
  constructor(initial?: Record<Stream, number>);
  load(): Record<Stream, StoredCursor>;
  save(stream: Stream, seq: number, epoch?: string): void;
}

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export declare class LocalStorageStore implements SeqStore {
  constructor(key?: string, storage?: StorageLike);
  load(): Record<Stream, StoredCursor>;
  save(stream: Stream, seq: number, epoch?: string): void;
}

/** The subset of the WHATWG WebSocket the client uses (browsers, React Native, `ws`). */
export interface WebSocketLike {
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketClass = new (url: string) => WebSocketLike;

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface ReconnectOptions {
  /** Base of the exponential backoff (default 500 ms). */
  initialDelayMs?: number;
  /** Cap of the backoff (default 5 s); each delay is uniform in [0, min(cap, base·2^n)). */
  maxDelayMs?: number;
  /** Consecutive failed attempts before `failed` with `gave_up` (default: never give up). */
  maxAttempts?: number;
}

export interface ClientOptions {
  /** The WebSocket API URL, e.g. `wss://abc.execute-api.eu-west-1.amazonaws.com/prod`. */
  url: string;
  /** A JWT, or a function returning one: called before every dial, and before the token's
   * `exp` to refresh it over the live connection (`authorize`). */
  token?: string | (() => string | Promise<string>);
  /** Refresh a token this long before its `exp` (default 60 s; halfway for a shorter one). */
  tokenRefreshMarginMs?: number;
  /** Present each own send once, in stream order, when its ack arrives (default false: own
   * sends are never presented). */
  echo?: boolean;
  /** The same as `reconnect.maxAttempts`. */
  maxAttempts?: number;
  /** Per-publisher order: a send to a stream goes out after the previous send to that stream
   * is answered (default false; a round trip per send to one stream). */
  orderedSends?: boolean;
  /** Local gateway with AUTH_MODE=none only: connect as this user. */
  userId?: string;
  /** With `userId` (AUTH_MODE=none): a display name, shown in presence and members `info`. */
  name?: string;
  /** The WebSocket class; default `globalThis.WebSocket` (Node 20: pass `ws`). */
  WebSocket?: WebSocketClass;
  store?: SeqStore;
  reconnect?: ReconnectOptions;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  resumeTimeoutMs?: number;
  /** Keepalive under API Gateway's 10-minute idle timeout (default 5 min). */
  pingIntervalMs?: number;
  /** Reconnect on the client's terms before API Gateway's 2-hour limit (default 1 h 55 min). */
  maxConnectionMs?: number;
  /** How long a seq gap is held before it is fetched with `history` (default 500 ms). */
  gapWaitMs?: number;
  historyLimit?: number;
  /** Requests queued while not open (default 1000); beyond, they reject with `queue_full`. */
  maxQueue?: number;
  /** A stream with no stored seq starts at its current end (`latest`) or replays its
   * retained log (`earliest`). */
  startFrom?: "latest" | "earliest";
  timers?: Timers;
  now?: () => number;
  random?: () => number;
}

export interface StateChange {
  state: State;
  previous: State;
  reason?: string;
  attempt?: number;
  delay?: number;
  code?: string;
  /** `failed` by a refused handshake: its HTTP status and the server's message. */
  status?: number;
  serverMessage?: string;
  error?: SwitchboardError;
  connectionId?: string;
}

export interface Reset {
  stream: Stream;
  epoch: string | null;
  previousEpoch: string | null;
}

export interface RemovedFrame {
  type: "removed";
  room: string;
  reason: string; // "revoked" | "capability" | "expired"
}

export interface AuthorizedFrame {
  type: "authorized";
  ref: Ref;
  expiresAt: number;
}

export interface SendContent {
  text?: string;
  event?: string;
  data?: unknown;
  /** Not logged: no seq, no dedupe, never replayed. */
  ephemeral?: boolean;
}

export interface HistoryQuery {
  /** The newest `limit` messages (the default when neither before nor after is given). */
  latest?: boolean;
  before?: number;
  after?: number;
  limit?: number;
}

export interface Gap {
  stream: Stream;
  from: number;
  to: number;
}

export interface Counters {
  /** Stream entries handed to the app: messages and presence events. */
  delivered: number;
  duplicates: number;
  held: number;
  reconnects: number;
  gapFetches: number;
  filledByHistory: number;
  resent: number;
  /** Re-sent sends answered `rate_limited` (their first try still in progress, or the rate
   * limit) and asked again with the same clientMsgId. */
  retried: number;
  /** Presence events delivered. */
  presence: number;
  /** Own sends passed over (or echoed): never presented as incoming. */
  own: number;
  resets: number;
  tokenRefreshes: number;
}

export interface ClientEvents {
  state: StateChange;
  connecting: StateChange;
  open: StateChange;
  reconnecting: StateChange;
  closed: StateChange;
  failed: StateChange;
  /** A stream's log was recreated (a new epoch): its cursor restarted. */
  reset: Reset;
  /** The server took this connection out of a room; it is not rejoined. */
  removed: RemovedFrame;
  /** Once per (stream, seq), in seq order per stream. */
  message: MessageFrame;
  /** Once per (stream, seq), in seq order with the room's messages. */
  presence: PresenceFrame;
  /** Seqs past retention: they will never arrive. */
  gap: Gap;
  /** Something the app should know that rejected no request (e.g. a refused rejoin). */
  error: SwitchboardError;
}

export interface RoomEvents {
  message: MessageFrame;
  presence: PresenceFrame;
  removed: RemovedFrame;
  reset: Reset;
  gap: Gap;
}

/** One room: `client.room(name)` (the same object each time). */
export declare class Room {
  readonly client: SwitchboardClient;
  readonly name: string;
  readonly stream: Stream;
  readonly joined: boolean;
  on<E extends keyof RoomEvents>(event: E, listener: (value: RoomEvents[E]) => void): this;
  once<E extends keyof RoomEvents>(event: E, listener: (value: RoomEvents[E]) => void): this;
  off<E extends keyof RoomEvents>(event: E, listener: (value: RoomEvents[E]) => void): this;
  join(): Promise<AckFrame>;
  leave(): Promise<AckFrame>;
  publish(event: string, data?: unknown, options?: { text?: string; ephemeral?: boolean }): Promise<AckFrame>;
  send(text: string): Promise<AckFrame>;
  history(query?: HistoryQuery): Promise<HistoryFrame>;
  members(): Promise<MembersFrame>;
}

/** Direct messages with one user: `client.user(id)`. */
export declare class User {
  readonly client: SwitchboardClient;
  readonly id: string;
  on(event: "message", listener: (value: MessageFrame) => void): this;
  off(event: "message", listener: (value: MessageFrame) => void): this;
  send(text: string): Promise<AckFrame>;
  publish(event: string, data?: unknown, options?: { text?: string; ephemeral?: boolean }): Promise<AckFrame>;
}

export declare class SwitchboardClient {
  constructor(options: ClientOptions);
  readonly state: State;
  readonly rooms: string[];
  readonly counters: Counters;
  readonly cursors: Record<Stream, number>;
  userId: string | undefined;
  connectionId: string | undefined;
  on<E extends keyof ClientEvents>(event: E, listener: (value: ClientEvents[E]) => void): this;
  once<E extends keyof ClientEvents>(event: E, listener: (value: ClientEvents[E]) => void): this;
  off<E extends keyof ClientEvents>(event: E, listener: (value: ClientEvents[E]) => void): this;
  connect(): Promise<void>;
  close(): void;
  reconnectNow(): void;
  room(name: string): Room;
  user(id: string): User;
  sendMessage(userId: string, content: string | SendContent): Promise<AckFrame>;
  sendRoom(room: string, content: string | SendContent): Promise<AckFrame>;
  broadcast(content: string | SendContent): Promise<AckFrame>;
  publish(room: string, event: string, data?: unknown, options?: { text?: string; ephemeral?: boolean }): Promise<AckFrame>;
  refreshToken(): Promise<AuthorizedFrame>;
  join(room: string): Promise<AckFrame>;
  leave(room: string): Promise<AckFrame>;
  whoami(): Promise<IdentityFrame>;
  /** Who is in `room`; rejects with `forbidden` unless this connection is a member. */
  members(room: string): Promise<MembersFrame>;
  history(stream: Stream, after?: number, limit?: number): Promise<HistoryFrame>;
  history(stream: Stream, query: HistoryQuery): Promise<HistoryFrame>;
}

export declare class StreamOrder {
  constructor(deliver: (entry: StreamEntry) => void, advanced: (stream: Stream, seq: number, epoch?: string) => void);
  epochOf(stream: Stream): string | undefined;
  epoch(stream: Stream, epoch: string, onReset?: (reset: Reset) => void): boolean;
  reset(stream: Stream, epoch: string | null, onReset?: (reset: Reset) => void): void;
  own(stream: Stream, seq: number, entry?: StreamEntry): "delivered" | "held" | "duplicate";
  readonly stats: { delivered: number; duplicates: number; held: number };
  cursor(stream: Stream): number | undefined;
  cursors(): Record<Stream, number>;
  start(stream: Stream, seq: number, epoch?: string): void;
  begin(stream: Stream, seq: number): void;
  push(entry: StreamEntry): "delivered" | "held" | "duplicate";
  skip(stream: Stream, seqs: number[]): void;
  lose(stream: Stream, seq: number): Gap | undefined;
  gaps(): Stream[];
  hasGap(stream: Stream): boolean;
}

export declare function backoffDelay(
  attempt: number,
  options: { initialDelayMs: number; maxDelayMs: number },
  random?: () => number,
): number;
export declare function randomId(): string;
/** A JWT's `exp` in epoch ms, read without verifying; undefined for anything else. */
export declare function jwtExpiryMs(token: string): number | undefined;

export default SwitchboardClient;
