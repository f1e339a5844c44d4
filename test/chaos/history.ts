// The history of a chaos run: what every worker and server did, as JSON
// lines. Workers write their own events; the runner adds the servers' log
// lines and the faults it injected. All times are epoch ms on this
// machine's clock (servers and workers run on one machine).

/** A lease granted: the server's grant time, as the worker received it. */
export interface GrantEvent {
  kind: "grant";
  worker: string;
  resource: string;
  lease: string;
  /** Server grant time (integer ms). */
  at: number;
  /** The load charged at grant (the estimate). */
  load: number;
  priority: number;
  lane: string;
}

/** A release sent: `at` is just before it was sent, so the call ran no later. */
export interface ReleaseEvent {
  kind: "release";
  worker: string;
  lease: string;
  at: number;
  /** The load the call really used, when it was reported. */
  actualLoad?: number;
  /** What the server answered; null when the client could not say. */
  outcome: "released" | "already_released" | "expired" | "unknown" | null;
}

/** The client reported a lease lost (expired, not held, key refused). */
export interface LostEvent {
  kind: "lost";
  worker: string;
  lease: string;
  at: number;
}

/** A server expired a lease (its "lease expired" log line). */
export interface ExpiredEvent {
  kind: "expired";
  node: string;
  lease: string;
  resource: string;
  at: number;
}

/** One acquire from its start to its outcome. */
export interface AcquireEvent {
  kind: "acquire";
  worker: string;
  resource: string;
  start: number;
  end: number;
  outcome: "granted" | "deadline" | "cancelled" | "failed";
  /** The status name of a failure. */
  code?: string;
  /** The acquire's own timeout, when it had one. */
  timeoutMs?: number;
  lease?: string;
}

/** An acquire still waiting when its worker stopped or was killed. */
export interface PendingEvent {
  kind: "pending";
  worker: string;
  resource: string;
  start: number;
  at: number;
  timeoutMs?: number;
}

/** A worker process started, was killed, or exited. */
export interface WorkerEvent {
  kind: "worker";
  worker: string;
  event: "start" | "killed" | "exit";
  at: number;
}

/** A fault the runner injected, from `at` to `until` (instantaneous faults: until = at). */
export interface FaultEvent {
  kind: "fault";
  fault: string;
  target: string;
  at: number;
  until: number;
}

/** A node took the leadership (its "leading" log line). */
export interface LeadEvent {
  kind: "lead";
  node: string;
  at: number;
}

export type HistoryEvent =
  | GrantEvent
  | ReleaseEvent
  | LostEvent
  | ExpiredEvent
  | AcquireEvent
  | PendingEvent
  | WorkerEvent
  | FaultEvent
  | LeadEvent;

/** Parses JSON lines of events; blank lines are skipped, anything else must parse. */
export function parseHistory(text: string): HistoryEvent[] {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as HistoryEvent);
}
