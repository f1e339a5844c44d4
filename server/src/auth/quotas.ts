/**
 * What one client may hold, so that no client can grow the server's memory
 * without bound. Beyond a limit the request fails with RESOURCE_EXHAUSTED.
 */
export interface SessionLimits {
  /** Open Session streams per API key (per server when authentication is off). */
  maxSessionsPerKey: number;
  /** Acquires waiting at once on one Session stream; also unary Acquires waiting at once per key. */
  maxQueuedPerSession: number;
  /** Leases one Session stream holds at once. */
  maxLeasesPerSession: number;
}

export const defaultSessionLimits: SessionLimits = {
  maxSessionsPerKey: 1000,
  maxQueuedPerSession: 10_000,
  maxLeasesPerSession: 10_000,
};

/** Counts per key, for the limits above. */
export class Counter {
  private readonly counts = new Map<string, number>();

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  add(key: string, delta: number): void {
    const n = this.get(key) + delta;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }
}
