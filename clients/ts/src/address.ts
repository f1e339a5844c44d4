/** One server address parsed from a ratequeue URL. */
export interface Target {
  /** host:port for grpc-js. */
  hostPort: string;
  tls: boolean;
}

/**
 * Parses a ratequeue URL: `http://host:7070`, `https://host:7070` (TLS), a
 * bare `host:port`, or a comma-separated list of these (a group of nodes).
 */
export function parseTargets(url: string): Target[] {
  const targets = url
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "")
    .map(parseTarget);
  if (targets.length === 0) throw new Error(`ratequeue url '${url}' names no address; write e.g. http://localhost:7070`);
  return targets;
}

function parseTarget(part: string): Target {
  const match = /^(?:(https?):\/\/)?([^/]+?)\/?$/.exec(part);
  if (match === null) throw new Error(`ratequeue url '${part}' is not http://host:port, https://host:port or host:port`);
  const tls = match[1] === "https";
  const host = match[2]!;
  const hasPort = /:\d+$/.test(host) && !/^\[[^\]]*\]$/.test(host);
  return { hostPort: hasPort ? host : `${host}:${tls ? 443 : 7070}`, tls };
}
