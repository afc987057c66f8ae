import assert from "node:assert/strict";
import { test } from "node:test";
import { StreamOrder } from "../src/streams.js";
import { message } from "../testing/fakes.js";

function order() {
  const seen = [];
  const saved = {};
  const o = new StreamOrder((m) => seen.push(`${m.stream}#${m.seq}`), (s, q) => (saved[s] = q));
  return { o, seen, saved };
}

test("delivers in seq order and once per (stream, seq)", () => {
  const { o, seen, saved } = order();
  o.start("room:a", 0);
  assert.equal(o.push(message("room:a", 2)), "held");
  assert.equal(o.push(message("room:a", 1)), "delivered");
  assert.equal(o.push(message("room:a", 2)), "duplicate");
  assert.equal(o.push(message("room:a", 1)), "duplicate");
  assert.deepEqual(seen, ["room:a#1", "room:a#2"]);
  assert.equal(saved["room:a"], 2);
  assert.deepEqual(o.stats, { delivered: 2, duplicates: 2, held: 1 });
});

test("streams are ordered independently", () => {
  const { o, seen } = order();
  o.start("all", 4);
  o.start("room:a", 0);
  o.push(message("room:a", 2));
  o.push(message("all", 5));
  assert.deepEqual(seen, ["all#5"]);
  assert.deepEqual(o.gaps(), ["room:a"]);
});

test("a stream with no starting point starts at the first message heard", () => {
  const { o, seen } = order();
  o.push(message("all", 7));
  o.push(message("all", 8));
  assert.deepEqual(seen, ["all#7", "all#8"]);
  assert.equal(o.cursor("all"), 8);
});

test("a skipped seq is not waited for", () => {
  const { o, seen } = order();
  o.start("room:a", 0);
  o.push(message("room:a", 1));
  o.push(message("room:a", 3));
  assert.equal(o.hasGap("room:a"), true);
  o.skip("room:a", [2]);
  assert.deepEqual(seen, ["room:a#1", "room:a#3"]);
  assert.equal(o.hasGap("room:a"), false);
});

test("seqs past retention are reported and passed over", () => {
  const { o, seen } = order();
  o.start("room:a", 3);
  o.push(message("room:a", 9));
  assert.deepEqual(o.lose("room:a", 8), { stream: "room:a", from: 4, to: 8 });
  assert.deepEqual(seen, ["room:a#9"]);
  assert.equal(o.lose("room:a", 5), undefined);
});

test("start never moves an existing cursor and ignores bad values", () => {
  const { o } = order();
  o.start("all", 5);
  o.start("all", 9);
  o.start("room:a", -1);
  assert.deepEqual(o.cursors(), { all: 5 });
});

test("a floor is a soft start: a live message below it still arrives, later ones wait for it", () => {
  const { o, seen, saved } = order();
  o.begin("room:a", 5);
  assert.equal(saved["room:a"], 5);
  assert.equal(o.cursor("room:a"), 5);
  o.push(message("room:a", 5)); // sent after the join, answered after the floor was read
  assert.deepEqual(seen, ["room:a#5"]);
  const { o: o2, seen: seen2 } = order();
  o2.begin("room:a", 5);
  assert.equal(o2.push(message("room:a", 7)), "held");
  o2.push(message("room:a", 6));
  assert.deepEqual(seen2, ["room:a#6", "room:a#7"]);
});
