// GET /status: what the dashboard shows besides the AdminService's answers,
// as JSON. The node's role and Redis state, the open Session streams, and
// who the caller is (its key's role and namespace), authenticated like the
// admin calls: a root key (or no authentication) counts every namespace's
// sessions, any other key its own namespace's.
import type { Authenticator, Role } from "../auth/index.js";
import type { Page } from "./http-server.js";
import { authenticateRequest, HttpRefusal } from "./request-auth.js";

export interface StatusSources {
  auth: Authenticator;
  /** The namespace each open Session stream acts in. */
  sessionNamespaces(): Iterable<string>;
  /** This node may grant (a lone node: always, until it stops). */
  leader(): boolean;
  /** A group member that follows a leader and could take over. */
  standby(): boolean;
  /** The node reaches Redis; undefined without a group. */
  redisUp(): boolean | undefined;
}

/** The body of GET /status. */
export interface NodeStatus {
  /** "unavailable": a group member that neither leads nor follows a leader (starting, Redis lost, stopping). */
  role: "leader" | "standby" | "unavailable";
  /** "none": a lone node, without Redis. */
  redis: "up" | "down" | "none";
  /** Open Session streams the caller may see. */
  sessions: number;
  /** True when calls must carry an API key. */
  auth: boolean;
  /** The caller's key: "root" and "default" when authentication is off. */
  caller: { role: Role; namespace: string };
}

export function createStatusPage(sources: StatusSources): Page {
  const { auth } = sources;
  return async (req) => {
    let principal;
    try {
      principal = await authenticateRequest(auth, req);
    } catch (err) {
      if (!(err instanceof HttpRefusal)) throw err;
      return { status: err.status, type: "application/json", body: JSON.stringify({ code: err.code, message: err.message }) };
    }
    const all = principal.role === "root";
    let sessions = 0;
    for (const ns of sources.sessionNamespaces()) if (all || ns === principal.namespace) sessions++;
    const redis = sources.redisUp();
    const status: NodeStatus = {
      role: sources.leader() ? "leader" : sources.standby() ? "standby" : "unavailable",
      redis: redis === undefined ? "none" : redis ? "up" : "down",
      sessions,
      auth: auth.enabled,
      caller: { role: principal.role, namespace: principal.namespace },
    };
    return { type: "application/json", body: JSON.stringify(status) };
  };
}
