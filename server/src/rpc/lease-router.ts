/** An open session that can tell its worker that a lease expired. */
export interface LeaseHolder {
  notifyExpired(leaseId: string, resource: string): void;
}

/**
 * Remembers which open session last held each lease, so a lease-expired
 * notice reaches the worker that can act on it. A reconnecting worker takes
 * its leases over by heartbeating them on its new session.
 */
export class LeaseRouter {
  private readonly holders = new Map<string, LeaseHolder>();

  attach(leaseId: string, holder: LeaseHolder): void {
    this.holders.set(leaseId, holder);
  }

  /** Forgets a lease (released) if `holder` still holds it. */
  detach(leaseId: string, holder?: LeaseHolder): void {
    if (holder === undefined || this.holders.get(leaseId) === holder) this.holders.delete(leaseId);
  }

  /** Routes an expiry to its holder, if any, and forgets the lease. */
  expired(leaseId: string, resource: string): void {
    const holder = this.holders.get(leaseId);
    if (holder === undefined) return;
    this.holders.delete(leaseId);
    holder.notifyExpired(leaseId, resource);
  }
}
