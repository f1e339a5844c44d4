// The gate of a group member: open only on the leader, and only until its
// leadership lease could have lapsed.
import { status } from "@grpc/grpc-js";
import { leaderMetadataKey } from "@ratequeue/proto";
import { RpcError } from "../errors.js";
import type { Gate } from "./gate.js";

/**
 * The gate of a node in a Redis group. Open only while this node leads and
 * its leadership lease cannot have lapsed: `lead(until)` opens it until
 * `until` (the renewal's send time + lease TTL - a safety margin, on this
 * node's clock), and every check compares the clock with that deadline, so
 * the node stops granting on time even when a timer fires late. The first
 * check past the deadline closes the gate and calls onLapse synchronously,
 * before the caller can grant anything.
 *
 * A closed gate answers UNAVAILABLE with the leader's address in the
 * `ratequeue-leader` trailer when it is known. Standbys do not proxy to the
 * leader: clients already follow the hint, so it costs one extra round trip
 * per reconnect instead of a hop on every call, and a proxy would hide the
 * leader's self-fencing (a proxied request could reach a node that has
 * stopped granting, or keep a standby in the path of a dead leader).
 */
export class LeaderGate implements Gate {
  private until = -Infinity;
  private reason = "this node is starting and does not know the leader yet; retry";
  private leader: string | undefined;
  private shutDown = false;

  constructor(
    private readonly now: () => number,
    /** Called once each time the deadline passes while the gate was open, with that deadline. */
    private readonly onLapse: (deadline: number) => void,
  ) {}

  /** Opens the gate until `until` (Infinity: until told otherwise). */
  lead(until: number): void {
    if (this.shutDown) return;
    this.until = until;
    this.leader = undefined;
  }

  /** Closes the gate; refusals name `leader` (host:port) when given. */
  follow(reason: string, leader?: string): void {
    this.until = -Infinity;
    if (this.shutDown) return;
    this.reason = reason;
    this.leader = leader;
  }

  /** Closes the gate for good (server shutdown). */
  close(reason: string): void {
    this.follow(reason);
    this.shutDown = true;
  }

  /**
   * Closes the gate if its deadline has passed (calling onLapse); true while
   * it stays open, i.e. while this node may grant.
   */
  checkDeadline(): boolean {
    if (this.until === -Infinity) return false;
    if (this.now() < this.until) return true;
    const deadline = this.until;
    this.until = -Infinity;
    this.reason = "this node stopped granting: its leadership lease could have lapsed; retry on another node";
    this.leader = undefined;
    this.onLapse(deadline);
    return false;
  }

  /** Until when this node may grant: -Infinity when closed (for Engine's grantDeadline). */
  deadline(): number {
    return this.until;
  }

  /** The leader's address as last known (undefined while electing). */
  leaderHint(): string | undefined {
    return this.leader;
  }

  refusal(): RpcError | undefined {
    if (this.checkDeadline()) return undefined;
    return new RpcError(status.UNAVAILABLE, this.reason, this.leader === undefined ? {} : { [leaderMetadataKey]: this.leader });
  }
}
