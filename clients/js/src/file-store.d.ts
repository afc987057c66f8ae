import type { SeqStore, Stream } from "./index.js";

/** The last seq per stream in a JSON file (Node only); writes coalesced per `flushMs`. */
export declare class FileStore implements SeqStore {
  constructor(path: string, options?: { flushMs?: number });
  load(): Record<Stream, number>;
  save(stream: Stream, seq: number): void;
  flush(): void;
}
