// Error codes a request or the connection can fail with: the server's (docs/PROTOCOL.md, the
// permissions and event-model issues' additions) and the client's own. The same constant names
// and values exist in the Python client (switchboard_client.errors.ErrorCode), and
// `retryable` says whether the same request may succeed later without the app changing it.

export const ErrorCode = Object.freeze({
  // the server's
  BAD_JSON: "bad_json",
  BAD_REQUEST: "bad_request",
  UNKNOWN_ACTION: "unknown_action",
  FORBIDDEN: "forbidden",
  NOT_FOUND: "not_found",
  TOO_LARGE: "too_large",
  RATE_LIMITED: "rate_limited",
  INTERNAL: "internal",
  TOKEN_EXPIRED: "token_expired",
  BAD_TOKEN: "bad_token",
  UNAVAILABLE: "unavailable",
  // the client's
  TIMEOUT: "timeout",
  DISCONNECTED: "disconnected",
  CLOSED: "closed",
  QUEUE_FULL: "queue_full",
  GAVE_UP: "gave_up",
  HANDSHAKE_REFUSED: "handshake_refused",
  HANDSHAKE_FAILED: "handshake_failed",
  RESUME_REFUSED: "resume_refused",
  BAD_FRAME: "bad_frame",
  STORE: "store",
});

// Worth the same request again later: a limit, a server-side hiccup, a lost connection, an
// expired token (once the token is refreshed, which the client does itself).
const RETRYABLE = new Set([
  ErrorCode.RATE_LIMITED,
  ErrorCode.INTERNAL,
  ErrorCode.TOKEN_EXPIRED,
  ErrorCode.UNAVAILABLE,
  ErrorCode.TIMEOUT,
  ErrorCode.DISCONNECTED,
  ErrorCode.QUEUE_FULL,
  ErrorCode.HANDSHAKE_FAILED,
]);

/** Whether a request failed with `code` may succeed if made again later, unchanged. */
export function isRetryable(code) {
  return RETRYABLE.has(code);
}

/** A request's or the connection's failure: the server's error `code` (with its frame), or one
 * of the client's own (see ErrorCode). `retryAfterMs`: on `rate_limited`, how long the server
 * asks to wait (when it says). */
export class SwitchboardError extends Error {
  constructor(code, message, frame = undefined) {
    super(message);
    this.name = "SwitchboardError";
    this.code = code;
    this.frame = frame;
    const wait = frame?.retryAfterMs;
    this.retryAfterMs = Number.isFinite(wait) && wait >= 0 ? wait : undefined;
  }

  get retryable() {
    return isRetryable(this.code);
  }
}

/** `connect()` could not open the connection: the handshake was refused (`handshake_refused`,
 * with the HTTP `status` and the server's `serverMessage` where the platform exposes them:
 * Node's `ws` does, browsers do not), or the client gave up after `attempts` tries
 * (`gave_up`). */
export class ConnectError extends SwitchboardError {
  constructor(code, message, { status = undefined, serverMessage = undefined, attempts = 0 } = {}) {
    super(code, message);
    this.name = "ConnectError";
    this.status = status;
    this.serverMessage = serverMessage;
    this.attempts = attempts;
  }
}

/** HTTP statuses of a refused handshake that no retry with the same credentials mends. A 401
 * is retried once when a token callback can give a fresh token; 408, 429 and 5xx are
 * retried with backoff. */
export function refusalIsFinal(status) {
  return Number.isInteger(status) && status >= 400 && status < 500 && status !== 408 && status !== 429;
}
