// `ratequeue keys ...` and `ratequeue namespaces ...`: the key and namespace
// RPCs from a shell. The server is RATEQUEUE_URL (default
// http://127.0.0.1:7070); the caller's key is RATEQUEUE_API_KEY; a private
// CA is --ca-file or RATEQUEUE_CA_FILE.
import { parseArgs } from "node:util";
import { RateQueueError, type ApiKeyRoleName } from "@ratequeue/client";
import { adminClientOf, connectionFlags } from "./connection-flags.js";
import { printTable } from "./output.js";

const usage = `Usage:
  ratequeue keys create --namespace N --role worker|admin|root [--description TEXT]
      prints the new key on stdout (shown only once)
  ratequeue keys list [--namespace N]
  ratequeue keys revoke ID
  ratequeue namespaces create NAME | delete NAME | list

Every command takes [--url URL] [--ca-file FILE]; defaults RATEQUEUE_URL and
RATEQUEUE_CA_FILE. The caller's key is RATEQUEUE_API_KEY.`;

/** Runs a keys/namespaces command; returns the exit code (0 ok, 1 refused, 2 usage). */
export async function runAdminCommand(command: "keys" | "namespaces", argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        namespace: { type: "string" },
        role: { type: "string" },
        description: { type: "string", default: "" },
        ...connectionFlags,
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    console.error(`ratequeue ${command}: ${(err as Error).message}\n\n${usage}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const [action, arg] = positionals;
  const admin = adminClientOf(values);
  const bad = (message: string) => {
    console.error(`ratequeue ${command} ${action ?? ""}: ${message}\n\n${usage}`);
    return 2;
  };
  try {
    if (command === "keys") {
      switch (action) {
        case "create": {
          if (values.namespace === undefined) return bad("--namespace is required");
          const role = values.role as ApiKeyRoleName | undefined;
          if (role !== "worker" && role !== "admin" && role !== "root") return bad("--role must be worker, admin or root");
          const { key, apiKey } = await admin.createApiKey({ namespace: values.namespace, role, description: values.description });
          console.error(`created key ${apiKey.id} (${apiKey.role} of namespace ${apiKey.namespace}); it is shown only once:`);
          console.log(key);
          return 0;
        }
        case "list": {
          const keys = await admin.listApiKeys(values.namespace);
          const rows = keys.map((k) => [k.id, k.namespace, k.role, k.createTime.toISOString(), k.description]);
          printTable(["ID", "NAMESPACE", "ROLE", "CREATED", "DESCRIPTION"], rows);
          return 0;
        }
        case "revoke": {
          if (arg === undefined) return bad("name the key's ID");
          await admin.revokeApiKey(arg);
          console.log(`revoked ${arg}`);
          return 0;
        }
        default:
          return bad(action === undefined ? "missing action" : `unknown action '${action}'`);
      }
    }
    switch (action) {
      case "create": {
        if (arg === undefined) return bad("name the namespace");
        const { created } = await admin.createNamespace(arg);
        console.log(created ? `created ${arg}` : `${arg} exists`);
        return 0;
      }
      case "delete": {
        if (arg === undefined) return bad("name the namespace");
        const { revokedKeys } = await admin.deleteNamespace(arg);
        console.log(`deleted ${arg}; revoked ${revokedKeys} keys`);
        return 0;
      }
      case "list":
        for (const name of await admin.listNamespaces()) console.log(name);
        return 0;
      default:
        return bad(action === undefined ? "missing action" : `unknown action '${action}'`);
    }
  } catch (err) {
    if (err instanceof RateQueueError) {
      console.error(`ratequeue ${command} ${action}: ${err.code}: ${err.message}`);
      return 1;
    }
    throw err;
  } finally {
    admin.close();
  }
}
