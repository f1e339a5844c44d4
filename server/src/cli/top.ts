// `ratequeue top`: every resource of the namespace, refreshed each second on
// the terminal's alternate screen: grants/s against the request limit's
// rate, queue depth, p99 wait, leases, and each limit's use over its last
// period. q or Ctrl-C quits and gives the terminal back as it was.
import { parseArgs } from "node:util";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { RateQueueError, type AdminClient } from "@ratequeue/client";
import { Dimension, type Resource, type ResourceStats } from "@ratequeue/proto";
import { formatDuration } from "../config.js";
import { adminClientOf, connectionFlags } from "./connection-flags.js";
import { tableLines } from "./output.js";

export const topUsage = `Usage: ratequeue top [--namespace N] [--url URL] [--ca-file FILE]

A live view of every resource, refreshed each second: grants/s against the
request limit's rate, queue depth, p99 wait, leases held (of the
concurrency cap) and the share of each limit used over its last period.
q or Ctrl-C quits.
It needs a terminal; scripts read 'ratequeue resources stats NAME -o json'.
Server and key as for 'ratequeue resources' (RATEQUEUE_URL, RATEQUEUE_API_KEY).`;

const refreshMs = 1000;

// Terminal control sequences (xterm; every terminal emulator in use speaks them).
const altScreenOn = "\x1b[?1049h";
const altScreenOff = "\x1b[?1049l";
const cursorHide = "\x1b[?25l";
const cursorShow = "\x1b[?25h";
const home = "\x1b[H";
const clearLineEnd = "\x1b[K";
const clearScreenEnd = "\x1b[J";
const inverse = "\x1b[7m";
const plain = "\x1b[0m";
const ctrlC = "\x03";

/** Runs `ratequeue top` until the user quits; returns the exit code (0 quit, 1 refused, 2 usage). */
export async function runTop(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { namespace: { type: "string" }, help: { type: "boolean", short: "h", default: false }, ...connectionFlags },
      strict: true,
    });
  } catch (err) {
    console.error(`ratequeue top: ${(err as Error).message}\n\n${topUsage}`);
    return 2;
  }
  const { values } = parsed;
  if (values.help) {
    console.log(topUsage);
    return 0;
  }
  // A redrawn screen is no use in a pipe or a log file, and without a terminal on stdin there is no 'q'.
  if (!process.stdout.isTTY || !process.stdin.isTTY) {
    console.error("ratequeue top: needs a terminal; scripts read 'ratequeue resources stats NAME -o json'");
    return 2;
  }
  let admin: AdminClient;
  let first: Sample;
  try {
    admin = adminClientOf(values, values.namespace);
    // The first reading happens before the screen is taken, so that a refusal is printed where it stays visible.
    first = await takeSample(admin);
  } catch (err) {
    if (err instanceof RateQueueError || (err instanceof Error && "syscall" in err)) {
      console.error(`ratequeue top: ${err instanceof RateQueueError ? `${err.code}: ` : ""}${err.message}`);
      return 1;
    }
    throw err;
  }
  return runScreen(admin, first, values.namespace);
}

/** One reading of every resource and its stats, with the time it arrived. */
interface Sample {
  at: number;
  resources: { resource: Resource; stats: ResourceStats }[];
}

async function takeSample(admin: AdminClient): Promise<Sample> {
  const resources = await admin.raw.listResources();
  const read = await Promise.all(
    resources.map(async (resource) => {
      try {
        return { resource, stats: await admin.raw.getResourceStats(resource.name) };
      } catch (err) {
        // Deleted between the list and its stats: gone from this reading.
        if (err instanceof RateQueueError && err.code === "NOT_FOUND") return undefined;
        throw err;
      }
    }),
  );
  return {
    at: performance.now(),
    resources: read.filter((r) => r !== undefined).sort((a, b) => (a.resource.name < b.resource.name ? -1 : 1)),
  };
}

function runScreen(admin: AdminClient, first: Sample, namespace: string | undefined): Promise<number> {
  const { stdin, stdout } = process;
  let previous: Sample | undefined;
  let latest = first;
  let failure: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let done = false;

  const draw = () => {
    if (done) return;
    const lines = frameLines({ previous, latest, failure, namespace, columns: stdout.columns || 80, rows: stdout.rows || 24 });
    stdout.write(home + lines.join(clearLineEnd + "\r\n") + clearLineEnd + clearScreenEnd);
  };
  const refresh = async () => {
    const started = performance.now();
    try {
      const next = await takeSample(admin);
      [previous, latest, failure] = [latest, next, undefined];
    } catch (err) {
      // The server may be restarting or failing over: keep the last reading on screen and try again.
      failure = err instanceof RateQueueError ? `${err.code}: ${err.message}` : String(err);
    }
    draw();
    if (!done) timer = setTimeout(() => void refresh(), Math.max(0, refreshMs - (performance.now() - started)));
  };

  return new Promise<number>((resolve) => {
    const restore = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stdin.setRawMode(false);
      stdin.pause();
      stdout.write(cursorShow + altScreenOff);
    };
    const quit = () => {
      restore();
      admin.close();
      resolve(0);
    };
    // Whatever ends the process, the terminal is given back.
    process.once("exit", restore);
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, quit);
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on("data", (data: Buffer) => {
      const keys = data.toString();
      if (keys.includes("q") || keys.includes("Q") || keys.includes(ctrlC)) quit();
    });
    stdout.on("resize", draw);
    stdout.write(altScreenOn + cursorHide);
    draw();
    timer = setTimeout(() => void refresh(), refreshMs);
  });
}

interface FrameInput {
  previous: Sample | undefined;
  latest: Sample;
  failure: string | undefined;
  namespace: string | undefined;
  columns: number;
  rows: number;
}

/** The screen's lines, each cut to the terminal's width, as many as fit its height. */
function frameLines({ previous, latest, failure, namespace, columns, rows }: FrameInput): string[] {
  const seconds = previous === undefined ? 0 : (latest.at - previous.at) / 1000;
  const before = new Map(previous?.resources.map((r) => [r.stats.name, Number(r.stats.grants)]));
  const tableRows = latest.resources.map(({ resource, stats }) => {
    const earlier = before.get(stats.name);
    const grants = Number(stats.grants);
    // Unknown on the first reading, and when the counter went back (the resource was made anew, or a new leader took over).
    const rate = earlier === undefined || seconds <= 0 || grants < earlier ? "-" : ((grants - earlier) / seconds).toFixed(1);
    const queued = stats.lanes.reduce((sum, l) => sum + l.queueDepth, 0);
    return [
      stats.name,
      rate,
      requestRate(stats),
      String(queued),
      formatDuration(Math.round((stats.waitP99 === undefined ? 0 : durationMs(stats.waitP99)) * 10) / 10),
      resource.concurrency === 0 ? String(stats.leasesInFlight) : `${stats.leasesInFlight}/${resource.concurrency}`,
      stats.limits.map(utilisationCell).join("  ") || "-",
    ];
  });
  const [header, ...body] = tableLines(["RESOURCE", "GRANTS/S", "LIMIT/S", "QUEUE", "P99 WAIT", "LEASES", "UTILISATION"], tableRows);
  const clock = new Date().toTimeString().slice(0, 8);
  const title = `ratequeue top  ${namespace === undefined ? "" : `namespace ${namespace}  `}${latest.resources.length} resources  ${clock}`;
  const footer = failure === undefined ? "q quits" : `refresh failed, retrying: ${failure}`;
  // Title, a blank line, the table's header, its rows, the footer: rows beyond the screen are counted, not drawn.
  const room = Math.max(1, rows - 4);
  const shown = body.length <= room ? body : [...body.slice(0, room - 1), `... and ${body.length - room + 1} more`];
  const cut = (line: string) => line.slice(0, columns);
  return [inverse + cut(title.padEnd(columns)) + plain, "", cut(header!), ...shown.map(cut), cut(footer)];
}

/** The tightest request limit as grants per second; "-" without one. */
function requestRate(stats: ResourceStats): string {
  const rates = stats.limits
    .map((l) => l.limit!)
    .filter((l) => l.dimension === Dimension.REQUESTS)
    .map((l) => l.amount / (durationMs(l.period!) / 1000));
  return rates.length === 0 ? "-" : Math.min(...rates).toFixed(1);
}

/** What the limit allowed over its last period that was used, as ratequeue_limit_utilisation_ratio counts it. */
function utilisationCell(l: ResourceStats["limits"][number]): string {
  const width = 10;
  const ratio = Math.min(1, l.usedLastPeriod / (l.learnedAmount ?? l.limit!.amount));
  const used = Math.round(ratio * width);
  const name = l.limit!.dimension === Dimension.REQUESTS ? "req" : "load";
  return `${name} [${"#".repeat(used)}${".".repeat(width - used)}] ${String(Math.round(ratio * 100)).padStart(3)}%`;
}
