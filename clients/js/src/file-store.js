// A store of the last seq per stream in a JSON file, for Node apps (a separate entry point so
// browser and React Native bundles never see `node:fs`). Writes are coalesced: at most one
// per `flushMs`, to a temporary file renamed over the old one (a crash leaves either the old
// or the new file, never half of one). A lost last write means a few messages are delivered
// again after a restart, never that one is skipped.

import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { cursorValue, parseSeqs } from "./store.js";

export class FileStore {
  constructor(path, { flushMs = 100 } = {}) {
    this._path = path;
    this._flushMs = flushMs;
    this._seqs = undefined;
    this._timer = undefined;
  }

  load() {
    if (this._seqs === undefined) {
      let text = "";
      try {
        text = readFileSync(this._path, "utf8");
      } catch (err) {
        if (err.code !== "ENOENT") throw err;
      }
      this._seqs = parseSeqs(text);
    }
    return { ...this._seqs };
  }

  save(stream, seq, epoch = undefined) {
    if (this._seqs === undefined) this.load();
    this._seqs[stream] = cursorValue(seq, epoch);
    if (this._timer === undefined) {
      this._timer = setTimeout(() => this.flush(), this._flushMs);
      this._timer.unref?.();
    }
  }

  flush() {
    clearTimeout(this._timer);
    this._timer = undefined;
    if (this._seqs === undefined) return;
    const tmp = `${this._path}.tmp`;
    writeFileSync(tmp, JSON.stringify(this._seqs));
    renameSync(tmp, this._path);
  }
}
