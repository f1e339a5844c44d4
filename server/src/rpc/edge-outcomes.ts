// Acquires the edge answers before the engine judges them: those that name
// no resource the engine knows, break a field's rule, or exceed a client's
// limits. Counted per namespace for ratequeue_acquires_total (the engine
// counts the outcomes of its own resources); only failure paths count here.
import { status } from "@grpc/grpc-js";

/** The results of ratequeue_acquires_total that the edge decides. */
export type EdgeResult = "not_found" | "invalid" | "rejected";

export class EdgeOutcomes {
  private readonly counts = new Map<string, number>();

  /** Counts a failed acquire of `namespace` by its status, when it is one the edge decides. */
  failed(namespace: string, code: status): void {
    const result: EdgeResult | undefined =
      code === status.NOT_FOUND ? "not_found" : code === status.INVALID_ARGUMENT ? "invalid" : code === status.RESOURCE_EXHAUSTED ? "rejected" : undefined;
    if (result === undefined) return;
    const key = `${namespace}\u0000${result}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Every count: namespace, result, value. */
  entries(): { namespace: string; result: EdgeResult; value: number }[] {
    return [...this.counts].map(([key, value]) => {
      const [namespace, result] = key.split("\u0000") as [string, EdgeResult];
      return { namespace, result, value };
    });
  }
}
