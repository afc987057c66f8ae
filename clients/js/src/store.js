// Where the last seq per stream is kept, so an app restart resumes too. A store is any object
// with `load()` (an object of stream -> seq, or a Promise of one) and `save(stream, seq)`;
// `flush()` is optional. Saves are frequent (one per message): stores keep them cheap.

/** Keeps cursors for the life of the page or process only. */
export class MemoryStore {
  constructor(initial = {}) {
    this._seqs = { ...initial };
  }

  load() {
    return { ...this._seqs };
  }

  save(stream, seq) {
    this._seqs[stream] = seq;
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

  save(stream, seq) {
    if (this._seqs === undefined) this.load();
    this._seqs[stream] = seq;
    this._storage.setItem(this._key, JSON.stringify(this._seqs));
  }
}

/** The object of stream -> seq in a stored JSON text; anything malformed counts as empty. */
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
    }
  }
  return out;
}
