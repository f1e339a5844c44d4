/**
 * Structured logs: one JSON object per line on stdout, so log shippers and
 * tests can read them without parsing prose. Fields are flat and stable.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Logger {
  /** The least severe level written: callers skip building what would not be written. */
  readonly level: LogLevel;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A logger writing JSON lines to `out` at `level` and above. */
export function createLogger(
  level: LogLevel = "info",
  out: (line: string) => void = (line) => process.stdout.write(line + "\n"),
): Logger {
  const emit = (lvl: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (order[lvl] < order[level]) return;
    out(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields }));
  };
  return { level, debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = createLogger("error", () => {});
