import type { SeqStore, StoredCursor, Stream } from "./index.js";

/** The last seq per stream in a JSON file (Node only); writes coalesced per `flushMs`. */
export declare class FileStore implements SeqStore {
  constructor(path: string, options?: { flushMs?: number });
  load(): Record<Stream, StoredCursor>;
  save(stream: Stream, seq: number, epoch?: string): void;
  flush(): void;
}
