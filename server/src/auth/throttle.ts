// Slows down repeated failed authentication per peer address. Only failures
// wait: a call with a valid key is never delayed, whoever else shares its
// address, and one peer's failures never delay another peer's.

export interface ThrottleOptions {
  /** Failures a peer may make before its failures are delayed. Default 5. */
  freeFailures?: number;
  /** First delay, doubled per further failure. Default 100 ms. */
  baseDelayMs?: number;
  /** Longest delay. Default 5000 ms. */
  maxDelayMs?: number;
  /** A peer's failure count halves every this long without failures. Default 10 s. */
  halfLifeMs?: number;
  /** Delayed failures held at once per peer; beyond it they are answered at once. Default 32. */
  maxPendingPerPeer?: number;
  /** Peers remembered; the stalest are forgotten beyond it. Default 10 000. */
  maxPeers?: number;
}

interface PeerState {
  failures: number;
  at: number;
  pending: number;
}

export class FailureThrottle {
  private readonly peers = new Map<string, PeerState>();
  private readonly o: Required<ThrottleOptions>;

  constructor(
    options: ThrottleOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.o = {
      freeFailures: 5,
      baseDelayMs: 100,
      maxDelayMs: 5000,
      halfLifeMs: 10_000,
      maxPendingPerPeer: 32,
      maxPeers: 10_000,
      ...options,
    };
  }

  /**
   * Records a failure of `peer` and returns how long to wait before
   * answering it (0: at once).
   */
  failed(peer: string): number {
    const now = this.now();
    let s = this.peers.get(peer);
    if (s === undefined) {
      if (this.peers.size >= this.o.maxPeers) this.forgetStalest();
      s = { failures: 0, at: now, pending: 0 };
    } else {
      this.peers.delete(peer); // Re-inserted below: the map stays in recency order.
    }
    s.failures = s.failures * 0.5 ** ((now - s.at) / this.o.halfLifeMs) + 1;
    s.at = now;
    this.peers.set(peer, s);
    const over = s.failures - this.o.freeFailures;
    if (over <= 0 || s.pending >= this.o.maxPendingPerPeer) return 0;
    return Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** Math.min(30, Math.ceil(over) - 1));
  }

  /** Delays a failure's answer by what failed() returned. */
  async delay(peer: string, ms: number): Promise<void> {
    if (ms <= 0) return;
    const s = this.peers.get(peer);
    if (s) s.pending++;
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (s) s.pending--;
  }

  private forgetStalest(): void {
    let n = Math.ceil(this.o.maxPeers / 10);
    for (const [peer, s] of this.peers) {
      if (s.pending > 0) continue;
      this.peers.delete(peer);
      if (--n === 0) break;
    }
  }

  get size(): number {
    return this.peers.size;
  }
}

/** The address part of a grpc-js peer ("ipv4:1.2.3.4:5678" → "1.2.3.4"). */
export function peerAddress(peer: string): string {
  const m = /^(?:ipv[46]:)?(\[[^\]]*\]|[^:]+(?::[^:]+)*?)(?::\d+)?$/.exec(peer);
  return m?.[1] ?? peer;
}
