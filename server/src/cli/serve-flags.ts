// The `serve` flags for keys, TLS and per-client limits, and what they turn
// into. main.ts spreads them into its own flags.
import { readFileSync } from "node:fs";
import type { AuthOptions, SessionLimits, TlsFiles } from "../auth/index.js";
import { defaultSessionLimits } from "../auth/index.js";

export const securityFlags = {
  "root-key-file": { type: "string" },
  insecure: { type: "boolean", default: false },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-client-ca": { type: "string" },
  "max-sessions-per-key": { type: "string" },
  "max-queued-per-session": { type: "string" },
  "max-leases-per-session": { type: "string" },
} as const;

export const securityUsage = `

Keys and TLS:
  RATEQUEUE_ROOT_KEY     the root key (at least 32 characters); authentication is on
                         whenever a root key is configured
  --root-key-file FILE   read the root key from FILE instead
  --insecure             serve a non-loopback address without keys (loopback may always)
  --tls-cert FILE        PEM certificate chain: serve TLS (clients use https:// URLs)
  --tls-key FILE         PEM private key of --tls-cert
  --tls-client-ca FILE   also require client certificates signed by this CA

Per-client limits (beyond them: RESOURCE_EXHAUSTED):
  --max-sessions-per-key N     open Session streams per key (default ${defaultSessionLimits.maxSessionsPerKey})
  --max-queued-per-session N   waiting acquires per session (default ${defaultSessionLimits.maxQueuedPerSession})
  --max-leases-per-session N   leases held per session (default ${defaultSessionLimits.maxLeasesPerSession})

Keys (reach the server via RATEQUEUE_URL, authenticate with RATEQUEUE_API_KEY):
  ratequeue keys create --namespace N --role worker|admin|root [--description TEXT]
  ratequeue keys list [--namespace N]
  ratequeue keys revoke ID
  ratequeue namespaces create|delete NAME
  ratequeue namespaces list`;

export interface SecurityOptions {
  auth: AuthOptions;
  tls?: TlsFiles;
  limits: Partial<SessionLimits>;
}

/** The options the flags and RATEQUEUE_ROOT_KEY give, or a message naming the wrong flag. */
export function securityOptions(
  values: Record<string, string | boolean | undefined>,
  namespaces: string[],
  env: NodeJS.ProcessEnv = process.env,
): SecurityOptions | string {
  const str = (k: string) => values[k] as string | undefined;
  let rootKey = env.RATEQUEUE_ROOT_KEY === "" ? undefined : env.RATEQUEUE_ROOT_KEY;
  const file = str("root-key-file");
  if (file !== undefined) {
    try {
      rootKey = readFileSync(file, "utf8").trim();
    } catch (err) {
      return `--root-key-file: cannot read '${file}': ${(err as Error).message}`;
    }
  }
  const certFile = str("tls-cert");
  const keyFile = str("tls-key");
  const clientCaFile = str("tls-client-ca");
  if ((certFile === undefined) !== (keyFile === undefined)) return "--tls-cert and --tls-key: give both or neither";
  if (clientCaFile !== undefined && certFile === undefined) return "--tls-client-ca: needs --tls-cert and --tls-key";
  const limits: Partial<SessionLimits> = {};
  const positive = (flag: string, key: keyof SessionLimits): string | undefined => {
    const raw = str(flag);
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > 1_000_000) return `--${flag}: must be an integer from 1 to 1000000, got '${raw}'`;
    limits[key] = n;
    return undefined;
  };
  const wrong =
    positive("max-sessions-per-key", "maxSessionsPerKey") ??
    positive("max-queued-per-session", "maxQueuedPerSession") ??
    positive("max-leases-per-session", "maxLeasesPerSession");
  if (wrong !== undefined) return wrong;
  return {
    auth: { rootKey, insecure: values.insecure === true, namespaces },
    tls: certFile === undefined ? undefined : { certFile, keyFile: keyFile!, clientCaFile },
    limits,
  };
}
