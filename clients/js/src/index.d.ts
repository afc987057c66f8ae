// Type declarations for @switchboard/client (hand-written; the package has no build step).

export type State = "connecting" | "open" | "reconnecting" | "closed";
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
export declare class SwitchboardError extends Error {
  constructor(code: string, message: string, frame?: ErrorFrame | object);
  readonly code: string;
  readonly frame?: ErrorFrame | object;
  /** On `rate_limited`: the server's `retryAfterMs`, when it gave one. */
  readonly retryAfterMs?: number;
}

/** Where the last seq per stream is kept between app restarts. */
export interface SeqStore {
  load(): Record<Stream, number> | Promise<Record<Stream, number>>;
  save(stream: Stream, seq: number): void;
  flush?(): void;
}

export declare class MemoryStore implements SeqStore {
  constructor(initial?: Record<Stream, number>);
  load(): Record<Stream, number>;
  save(stream: Stream, seq: number): void;
}

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export declare class LocalStorageStore implements SeqStore {
  constructor(key?: string, storage?: StorageLike);
  load(): Record<Stream, number>;
  save(stream: Stream, seq: number): void;
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
  /** Cap of the backoff (default 30 s); each delay is uniform in [0, min(cap, base·2^n)). */
  maxDelayMs?: number;
  /** Consecutive failed attempts before `closed` with `gave_up` (default: never give up). */
  maxAttempts?: number;
}

export interface ClientOptions {
  /** The WebSocket API URL, e.g. `wss://abc.execute-api.eu-west-1.amazonaws.com/prod`. */
  url: string;
  /** A JWT, or a function returning one (called before every dial, so it can refresh). */
  token?: string | (() => string | Promise<string>);
  /** Local gateway with AUTH_MODE=none only: connect as this user. */
  userId?: string;
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
  connectionId?: string;
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
}

export interface ClientEvents {
  state: StateChange;
  connecting: StateChange;
  open: StateChange;
  reconnecting: StateChange;
  closed: StateChange;
  /** Once per (stream, seq), in seq order per stream. */
  message: MessageFrame;
  /** Once per (stream, seq), in seq order with the room's messages. */
  presence: PresenceFrame;
  /** Seqs past retention: they will never arrive. */
  gap: Gap;
  /** Something the app should know that rejected no request (e.g. a refused rejoin). */
  error: SwitchboardError;
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
  sendMessage(userId: string, text: string): Promise<AckFrame>;
  sendRoom(room: string, text: string): Promise<AckFrame>;
  broadcast(text: string): Promise<AckFrame>;
  join(room: string): Promise<AckFrame>;
  leave(room: string): Promise<AckFrame>;
  whoami(): Promise<IdentityFrame>;
  /** Who is in `room`; rejects with `forbidden` unless this connection is a member. */
  members(room: string): Promise<MembersFrame>;
  history(stream: Stream, after?: number, limit?: number): Promise<HistoryFrame>;
}

export declare class StreamOrder {
  constructor(deliver: (entry: StreamEntry) => void, advanced: (stream: Stream, seq: number) => void);
  readonly stats: { delivered: number; duplicates: number; held: number };
  cursor(stream: Stream): number | undefined;
  cursors(): Record<Stream, number>;
  start(stream: Stream, seq: number): void;
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

export default SwitchboardClient;
