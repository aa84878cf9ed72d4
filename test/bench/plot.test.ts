/**
 * bench/plot.ts writes a PNG that a decoder independent of the encoder reads back: chunk CRCs, IHDR, the
 * inflated and unfiltered pixels, with every series colour on the canvas and axes and text drawn on the white.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { inflateSync } from "node:zlib";
import { crc32, SERIES_COLOURS, writeSetupPlot } from "../../bench/plot.ts";

interface Decoded {
  width: number;
  height: number;
  pixel(x: number, y: number): [number, number, number];
  colours: Map<string, number>;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

function decodePng(file: Buffer): Decoded {
  assert.deepEqual([...file.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "signature");
  const chunks: { type: string; body: Buffer }[] = [];
  for (let at = 8; at < file.length; ) {
    const len = file.readUInt32BE(at);
    const type = file.toString("latin1", at + 4, at + 8);
    const body = file.subarray(at + 8, at + 8 + len);
    // Checked with a table-free CRC so a wrong table in the encoder cannot agree with itself.
    assert.equal(
      file.readUInt32BE(at + 8 + len),
      bitwiseCrc(file.subarray(at + 4, at + 8 + len)),
      `${type} CRC`,
    );
    chunks.push({ type, body });
    at += 12 + len;
  }
  assert.deepEqual(
    chunks.map((c) => c.type).filter((t, i, a) => a.indexOf(t) === i),
    ["IHDR", "IDAT", "IEND"],
  );
  const ihdr = chunks[0]!.body;
  const width = ihdr.readUInt32BE(0);
  const height = ihdr.readUInt32BE(4);
  assert.deepEqual([...ihdr.subarray(8, 13)], [8, 2, 0, 0, 0], "8-bit RGB, no interlace");
  const raw = inflateSync(Buffer.concat(chunks.filter((c) => c.type === "IDAT").map((c) => c.body)));
  const stride = width * 3;
  assert.equal(raw.length, (stride + 1) * height);
  const px = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    for (let i = 0; i < stride; i++) {
      const x = raw[y * (stride + 1) + 1 + i]!;
      const a = i >= 3 ? px[y * stride + i - 3]! : 0;
      const b = y > 0 ? px[(y - 1) * stride + i]! : 0;
      const c = i >= 3 && y > 0 ? px[(y - 1) * stride + i - 3]! : 0;
      const pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][filter];
      assert.ok(pred !== undefined, `filter type ${filter}`);
      px[y * stride + i] = (x + pred) & 0xff;
    }
  }
  const colours = new Map<string, number>();
  for (let i = 0; i < px.length; i += 3) {
    const key = `${px[i]},${px[i + 1]},${px[i + 2]}`;
    colours.set(key, (colours.get(key) ?? 0) + 1);
  }
  return {
    width,
    height,
    pixel: (x, y) => [px[(y * width + x) * 3]!, px[(y * width + x) * 3 + 1]!, px[(y * width + x) * 3 + 2]!],
    colours,
  };
}

function bitwiseCrc(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

const scratch = () => mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? tmpdir(), "plot-"));

test("crc32 matches the PNG specification's check value", () => {
  assert.equal(crc32(Buffer.from("123456789")), 0xcbf43926);
  assert.equal(crc32(Buffer.from("IEND")), 0xae426082);
});

test("a chart decodes back to 800x500 with every series colour, axes and text", () => {
  const path = join(scratch(), "setup.png");
  const series = [
    {
      label: "netctx library",
      points: [
        [1, 4.1],
        [10, 4.3],
        [100, 4.9],
        [500, 6.2],
      ] as [number, number][],
    },
    {
      label: "netctx CLI",
      points: [
        [1, 95],
        [10, 97],
        [100, 101],
        [500, 110],
      ] as [number, number][],
    },
    {
      label: "CNI bridge + ipMasq",
      points: [
        [1, 30],
        [10, 31],
        [100, 38],
        [500, 52],
      ] as [number, number][],
    },
  ];
  writeSetupPlot(path, series, { title: "l2 setup per context", xLabel: "N contexts", yLabel: "ms" });
  const png = decodePng(readFileSync(path));
  assert.equal(png.width, 800);
  assert.equal(png.height, 500);
  for (const [i, s] of series.entries()) {
    const count = png.colours.get(SERIES_COLOURS[i]!.join(",")) ?? 0;
    assert.ok(count > 200, `series ${s.label} colour drawn (${count} pixels)`);
  }
  assert.equal(png.colours.get(SERIES_COLOURS[3]!.join(",")), undefined, "no fourth series colour");
  const white = png.colours.get("255,255,255") ?? 0;
  assert.ok(white > 0.5 * 800 * 500, "mostly white background");
  assert.ok(white < 0.97 * 800 * 500, "but not blank: axes, grid and text on it");
  assert.ok((png.colours.get("34,34,34") ?? 0) > 1000, "axis and text ink present");
  assert.deepEqual(png.pixel(0, 0), [255, 255, 255]);
});

/** Mean row of the pixels of one colour: where a curve sits vertically. */
function meanRow(png: Decoded, colour: readonly number[]): number {
  let sum = 0;
  let n = 0;
  for (let y = 0; y < png.height; y++)
    for (let x = 0; x < png.width; x++)
      if (png.pixel(x, y).join(",") === colour.join(",")) {
        sum += y;
        n++;
      }
  assert.ok(n > 100, "series drawn");
  return sum / n;
}

test("values spanning more than 20x get a log y axis unless told otherwise", () => {
  const dir = scratch();
  const wide = [
    {
      label: "a",
      points: [
        [1, 1],
        [10, 20],
        [100, 500],
      ] as [number, number][],
    },
  ];
  writeSetupPlot(join(dir, "log.png"), wide);
  writeSetupPlot(join(dir, "lin.png"), wide, { logY: false });
  const colour = SERIES_COLOURS[0]!;
  const log = meanRow(decodePng(readFileSync(join(dir, "log.png"))), colour);
  const lin = meanRow(decodePng(readFileSync(join(dir, "lin.png"))), colour);
  // Linear, 1 and 20 both hug the x axis; on a log axis 20 sits near the middle, lifting the curve.
  assert.ok(log < lin - 30, `log curve higher (${log.toFixed(0)} vs ${lin.toFixed(0)})`);
});

test("an empty chart still renders axes", () => {
  const path = join(scratch(), "empty.png");
  writeSetupPlot(path, []);
  const png = decodePng(readFileSync(path));
  assert.ok((png.colours.get("34,34,34") ?? 0) > 500);
});
