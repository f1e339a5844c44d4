// `ratequeue resources ...`: declare and inspect resources from a shell.
// Resources go in and come out in the config file's shape: `apply -f` reads
// a file with the server's own loadConfig, and `get -o yaml` writes one that
// `apply -f` takes back. The server, CA and key come as for `ratequeue keys`.
// Both directions go through the server's own config code (loadConfig,
// resourceToConfig), so this speaks the protobuf messages (`admin.raw`).
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { durationMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { RateQueueError, type AdminClient } from "@ratequeue/client";
import { ResourceSchema, type Resource, type ResourceStats } from "@ratequeue/proto";
import { defaultNamespace, scopeOf } from "../auth/scope.js";
import { ConfigError, formatDuration, loadConfig, resourceToConfig, type Config, type ConfigResource } from "../config.js";
import type { LimitSpec, ResourceSpec } from "../core/index.js";
import { resourceToProto } from "../rpc/convert.js";
import { resourceFromProto } from "../validate/requests.js";
import { adminClientOf, connectionFlags } from "./connection-flags.js";
import { outputFormatOf, printData, printTable, type OutputFormat } from "./output.js";

export const resourcesUsage = `Usage:
  ratequeue resources apply -f FILE [--prune] [--dry-run]
      creates or changes every resource FILE declares (the config file's format),
      printing per resource: create, change (the fields that differ), unchanged
      --prune     also deletes the namespace's resources FILE does not declare
      --dry-run   prints the same lines and changes nothing
  ratequeue resources list [--parent NAME] [-o json|yaml]
      the declared resources; with --parent, NAME's children, keyed ones included
  ratequeue resources get NAME [-o json|yaml]     in the config file's shape
  ratequeue resources stats NAME [--children N] [-o json|yaml]
      with the N busiest children of a parent (default 20)
  ratequeue resources delete NAME

Every command takes [--url URL] [--ca-file FILE] [--namespace N]; defaults
RATEQUEUE_URL and RATEQUEUE_CA_FILE. The caller's key is RATEQUEUE_API_KEY.
A command acts in the key's namespace; a root key picks one with --namespace.
A FILE that declares namespaces needs --namespace: apply takes that
namespace's resources from it (its top-level resources are 'default').`;

/** Runs a resources command; returns the exit code (0 ok, 1 refused, 2 usage). */
export async function runResourceCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        file: { type: "string", short: "f" },
        prune: { type: "boolean", default: false },
        "dry-run": { type: "boolean", default: false },
        output: { type: "string", short: "o" },
        namespace: { type: "string" },
        parent: { type: "string" },
        children: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
        ...connectionFlags,
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    console.error(`ratequeue resources: ${(err as Error).message}\n\n${resourcesUsage}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(resourcesUsage);
    return 0;
  }
  const [action, name, ...extra] = positionals;
  const bad = (message: string) => {
    console.error(`ratequeue resources ${action ?? ""}: ${message}\n\n${resourcesUsage}`);
    return 2;
  };
  const format = outputFormatOf(values.output);
  if (typeof format === "object") return bad(format.error);
  if (extra.length > 0) return bad(`unexpected '${extra.join(" ")}'`);
  const needsName = action === "get" || action === "stats" || action === "delete";
  if (needsName && name === undefined) return bad("name the resource");
  if (!needsName && name !== undefined) return bad(`unexpected '${name}'`);
  if (action === "apply" && values.file === undefined) return bad("-f FILE is required");
  if (action !== "apply" && (values.file !== undefined || values.prune || values["dry-run"])) return bad("-f, --prune and --dry-run belong to apply");
  if ((action === "apply" || action === "delete") && values.output !== undefined) return bad("-o belongs to list, get and stats");
  if (action !== "list" && values.parent !== undefined) return bad("--parent belongs to list");
  if (action !== "stats" && values.children !== undefined) return bad("--children belongs to stats");
  const childrenLimit = values.children === undefined ? undefined : Number(values.children);
  if (childrenLimit !== undefined && !(Number.isInteger(childrenLimit) && childrenLimit >= 1 && childrenLimit <= 1000)) {
    return bad(`--children: must be an integer from 1 to 1000, got '${values.children}'`);
  }

  let admin: AdminClient | undefined;
  try {
    admin = adminClientOf(values, values.namespace);
    switch (action) {
      case "apply":
        return await apply(admin, values.file!, values.namespace, { prune: values.prune, dryRun: values["dry-run"] });
      case "list":
        printResources(values.parent === undefined ? await admin.raw.listResources() : await childrenOf(admin, values.parent), format);
        return 0;
      case "get":
        printResources([await admin.raw.getResource(name!)], format === "table" ? "yaml" : format);
        return 0;
      case "stats":
        printStats(await admin.raw.getResourceStats(name!, childrenLimit === undefined ? {} : { childrenLimit }), format);
        return 0;
      case "delete":
        await admin.deleteResource(name!);
        console.log(`deleted ${name}`);
        return 0;
      default:
        return bad(action === undefined ? "missing action" : `unknown action '${action}'`);
    }
  } catch (err) {
    if (err instanceof RateQueueError) {
      console.error(`ratequeue resources ${action}: ${err.code}: ${err.message}`);
      return 1;
    }
    // A config file the server would refuse, or a CA file that cannot be read.
    if (err instanceof ConfigError || (err instanceof Error && "syscall" in err)) {
      console.error(`ratequeue resources ${action}: ${(err as Error).message}`);
      return 1;
    }
    throw err;
  } finally {
    admin?.close();
    // The caller exits at once: what is still queued for a pipe (apply prints a thousand lines at a time) must leave first.
    await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  }
}

/** Every child of `parent`, page after page. */
async function childrenOf(admin: AdminClient, parent: string): Promise<Resource[]> {
  const out: Resource[] = [];
  let pageToken = "";
  do {
    const page = await admin.raw.listResources({ parent, pageSize: 1000, pageToken });
    out.push(...page.resources);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return out;
}

/** One step of an apply, in the order it is taken. */
type Step =
  | { kind: "create"; spec: ResourceSpec }
  | { kind: "change"; spec: ResourceSpec; fields: string[] }
  | { kind: "unchanged"; spec: ResourceSpec }
  | { kind: "delete"; name: string };

async function apply(admin: AdminClient, file: string, namespace: string | undefined, options: { prune: boolean; dryRun: boolean }): Promise<number> {
  const wanted = resourcesToApply(loadConfig(file, { parentsAsWritten: true }), file, namespace);
  if (typeof wanted === "string") {
    console.error(`ratequeue resources apply: ${wanted}`);
    return 1;
  }
  // The server answers with every default filled in, as loadConfig does; resourceFromProto makes both specs.
  const current = new Map((await allResources(admin)).map((r) => [r.name, resourceFromProto(r)]));
  const steps: Step[] = wanted.map((spec) => {
    const existing = current.get(spec.name);
    if (existing === undefined) return { kind: "create", spec };
    const fields = changedFields(existing, spec);
    return fields.length === 0 ? { kind: "unchanged", spec } : { kind: "change", spec, fields };
  });
  if (options.prune) {
    const declared = new Set(wanted.map((s) => s.name));
    // Children before their parents: a resource with children cannot be deleted.
    const depth = (name: string): number => {
      const parent = current.get(name)?.parent;
      return parent === undefined || !current.has(parent) ? 0 : 1 + depth(parent);
    };
    const gone = [...current.keys()].filter((name) => !declared.has(name));
    for (const name of gone.sort((a, b) => depth(b) - depth(a))) steps.push({ kind: "delete", name });
  }
  // Lines are printed once done, so that after a refusal they say what did change.
  let batch = new PutBatch();
  for (const step of steps) {
    if (step.kind === "delete") {
      await batch.send(admin, options.dryRun);
      if (!options.dryRun) await admin.deleteResource(step.name);
      console.log(stepLine(step));
      continue;
    }
    if (!batch.add(step)) {
      await batch.send(admin, options.dryRun);
      batch = new PutBatch();
      batch.add(step);
    }
  }
  await batch.send(admin, options.dryRun);
  if (options.dryRun) console.error("dry run: nothing was changed");
  return 0;
}

/** The most resources, and encoded bytes, apply puts in one PutResources call: well inside the server's limits (10,000, and 1 MiB a message). */
const batchResources = 1000;
const batchBytes = 512 * 1024;

/** Steps of an apply sent together: their puts in one PutResources call, then their lines. */
class PutBatch {
  private readonly steps: Step[] = [];
  private readonly puts: ResourceSpec[] = [];
  private bytes = 0;

  /** Takes a create, change or unchanged step; false when the batch is full (the step is not taken). */
  add(step: Step): boolean {
    if (step.kind !== "create" && step.kind !== "change") {
      this.steps.push(step);
      return true;
    }
    const size = encodedSizeBound(step.spec);
    if (this.puts.length > 0 && (this.puts.length === batchResources || this.bytes + size > batchBytes)) return false;
    this.steps.push(step);
    this.puts.push(step.spec);
    this.bytes += size;
    return true;
  }

  /** Puts the batch's resources and prints its lines (only prints them on a dry run); empties the batch. */
  async send(admin: AdminClient, dryRun: boolean): Promise<void> {
    const steps = this.steps.splice(0);
    const puts = this.puts.splice(0);
    this.bytes = 0;
    if (!dryRun && puts.length > 0) {
      try {
        await admin.raw.putResources(puts.map(resourceToProto));
      } catch (err) {
        if (!(err instanceof RateQueueError)) throw err;
        // Refused somewhere in the batch: put its resources one at a time, so that the lines say
        // what did change and the error is PutResource's own (putting one again changes nothing).
        for (const step of steps) {
          if (step.kind === "create" || step.kind === "change") await admin.raw.putResource(resourceToProto(step.spec));
          console.log(stepLine(step));
        }
        return;
      }
    }
    if (steps.length > 0) process.stdout.write(steps.map((step) => stepLine(step) + "\n").join(""));
  }
}

/** More than a resource's encoded size can be: every character at 3 bytes, every number and duration at its longest. */
function encodedSizeBound(s: ResourceSpec): number {
  const text = (t: string | undefined) => (t === undefined ? 0 : 4 + 3 * t.length);
  const limits = (ls: LimitSpec[]) => ls.reduce((n, l) => n + 64 + text(l.unit), 0);
  let n = 160 + text(s.name) + text(s.defaultLane) + text(s.parent) + limits(s.limits) + (s.perKey === undefined ? 0 : 40 + limits(s.perKey.limits));
  for (const l of s.lanes) n += 20 + text(l.name);
  for (const ns of s.childrenFrom ?? []) n += text(ns);
  return n;
}

/** Every resource of the namespace, page after page (a namespace of many resources does not fit one message). */
async function allResources(admin: AdminClient): Promise<Resource[]> {
  const out: Resource[] = [];
  let pageToken = "";
  do {
    const page = await admin.raw.listResources({ pageSize: 1000, pageToken });
    out.push(...page.resources);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return out;
}

function stepLine(step: Step): string {
  switch (step.kind) {
    case "create":
      return `create ${step.spec.name}`;
    case "change":
      return `change ${step.spec.name}: ${step.fields.join("; ")}`;
    case "unchanged":
      return `unchanged ${step.spec.name}`;
    case "delete":
      return `delete ${step.name}`;
  }
}

/**
 * The resources of a file to apply, named as the namespace acted in knows
 * them; or a message saying why none can be chosen. A file without
 * namespaces goes whole to the namespace acted in. A file with namespaces
 * (a server's config) is applied one namespace at a time, named explicitly,
 * since its top-level resources belong to 'default' and not to the key's.
 */
function resourcesToApply(config: Config, file: string, namespace: string | undefined): ResourceSpec[] | string {
  if (config.namespaces.length === 0) return config.resources;
  const hasDefault = config.resources.some((r) => scopeOf(defaultNamespace).owns(r.name));
  const declared = [...(hasDefault ? [defaultNamespace] : []), ...config.namespaces];
  if (namespace === undefined) return `${file}: declares namespaces (${declared.join(", ")}); choose the one to apply with --namespace`;
  if (!declared.includes(namespace)) return `${file}: declares no resources of namespace '${namespace}' (only of ${declared.join(", ")})`;
  const scope = scopeOf(namespace);
  return config.resources.filter((r) => scope.owns(r.name)).map((r) => scope.publicSpec(r));
}

/** The config keys whose values differ, each as "key old -> new". */
function changedFields(from: ResourceSpec, to: ResourceSpec): string[] {
  const before = resourceToConfig(from);
  const after = resourceToConfig(to);
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]) as Set<keyof ConfigResource>;
  return [...keys]
    .filter((key) => JSON.stringify(before[key]) !== JSON.stringify(after[key]))
    .map((key) => `${key} ${showField(before, key)} -> ${showField(after, key)}`);
}

function showField(resource: ConfigResource, key: keyof ConfigResource): string {
  if (key === "limits") return resource.limits.length === 0 ? "none" : resource.limits.map(showLimit).join(", ");
  if (key === "lanes") return showLanes(resource.lanes);
  const value = resource[key];
  if (value === undefined) return "none";
  if (key === "per_key") {
    const t = resource.per_key!;
    return `{ limits ${t.limits.length === 0 ? "none" : t.limits.map(showLimit).join(", ")}, concurrency ${t.concurrency}, share ${t.share} }`;
  }
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function showLimit(l: ConfigResource["limits"][number]): string {
  return `${l.amount} ${l.dimension}/${l.period} burst ${l.burst}`;
}

function showLanes(lanes: Record<string, number>): string {
  return Object.entries(lanes)
    .map(([lane, weight]) => `${lane}=${weight}`)
    .join(" ");
}

/** The server's resources as a config file (`resources: {name: ...}`), or a table. */
function printResources(resources: Resource[], format: OutputFormat): void {
  const specs = resources.map(resourceFromProto);
  if (format !== "table") {
    printData({ resources: Object.fromEntries(specs.map((s) => [s.name, resourceToConfig(s)])) }, format);
    return;
  }
  const rows = specs.map((spec) => {
    const c = resourceToConfig(spec);
    return [
      spec.name,
      spec.parent ?? "-",
      c.limits.length === 0 ? "-" : c.limits.map(showLimit).join(", "),
      c.concurrency === 0 ? "-" : String(c.concurrency),
      showLanes(c.lanes),
      c.lease_ttl,
      String(c.max_queue),
    ];
  });
  printTable(["NAME", "PARENT", "LIMITS", "CONCURRENCY", "LANES", "LEASE_TTL", "MAX_QUEUE"], rows);
}

/** A resource's stats with the proto's field names, counters as numbers and durations written like `12ms`. */
function statsToData(stats: ResourceStats) {
  const wait = (d: ResourceStats["waitP50"]) => formatDuration(d === undefined ? 0 : durationMs(d));
  // The limits in the config file's shape, through the same conversion as a resource's.
  const { limits } = resourceToConfig(resourceFromProto(create(ResourceSchema, { name: stats.name, limits: stats.limits.map((l) => l.limit!) })));
  return {
    name: stats.name,
    leases_in_flight: stats.leasesInFlight,
    grants: Number(stats.grants),
    rejections: Number(stats.rejections),
    timeouts: Number(stats.timeouts),
    cancellations: Number(stats.cancellations),
    expirations: Number(stats.expirations),
    wait_p50: wait(stats.waitP50),
    wait_p90: wait(stats.waitP90),
    wait_p99: wait(stats.waitP99),
    wait_max: wait(stats.waitMax),
    throttles: Number(stats.throttles),
    paused_until: stats.pausedUntil === undefined ? null : timestampDate(stats.pausedUntil).toISOString(),
    limits: limits.map((limit, i) => ({
      ...limit,
      // What provider feedback taught, when lower than the configured amount: the limit admits at this rate.
      learned_amount: stats.limits[i]!.learnedAmount ?? null,
      used_last_period: stats.limits[i]!.usedLastPeriod,
      utilisation: stats.limits[i]!.utilisation,
      available: stats.limits[i]!.available,
    })),
    lanes: stats.lanes.map((l) => ({
      name: l.name,
      weight: l.weight,
      queue_depth: l.queueDepth,
      grants: Number(l.grants),
      load_granted: l.loadGranted,
    })),
    children_count: stats.childrenCount,
    children: stats.children.map((c) => ({
      name: c.name,
      share: c.share,
      keyed: c.keyed,
      leases_in_flight: c.leasesInFlight,
      queue_depth: c.queueDepth,
      grants: Number(c.grants),
      load_granted: c.loadGranted,
    })),
    parent:
      stats.parent === undefined
        ? null
        : {
            name: stats.parent.name,
            leases_in_flight: stats.parent.leasesInFlight,
            queue_depth: stats.parent.queueDepth,
            limits: stats.parent.limits.map((l) => ({ utilisation: l.utilisation, available: l.available, used_last_period: l.usedLastPeriod })),
          },
  };
}

function printStats(stats: ResourceStats, format: OutputFormat): void {
  const data = statsToData(stats);
  if (format !== "table") {
    printData(data, format);
    return;
  }
  const queued = data.lanes.reduce((sum, l) => sum + l.queue_depth, 0);
  printTable(
    ["RESOURCE", "LEASES", "QUEUED", "GRANTS", "REJECTIONS", "TIMEOUTS", "CANCELLATIONS", "EXPIRATIONS", "WAIT_P50", "WAIT_P90", "WAIT_P99", "WAIT_MAX"],
    [
      [
        data.name,
        String(data.leases_in_flight),
        String(queued),
        String(data.grants),
        String(data.rejections),
        String(data.timeouts),
        String(data.cancellations),
        String(data.expirations),
        data.wait_p50,
        data.wait_p90,
        data.wait_p99,
        data.wait_max,
      ],
    ],
  );
  if (data.paused_until !== null || data.throttles > 0) {
    console.log("");
    const paused = data.paused_until === null ? "not paused" : `paused until ${data.paused_until}`;
    console.log(`provider: ${paused}; ${data.throttles} calls refused (throttled feedback)`);
  }
  if (data.limits.length > 0) {
    console.log("");
    printTable(
      ["LIMIT", "LEARNED", "USED_LAST_PERIOD", "BURST_IN_USE", "AVAILABLE"],
      data.limits.map((l) => [
        showLimit(l),
        l.learned_amount === null ? "-" : String(Math.round(l.learned_amount * 1000) / 1000),
        `${Math.round(l.used_last_period * 10) / 10} (${Math.round(Math.min(1, l.used_last_period / (l.learned_amount ?? l.amount)) * 100)}%)`,
        `${Math.round(l.utilisation * 100)}%`,
        String(Math.floor(l.available)),
      ]),
    );
  }
  console.log("");
  printTable(
    ["LANE", "WEIGHT", "QUEUED", "GRANTS", "LOAD_GRANTED"],
    data.lanes.map((l) => [l.name, String(l.weight), String(l.queue_depth), String(l.grants), String(l.load_granted)]),
  );
  if (data.parent !== null) {
    const p = data.parent;
    const use = p.limits.map((l) => `${Math.round(l.utilisation * 100)}%`).join(", ");
    console.log(`\nparent ${p.name}: ${p.leases_in_flight} leases, ${p.queue_depth} queued${use === "" ? "" : `, burst in use ${use}`}`);
  }
  if (data.children_count > 0) {
    console.log(`\n${data.children_count} children${data.children.length < data.children_count ? `, the ${data.children.length} busiest:` : ":"}`);
    printTable(
      ["CHILD", "SHARE", "KEYED", "LEASES", "QUEUED", "GRANTS", "LOAD_GRANTED"],
      data.children.map((c) => [c.name, String(c.share), c.keyed ? "yes" : "-", String(c.leases_in_flight), String(c.queue_depth), String(c.grants), String(c.load_granted)]),
    );
  }
}
