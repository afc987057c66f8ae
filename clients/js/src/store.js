// Where the last seq per stream is kept, so an app restart resumes too. A store is any object
// with `load()` (an object of stream -> seq, or -> {epoch, seq}, or a Promise of one) and
// `save(stream, seq, epoch)` (`epoch`: the stream log's incarnation when the server gave one;
// a store that ignores it still works, it only cannot tell a recreated log after a restart
// until the server says so); `flush()` is optional. Saves are frequent (one per message):
// stores keep them cheap.

/** What a store keeps for a stream: the bare seq, or `{epoch, seq}` when there is an epoch. */
export function cursorValue(seq, epoch) {
  return typeof epoch === "string" ? { epoch, seq } : seq;
}

/** Keeps cursors for the life of the page or process only. */
export class MemoryStore {
  constructor(initial = {}) {
    this._seqs = { ...initial };
  }

  load() {
    return { ...this._seqs };
  }

  save(stream, seq, epoch = undefined) {
    this._seqs[stream] = cursorValue(seq, epoch);
  }
}

/**
 * Keeps cursors in Web Storage (`localStorage` in browsers; any object with getItem/setItem,
 * e.g. a React Native AsyncStorage wrapper that is synchronous). One JSON item under `key`.
 */
export class LocalStorageStore {
  constructor(key = "switchboard.seqs", storage = globalThis.localStorage) {
    if (!storage || typeof storage.getItem !== "function") {
      throw new TypeError("LocalStorageStore needs a storage with getItem/setItem");
    }
    this._key = key;
    this._storage = storage;
    this._seqs = undefined;
  }

  load() {
    if (this._seqs === undefined) this._seqs = parseSeqs(this._storage.getItem(this._key));
    return { ...this._seqs };
  }

  save(stream, seq, epoch = undefined) {
    if (this._seqs === undefined) this.load();
    this._seqs[stream] = cursorValue(seq, epoch);
    this._storage.setItem(this._key, JSON.stringify(this._seqs));
  }
}

/** The object of stream -> seq (or {epoch, seq}) in a stored JSON text; anything malformed counts as empty. */
export function parseSeqs(text) {
  if (typeof text !== "string" || text === "") return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return {};
  }
  const out = {};
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [stream, seq] of Object.entries(value)) {
      if (Number.isSafeInteger(seq) && seq >= 0) out[stream] = seq;
      else if (seq && typeof seq === "object" && typeof seq.epoch === "string" && Number.isSafeInteger(seq.seq) && seq.seq >= 0) {
        out[stream] = { epoch: seq.epoch, seq: seq.seq };
      }
    }
  }
  return out;
}
