// The dashboard's editor speaks the config file's shape, in YAML or JSON.
// These two calls convert between that text and the AdminService's Resource
// with the server's own config code, so the page has no parser of its own
// and reads exactly what `ratequeue resources apply -f` reads. They touch no
// state; the change itself goes through PutResource with the caller's key.
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { ResourceSchema } from "@ratequeue/proto";
import { ConfigError, resourceFromConfigText, resourceToConfig, toConfigYaml } from "../../config.js";
import { RpcError } from "../../errors.js";
import { resourceFromProto } from "../../validate/requests.js";
import { HttpError, type JsonAction } from "../http-server.js";

export const configActions: Record<string, JsonAction> = {
  /** `{ name, text }` → `{ resource }`: the definition as PutResource's message (proto JSON). */
  "/dashboard/resource-from-config": (body) => {
    const { name, text } = fields(body, ["name", "text"]);
    return { resource: toJson(ResourceSchema, refusingBadInput(() => resourceFromConfigText(name, text))) };
  },
  /** A Resource (proto JSON) → `{ text }`: its definition as the config file writes it, every default spelled out. */
  "/dashboard/config-from-resource": (body) => {
    let resource;
    try {
      resource = fromJson(ResourceSchema, body as JsonValue);
    } catch (err) {
      throw new HttpError(400, "invalid_argument", `not a Resource: ${(err as Error).message}`);
    }
    const spec = refusingBadInput(() => resourceFromProto(resource));
    return { text: toConfigYaml(resourceToConfig(spec)) };
  },
};

function fields<K extends string>(body: unknown, keys: K[]): Record<K, string> {
  const record = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  for (const key of keys) {
    if (typeof record[key] !== "string") throw new HttpError(400, "invalid_argument", `${key}: must be a string`);
  }
  return record as Record<K, string>;
}

/** Config and validation errors say what to fix: they answer 400 with their message. */
function refusingBadInput<T>(convert: () => T): T {
  try {
    return convert();
  } catch (err) {
    if (err instanceof ConfigError || err instanceof RpcError) throw new HttpError(400, "invalid_argument", err.message);
    throw err;
  }
}
