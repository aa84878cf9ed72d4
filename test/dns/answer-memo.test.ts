/**
 * src/dns/answer-memo.ts: an answer is given again only for the same bytes after the id from the same sender, with
 * the asker's own id; two queries whose bytes hash alike each keep their own answer; a stale answer is not given.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { AnswerMemo } from "../../src/dns/answer-memo.ts";

/** Id 0x0102, then `body`: the memo looks at the bytes after the id only. */
const query = (body: string, id = 0x0102) =>
  Buffer.concat([Buffer.from([id >> 8, id & 0xff]), Buffer.from(body)]);
const answerTo = (q: Buffer, text: string) => Buffer.concat([q.subarray(0, 2), Buffer.from(text)]);

test("the same bytes from the same sender: the kept answer with the asker's id; another sender or query: none", () => {
  const memo = new AnswerMemo();
  const q = query("web A question....");
  memo.keep("10.0.0.2", q, answerTo(q, "answer for web"));
  const again = query("web A question....", 0xbeef);
  const hit = memo.answer("10.0.0.2", again);
  assert.ok(hit);
  assert.equal(hit.readUInt16BE(0), 0xbeef);
  assert.equal(hit.subarray(2).toString(), "answer for web");
  assert.equal(memo.answer("10.0.0.3", again), undefined, "another sender");
  assert.equal(memo.answer("10.0.0.2", query("web A questioN....")), undefined, "one byte differs");
  assert.equal(memo.answer("10.0.0.2", query("web A question...")), undefined, "one byte shorter");
  // In place, in a larger buffer (a batch of datagrams): the query at an offset.
  const batch = Buffer.concat([Buffer.from("xxxxxxx"), again, Buffer.from("yyyy")]);
  assert.equal(
    memo
      .held("10.0.0.2", batch, 7, 7 + again.length)
      ?.subarray(2)
      .toString(),
    "answer for web",
  );
});

test("two queries whose bytes hash alike each get their own answer", () => {
  // FNV-1a of "q15wzx" and "q1c6cd" is the same (found by search); a common suffix keeps it so.
  const a = query("q15wzx same tail");
  const b = query("q1c6cd same tail");
  const memo = new AnswerMemo();
  memo.keep("10.0.0.2", a, answerTo(a, "answer a"));
  assert.equal(memo.answer("10.0.0.2", b), undefined, "b was never answered");
  memo.keep("10.0.0.2", b, answerTo(b, "answer b"));
  assert.equal(memo.answer("10.0.0.2", a)?.subarray(2).toString(), "answer a");
  assert.equal(memo.answer("10.0.0.2", b)?.subarray(2).toString(), "answer b");
  memo.keep("10.0.0.2", a, answerTo(a, "answer a, anew"));
  assert.equal(memo.answer("10.0.0.2", a)?.subarray(2).toString(), "answer a, anew");
  assert.equal(memo.size, 2, "kept again, not twice");
});

test("an answer past its time is not given, and is dropped; clear() drops all", () => {
  let now = 0;
  const memo = new AnswerMemo(() => now);
  const q = query("far.example A ....");
  memo.keep("10.0.0.2", q, answerTo(q, "forwarded"), 1000);
  now = 999;
  assert.ok(memo.answer("10.0.0.2", q));
  now = 1000;
  assert.equal(memo.answer("10.0.0.2", q), undefined);
  assert.equal(memo.size, 0);
  memo.keep("10.0.0.2", q, answerTo(q, "forwarded"));
  memo.clear();
  assert.equal(memo.answer("10.0.0.2", q), undefined);
});
