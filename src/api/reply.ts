/** The engine's HTTP answers: JSON bodies, and NetctxError codes as HTTP statuses. */
import { NetctxError } from "../errors.ts";

export interface Reply {
  status: number;
  body: string;
  /** Content type; JSON unless given. */
  type?: string;
}

export function json(status: number, value: unknown): Reply {
  return { status, body: `${JSON.stringify(value)}\n` };
}

const STATUS_OF: Record<string, number> = {
  invalid: 400,
  "not-found": 404,
  conflict: 409,
  exhausted: 409,
  busy: 503,
  unavailable: 503,
  forbidden: 403,
};

export function errorReply(err: unknown): Reply {
  if (err instanceof NetctxError)
    return json(STATUS_OF[err.code] ?? 500, {
      error: { code: err.code, message: err.message, field: err.field },
    });
  return json(500, {
    error: { code: "internal", message: err instanceof Error ? err.message : String(err) },
  });
}
