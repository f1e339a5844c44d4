import { status } from "@grpc/grpc-js";
import { RpcError } from "./rpc-error.js";

/**
 * Decides whether this node may take work now. A lone node is open until it
 * shuts down; in a group only the leader is open, and a closed gate names
 * the leader so clients can follow it.
 */
export interface Gate {
  /** Undefined when work may proceed; otherwise the error to answer with. */
  refusal(): RpcError | undefined;
}

/** Trailing metadata key that names the leader's address on UNAVAILABLE. */
export const leaderMetadataKey = "ratequeue-leader";

/** A gate that is open until closed (the embedded single-node default). */
export class OpenGate implements Gate {
  private closedWith: string | undefined;

  close(reason: string): void {
    this.closedWith = reason;
  }

  refusal(): RpcError | undefined {
    return this.closedWith === undefined ? undefined : new RpcError(status.UNAVAILABLE, this.closedWith);
  }
}
