/**
 * A PNG line chart for the bench (per-context setup time against N), with no dependency beyond node:zlib:
 * a tiny RGB raster with a 5x7 bitmap font, an axis and legend layout on top of it, and a PNG encoder.
 */
import { writeFileSync } from "node:fs";
import { deflateSync } from "node:zlib";

export type Rgb = readonly [number, number, number];

export interface Series {
  label: string;
  points: [number, number][];
}

export interface PlotOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Log-scale y axis; by default when the positive y values span more than 20x. */
  logY?: boolean;
  /** Log-scale x axis (N = 1, 10, 100, 1000 spreads out evenly); off by default. */
  logX?: boolean;
}

/** Series colours in order (Tableau 10): distinct, and still apart for the common colour-vision deficiencies. */
export const SERIES_COLOURS: readonly Rgb[] = [
  [31, 119, 180],
  [255, 127, 14],
  [44, 160, 44],
  [214, 39, 40],
  [148, 103, 189],
  [140, 86, 75],
  [227, 119, 194],
  [127, 127, 127],
  [188, 189, 34],
  [23, 190, 207],
];

const WIDTH = 800;
const HEIGHT = 500;
const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [34, 34, 34];
const GRID: Rgb = [228, 228, 228];
const TEXT_SCALE = 2;

export function writeSetupPlot(path: string, series: Series[], opts: PlotOptions = {}): void {
  writeFileSync(path, encodePng(renderChart(series, opts)));
}

// ---------------------------------------------------------------------------------------------------------------
// Raster: pixels, lines, rectangles, text.

/**
 * The classic 5x7 font, ASCII 32..126: five column bytes per glyph, bit 0 the top row; g j p q y use an eighth row
 * for their descenders, and l has a tail so "l2" does not read "12". A character outside the range is drawn as '?'.
 */
const FONT = [
  "000000000000005f00000007000700147f147f14242a7f2a12231308646236495522500005030000", // (space)!"#$%&'
  "001c2241000041221c00082a1c2a0808083e08080050300000080808080800606000002010080402", // ()*+,-./
  "3e5149453e00427f400042615149462141454b311814127f1027454545393c4a4949300171090503", // 01234567
  "3649494936064949291e003636000000563600000008142241141414141441221408000201510906", // 89:;<=>?
  "324979413e7e1111117e7f494949363e414141227f4141221c7f494949417f090901013e41415132", // @ABCDEFG
  "7f0808087f00417f41002040413f017f081422417f404040407f0204027f7f0408107f3e4141413e", // HIJKLMNO
  "7f090909063e4151215e7f09192946464949493101017f01013f4040403f1f2040201f7f2018207f", // PQRSTUVW
  "63140814630304780403615149454300007f4141020408102041417f000004020102044040404040", // XYZ[\]^_
  "000102040020545454787f484444383844444420384444487f3854545418087e09010298a4a4a47c", // `abcdefg
  "7f0804047800447d40004080847d00007f10284400013f40407c041804787c080404783844444438", // hijklmno
  "fc2424241818242424fc7c080404084854545420043f4440203c4040207c1c2040201c3c4030403c", // pqrstuvw
  "44281028449ca0a0a07c4464544c44000836410000007f000000413608000804081008", // xyz{|}~
].join("");

const GLYPH_W = 5;
const GLYPH_H = 8;
const ADVANCE = GLYPH_W + 1;

function glyphColumn(ch: string, col: number): number {
  let code = ch.charCodeAt(0);
  if (code < 32 || code > 126) code = 63;
  const at = ((code - 32) * GLYPH_W + col) * 2;
  return Number.parseInt(FONT.slice(at, at + 2), 16);
}

export function textWidth(text: string, scale = TEXT_SCALE): number {
  return text.length === 0 ? 0 : (text.length * ADVANCE - 1) * scale;
}

export class Raster {
  readonly data: Uint8Array;

  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb,
  ) {
    this.data = new Uint8Array(width * height * 3);
    this.rect(0, 0, width, height, background);
  }

  set(x: number, y: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * 3;
    this.data[i] = c[0];
    this.data[i + 1] = c[1];
    this.data[i + 2] = c[2];
  }

  rect(x: number, y: number, w: number, h: number, c: Rgb): void {
    for (let j = 0; j < h; j++) for (let i = 0; i < w; i++) this.set(x + i, y + j, c);
  }

  frame(x: number, y: number, w: number, h: number, c: Rgb): void {
    this.rect(x, y, w, 1, c);
    this.rect(x, y + h - 1, w, 1, c);
    this.rect(x, y, 1, h, c);
    this.rect(x + w - 1, y, 1, h, c);
  }

  /** A line drawn with a square brush of `thick` pixels, stepping along its longer axis. */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, thick = 1): void {
    const steps = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
    const off = Math.floor((thick - 1) / 2);
    for (let s = 0; s <= steps; s++) {
      const x = Math.round(x0 + ((x1 - x0) * s) / steps);
      const y = Math.round(y0 + ((y1 - y0) * s) / steps);
      this.rect(x - off, y - off, thick, thick, c);
    }
  }

  /** Text with its top-left corner at (x, y); vertical text reads bottom to top with (x, y) its bottom-left. */
  text(x: number, y: number, text: string, c: Rgb, scale = TEXT_SCALE, vertical = false): void {
    for (let k = 0; k < text.length; k++)
      for (let col = 0; col < GLYPH_W; col++) {
        const bits = glyphColumn(text[k]!, col);
        for (let row = 0; row < GLYPH_H; row++) {
          if (!(bits & (1 << row))) continue;
          const along = (k * ADVANCE + col) * scale;
          const across = row * scale;
          if (vertical) this.rect(x + across, y - along - scale, scale, scale, c);
          else this.rect(x + along, y + across, scale, scale, c);
        }
      }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Axes and layout.

interface Axis {
  /** Value to pixel along the axis. */
  at(v: number): number;
  ticks: number[];
}

/** 1, 2 or 5 times a power of ten, about `span / target`. */
function niceStep(span: number, target = 6): number {
  const raw = span / target;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const m = raw / pow;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * pow;
}

function linearAxis(min: number, max: number, from: number, to: number): Axis {
  if (max <= min) max = min + 1;
  const step = niceStep(max - min);
  const lo = Math.floor(min / step + 1e-9) * step;
  const hi = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { at: (v) => from + ((v - lo) / (hi - lo)) * (to - from), ticks };
}

/** 1-2-5 values from below min to above max; ticks on all of them over a few decades, else powers of ten. */
function logAxis(min: number, max: number, from: number, to: number): Axis {
  const steps: number[] = [];
  for (let d = Math.floor(Math.log10(min)); d <= Math.ceil(Math.log10(max)); d++)
    for (const m of [1, 2, 5]) steps.push(Number((m * 10 ** d).toPrecision(12)));
  const lo = steps.filter((v) => v <= min).at(-1) ?? steps[0]!;
  const hi = steps.find((v) => v >= max && v > lo) ?? lo * 10;
  const inRange = steps.filter((v) => v >= lo && v <= hi);
  const decades = Math.log10(hi / lo);
  const ticks = decades <= 3 ? inRange : inRange.filter((v) => Number.isInteger(Math.log10(v)));
  const [a, b] = [Math.log10(lo), Math.log10(hi)];
  return { at: (v) => from + ((Math.log10(v) - a) / (b - a)) * (to - from), ticks };
}

function tickText(v: number): string {
  if (Math.abs(v) >= 10000) return `${Number((v / 1000).toPrecision(6))}k`;
  return String(Number(v.toPrecision(6)));
}

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

interface Layout {
  plot: Box;
  xAxis: Axis;
  yAxis: Axis;
  /** Data point to pixel; points a log axis cannot show sit on the axis line. */
  toPx(p: [number, number]): [number, number];
}

const LINE_H = GLYPH_H * TEXT_SCALE;
const MARGIN = 14;
const LEGEND_ROW = LINE_H + 8;

/** Where the plot box and axes go, leaving `legendRows` rows free under the x label. */
function layout(
  series: Series[],
  opts: PlotOptions,
  log: { x: boolean; y: boolean },
  legendRows: number,
): Layout {
  const all = series.flatMap((s) => s.points);
  const top = opts.title ? MARGIN + LINE_H + 16 : MARGIN + 6;
  const bottom =
    HEIGHT -
    MARGIN -
    (legendRows ? legendRows * LEGEND_ROW + 8 : 0) -
    (opts.xLabel ? LINE_H + 10 : 0) -
    LINE_H -
    10;
  const axis = (values: number[], isLog: boolean, from: number, to: number) => {
    const positive = values.filter((v) => v > 0);
    if (isLog && positive.length) return logAxis(Math.min(...positive), Math.max(...positive), from, to);
    return linearAxis(Math.min(0, ...values), values.length ? Math.max(...values) : 1, from, to);
  };
  const yAxis = axis(
    all.map((p) => p[1]),
    log.y,
    bottom,
    top,
  );
  const yTickW = Math.max(...yAxis.ticks.map((t) => textWidth(tickText(t))));
  const left = MARGIN + (opts.yLabel || log.y ? LINE_H + 12 : 0) + yTickW + 10;
  const right = WIDTH - MARGIN - 10;
  const xAxis = axis(
    all.map((p) => p[0]),
    log.x,
    left,
    right,
  );
  const clamp = (axis: Axis, v: number, isLog: boolean, edge: number) =>
    isLog && v <= 0 ? edge : axis.at(v);
  return {
    plot: { x: left, y: top, w: right - left, h: bottom - top },
    xAxis,
    yAxis,
    toPx: (p) => [clamp(xAxis, p[0], log.x, left), clamp(yAxis, p[1], log.y, bottom)],
  };
}

/**
 * The chart: title on top, y label on the left, x label below, the legend in a corner of the plot that no curve
 * crosses, or under the x label when every corner is taken.
 */
export function renderChart(series: Series[], opts: PlotOptions = {}): Raster {
  const spans = (values: number[]) => {
    const positive = values.filter((v) => v > 0);
    return positive.length > 0 && Math.max(...positive) / Math.min(...positive) > 20;
  };
  const log = {
    x: opts.logX ?? false,
    y: opts.logY ?? spans(series.flatMap((s) => s.points.map((p) => p[1]))),
  };
  const entryW = (sr: Series) => 48 + textWidth(sr.label);
  const legendW = 12 + Math.max(0, ...series.map(entryW));
  const legendH = series.length * LEGEND_ROW + 12;

  let l = layout(series, opts, log, 0);
  let legend: { box: Box; at: [number, number][] } | undefined;
  const corner = series.length ? freeCorner(l, series, legendW, legendH) : undefined;
  if (corner) legend = { box: corner, at: series.map((_, i) => [corner.x, corner.y + 6 + i * LEGEND_ROW]) };
  else if (series.length) {
    const at = flow(series.map(entryW), WIDTH - 2 * MARGIN);
    const rows = Math.max(...at.map((p) => p[1])) + 1;
    l = layout(series, opts, log, rows);
    const y0 = HEIGHT - MARGIN - rows * LEGEND_ROW;
    legend = {
      box: { x: MARGIN, y: y0, w: 0, h: 0 },
      at: at.map(([x, row]) => [MARGIN + x, y0 + row * LEGEND_ROW]),
    };
  }

  const r = new Raster(WIDTH, HEIGHT, WHITE);
  drawAxes(r, l, opts, log.y);
  series.forEach((s, i) => {
    const c = SERIES_COLOURS[i % SERIES_COLOURS.length]!;
    const pts = [...s.points].sort((a, b) => a[0] - b[0]).map(l.toPx);
    for (let k = 1; k < pts.length; k++) r.line(...pts[k - 1]!, ...pts[k]!, c, 3);
    for (const [x, y] of pts) marker(r, x, y, i, c);
  });
  if (legend) drawLegend(r, series, legend.box, legend.at);
  return r;
}

function drawAxes(r: Raster, l: Layout, opts: PlotOptions, logY: boolean): void {
  const { plot, xAxis, yAxis } = l;
  const bottom = plot.y + plot.h;
  if (opts.title) r.text((WIDTH - textWidth(opts.title)) / 2, MARGIN, opts.title, INK);
  const yLabel = logY ? `${opts.yLabel ? `${opts.yLabel} ` : ""}(log scale)` : opts.yLabel;
  if (yLabel) {
    const scale = textWidth(yLabel) <= plot.h ? TEXT_SCALE : 1;
    r.text(MARGIN, plot.y + (plot.h + textWidth(yLabel, scale)) / 2, yLabel, INK, scale, true);
  }
  if (opts.xLabel)
    r.text(plot.x + (plot.w - textWidth(opts.xLabel)) / 2, bottom + LINE_H + 20, opts.xLabel, INK);
  for (const t of yAxis.ticks) {
    const y = Math.round(yAxis.at(t));
    r.rect(plot.x, y, plot.w, 1, GRID);
    r.rect(plot.x - 5, y, 5, 1, INK);
    const label = tickText(t);
    r.text(plot.x - 9 - textWidth(label), y - LINE_H / 2 + 1, label, INK);
  }
  for (const t of xAxis.ticks) {
    const x = Math.round(xAxis.at(t));
    r.rect(x, plot.y, 1, plot.h, GRID);
    r.rect(x, bottom, 1, 6, INK);
    const label = tickText(t);
    r.text(x - textWidth(label) / 2, bottom + 10, label, INK);
  }
  r.rect(plot.x, plot.y, 1, plot.h + 1, INK);
  r.rect(plot.x, bottom, plot.w, 1, INK);
}

/** Marker shapes cycle with the colours, so series stay apart in grey print too. */
function marker(r: Raster, cx: number, cy: number, index: number, c: Rgb): void {
  const shape = index % 4;
  for (let dy = -4; dy <= 4; dy++)
    for (let dx = -4; dx <= 4; dx++) {
      const inside =
        shape === 0
          ? Math.abs(dx) <= 3 && Math.abs(dy) <= 3
          : shape === 1
            ? dx * dx + dy * dy <= 16
            : shape === 2
              ? Math.abs(dx) + Math.abs(dy) <= 4
              : dy >= -3 && dy <= 3 && Math.abs(dx) <= (dy + 4) / 2;
      if (inside) r.set(cx + dx, cy + dy, c);
    }
}

/** A corner of the plot box where the legend covers no curve (sampled along every segment), if there is one. */
function freeCorner(l: Layout, series: Series[], w: number, h: number): Box | undefined {
  const { plot } = l;
  const pad = 10;
  const [left, right] = [plot.x + pad + 4, plot.x + plot.w - w - pad];
  const [top, low] = [plot.y + pad, plot.y + plot.h - h - pad];
  const corners: Box[] = [
    { x: right, y: top, w, h },
    { x: left, y: top, w, h },
    { x: right, y: low, w, h },
    { x: left, y: low, w, h },
  ];
  const samples = series.flatMap((s) => {
    const pts = [...s.points].sort((a, b) => a[0] - b[0]).map(l.toPx);
    return pts.flatMap((p, k) => {
      const q = pts[k + 1] ?? p;
      return Array.from({ length: 40 }, (_, t): [number, number] => [
        p[0] + ((q[0] - p[0]) * t) / 40,
        p[1] + ((q[1] - p[1]) * t) / 40,
      ]);
    });
  });
  const margin = 6;
  return corners.find(
    (b) =>
      b.x >= plot.x &&
      b.y >= plot.y &&
      !samples.some(
        ([x, y]) =>
          x >= b.x - margin && x <= b.x + b.w + margin && y >= b.y - margin && y <= b.y + b.h + margin,
      ),
  );
}

/** Left-to-right placement of entries of the given widths, wrapping at maxWidth: [x, row] for each. */
function flow(widths: number[], maxWidth: number): [number, number][] {
  const gap = 24;
  let x = 0;
  let row = 0;
  return widths.map((w) => {
    if (x > 0 && x + w > maxWidth) {
      x = 0;
      row++;
    }
    const at: [number, number] = [x, row];
    x += w + gap;
    return at;
  });
}

/** Each entry (a line with the series' marker, then its label) at its top-left; a framed box when it has a size. */
function drawLegend(r: Raster, series: Series[], box: Box, at: [number, number][]): void {
  if (box.h > 0) {
    r.rect(box.x, box.y, box.w, box.h, WHITE);
    r.frame(box.x, box.y, box.w, box.h, [170, 170, 170]);
  }
  series.forEach((s, i) => {
    const c = SERIES_COLOURS[i % SERIES_COLOURS.length]!;
    const [x, top] = at[i]!;
    const y = top + LEGEND_ROW / 2;
    r.line(x + 12, y, x + 40, y, c, 3);
    marker(r, x + 26, y, i, c);
    r.text(x + 48, y - LINE_H / 2, s.label, INK);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// PNG: signature, IHDR, one IDAT (zlib stream of filtered rows), IEND; each chunk with its CRC-32.

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, body: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, "latin1");
  out.set(body, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

export function encodePng(image: Raster): Buffer {
  const { width, height, data } = image;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  // bit depth 8, colour type 2 (RGB), compression 0, filter method 0, no interlace
  ihdr.set([8, 2, 0, 0, 0], 8);
  const stride = width * 3;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    // Filter type 1 (Sub): flat areas become runs of zeros, which deflate well.
    const row = y * (stride + 1);
    raw[row] = 1;
    for (let i = 0; i < stride; i++) {
      const left = i >= 3 ? data[y * stride + i - 3]! : 0;
      raw[row + 1 + i] = (data[y * stride + i]! - left) & 0xff;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw, { level: 9 })),
    chunk("IEND", new Uint8Array(0)),
  ]);
}
