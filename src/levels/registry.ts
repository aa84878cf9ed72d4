import { invalid } from "../errors.ts";
import type { Level } from "../model/records.ts";
import type { LevelDriver } from "./driver.ts";
import { l2Level } from "./l2.ts";
import { l3Level } from "./l3.ts";
import { socketLevel } from "./socket.ts";

const levels = new Map<Level, LevelDriver>([l2Level, l3Level, socketLevel].map((d) => [d.level, d]));

export function levelDriver(level: Level): LevelDriver {
  const driver = levels.get(level);
  if (!driver) throw invalid("level", `level "${level}" is not available yet`);
  return driver;
}
