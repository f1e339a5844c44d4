// The flags every client command takes to reach the server: --url and
// --ca-file, with RATEQUEUE_URL and RATEQUEUE_CA_FILE as defaults. The key
// is RATEQUEUE_API_KEY, never a flag (flags show up in `ps`).
import { createAdminClient, type AdminClient } from "@ratequeue/client";

export const connectionFlags = {
  url: { type: "string" },
  "ca-file": { type: "string" },
} as const;

/** An admin client for the flags' server; `namespace` is sent as ratequeue-namespace metadata. */
export function adminClientOf(values: { url?: string; "ca-file"?: string }, namespace?: string): AdminClient {
  const caFile = values["ca-file"] ?? process.env.RATEQUEUE_CA_FILE;
  return createAdminClient({ url: values.url, caFile: caFile === "" ? undefined : caFile, namespace });
}
