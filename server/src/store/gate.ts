// Whether this node may take work: a lone node's OpenGate, or a group
// member's LeaderGate (leader-gate.ts).
import { status } from "@grpc/grpc-js";
import { RpcError } from "../errors.js";

/**
 * Decides whether this node may take work now. A lone node is open until it
 * shuts down; in a group only the leader is open, and a closed gate names
 * the leader so clients can follow it.
 *
 * The RPC handlers call refusal() before each call that reaches the engine
 * and answer with the error it returns. It is synchronous: a gate whose
 * deadline has passed closes inside the call, before the caller can grant.
 */
export interface Gate {
  /** Undefined when work may proceed; otherwise the error to answer with. */
  refusal(): RpcError | undefined;
}

/** A gate that is open until closed (the embedded single-node default). */
export class OpenGate implements Gate {
  private closedWith: string | undefined;

  /** Closes the gate for good (server shutdown). */
  close(reason: string): void {
    this.closedWith = reason;
  }

  refusal(): RpcError | undefined {
    return this.closedWith === undefined ? undefined : new RpcError(status.UNAVAILABLE, this.closedWith);
  }
}
