// Per-stream ordering and dedupe, without I/O: stream entries in (live, replayed or from a
// history page, in any order, possibly twice), the app's deliveries out, once per
// (stream, seq) and in seq order per stream. An entry is any frame the server logged in a
// stream: a `message`, or a room's `presence` event (enter/leave), which takes a seq in the
// room's stream like a message does. This class does not tell them apart; the caller does.
//
// The server numbers every stream from 1 without gaps, except seqs it reports as `skipped`
// (their write failed) and seqs past retention (reported as `oldest`). Anything else missing
// is a message still on its way (two fan-outs can overtake each other) or lost with a closed
// socket: the caller holds it briefly, then fetches it with `history` (see index.js).

export class StreamOrder {
  /**
   * @param {(entry: object) => void} deliver called once per (stream, seq), in order
   * @param {(stream: string, seq: number, epoch?: string) => void} advanced the cursor moved
   *   (persist it, with the stream's epoch when the server gave one)
   */
  constructor(deliver, advanced) {
    this._deliver = deliver;
    this._advanced = advanced;
    /** @type {Map<string, {cursor: number|undefined, held: Map<number, object>, skipped: Set<number>}>} */
    this._streams = new Map();
    this.stats = { delivered: 0, duplicates: 0, held: 0 };
  }

  _save(stream, state) {
    const seq = state.cursor ?? state.floor;
    if (seq !== undefined) this._advanced(stream, seq, state.epoch);
  }

  _state(stream) {
    let state = this._streams.get(stream);
    if (!state) {
      state = { cursor: undefined, floor: undefined, epoch: undefined, held: new Map(), skipped: new Set() };
      this._streams.set(stream, state);
    }
    return state;
  }

  /** The last seq delivered (or passed over) in `stream`, else its floor, else undefined. */
  cursor(stream) {
    const state = this._streams.get(stream);
    return state?.cursor ?? state?.floor;
  }

  /** Every stream with a cursor: what a `resume` asks for. */
  cursors() {
    const out = {};
    for (const [stream, state] of this._streams) {
      const seq = state.cursor ?? state.floor;
      if (seq !== undefined) out[stream] = seq;
    }
    return out;
  }

  /** The stream's epoch (the server's name for this incarnation of its log), if known. */
  epochOf(stream) {
    return this._streams.get(stream)?.epoch;
  }

  /** Set a starting point (from a store, or the stream's `last` for a new one) if none. */
  start(stream, seq, epoch = undefined) {
    const state = this._state(stream);
    if (state.cursor !== undefined || !Number.isSafeInteger(seq) || seq < 0) return;
    state.cursor = seq;
    if (typeof epoch === "string") state.epoch = epoch;
    for (const held of [...state.held.keys()]) {
      if (held <= seq) state.held.delete(held);
    }
    this._save(stream, state); // a new stream's "now" is worth keeping across a restart
    this._drain(stream, state);
  }

  /**
   * The server says `stream` is in `epoch` (an entry, an ack or a resume summary carries it).
   * Unknown so far: adopted. Another one: the stream's log was recreated and numbers from 1
   * again, so the cursor restarts at 0 (entries of the old epoch still held are dropped) and
   * `onReset({stream, epoch, previousEpoch})` is called; nothing of the new log is discarded.
   */
  epoch(stream, epoch, onReset = () => {}) {
    if (typeof epoch !== "string") return false;
    const state = this._state(stream);
    if (state.epoch === undefined) {
      state.epoch = epoch;
      return false;
    }
    if (state.epoch === epoch) return false;
    this.reset(stream, epoch, onReset);
    return true;
  }

  /** Restart `stream`'s cursor at 0 in `epoch` (a `resumed` entry said `reset`). */
  reset(stream, epoch, onReset = () => {}) {
    const state = this._state(stream);
    const previousEpoch = state.epoch ?? null;
    const fresh = typeof epoch === "string" ? epoch : undefined;
    if (state.epoch !== undefined && state.epoch === fresh && state.cursor === 0) return;
    state.epoch = fresh;
    state.cursor = 0;
    state.floor = undefined;
    state.held.clear();
    state.skipped.clear();
    this._save(stream, state);
    onReset({ stream, epoch: fresh ?? null, previousEpoch });
  }

  /**
   * The client's own send was logged at `seq` (its ack says so, or it was recognised on the
   * way in): never delivered as incoming. With `entry` (the `echo` option), that entry is
   * delivered in its place, once, in stream order; without, the seq is passed over.
   * Returns like push().
   */
  own(stream, seq, entry = undefined) {
    if (!Number.isSafeInteger(seq) || seq < 1) return "duplicate";
    const state = this._state(stream);
    if (state.cursor === undefined) {
      state.cursor = state.floor !== undefined && seq > state.floor ? state.floor : seq - 1;
    }
    if (seq <= state.cursor) return "duplicate";
    state.held.delete(seq); // the own message itself, fetched before its ack came
    if (entry) return this.push(entry);
    state.skipped.add(seq);
    this._drain(stream, state);
    return state.cursor >= seq ? "delivered" : "held";
  }

  /**
   * Where a new stream starts when nothing is stored: its `last` when the client joined.
   * A soft start: a message at or below it that still arrives live was sent to this client
   * (it is a member) after all, overtaken on the way, and is delivered; the floor only
   * decides where a resume starts and where a stream begins once a later message arrives.
   */
  begin(stream, seq) {
    const state = this._state(stream);
    if (state.cursor !== undefined || state.floor !== undefined) return;
    if (!Number.isSafeInteger(seq) || seq < 0) return;
    state.floor = seq;
    this._save(stream, state);
  }

  /** Feed one stream entry (message or presence frame); returns "delivered", "held" or
   * "duplicate". */
  push(message) {
    const { stream, seq } = message;
    if (typeof stream !== "string" || !Number.isSafeInteger(seq) || seq < 1) return "duplicate";
    const state = this._state(stream);
    if (state.cursor === undefined) {
      // A stream with no starting point starts at its floor, or where the app first hears
      // of it (see begin()).
      state.cursor = state.floor !== undefined && seq > state.floor ? state.floor : seq - 1;
    }
    if (seq <= state.cursor || state.held.has(seq)) {
      this.stats.duplicates += 1;
      return "duplicate";
    }
    state.held.set(seq, message);
    const before = state.cursor;
    this._drain(stream, state);
    if (state.cursor >= seq) return "delivered";
    this.stats.held += before === state.cursor ? 1 : 0;
    return "held";
  }

  /** Seqs that will never hold a message: not waited for. */
  skip(stream, seqs) {
    const state = this._state(stream);
    for (const seq of seqs) {
      if (Number.isSafeInteger(seq) && (state.cursor === undefined || seq > state.cursor)) {
        state.skipped.add(seq);
      }
    }
    if (state.cursor !== undefined) this._drain(stream, state);
  }

  /** Everything up to and including `seq` is gone for good (past retention): move past it. */
  lose(stream, seq) {
    const state = this._state(stream);
    if (state.cursor !== undefined && seq <= state.cursor) return undefined;
    const from = (state.cursor ?? seq) + 1;
    state.cursor = seq;
    for (const held of [...state.held.keys()]) {
      if (held <= seq) state.held.delete(held);
    }
    this._save(stream, state);
    this._drain(stream, state);
    return from <= seq ? { stream, from, to: seq } : undefined;
  }

  /** Streams with messages held behind a missing seq. */
  gaps() {
    const out = [];
    for (const [stream, state] of this._streams) {
      if (state.held.size > 0) out.push(stream);
    }
    return out;
  }

  hasGap(stream) {
    return (this._streams.get(stream)?.held.size ?? 0) > 0;
  }

  _drain(stream, state) {
    const start = state.cursor;
    for (;;) {
      const next = state.cursor + 1;
      if (state.skipped.delete(next)) {
        state.cursor = next;
        continue;
      }
      const message = state.held.get(next);
      if (message === undefined) break;
      state.held.delete(next);
      state.cursor = next;
      this.stats.delivered += 1;
      this._deliver(message);
    }
    for (const seq of state.skipped) {
      if (seq <= state.cursor) state.skipped.delete(seq);
    }
    if (state.cursor !== start) this._save(stream, state);
  }
}
