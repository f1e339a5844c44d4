// Namespaces at the RPC edge. The engine knows only flat resource names; a
// resource `r` of namespace `team-a` is the engine resource `team-a@r`, and
// a resource of `default` keeps its plain name. '@' can occur in neither
// resource nor namespace names (validate/fields.ts), so no name of one
// namespace can ever reach another's. The one crossing is a parent named
// "NAMESPACE@NAME", which the admin service allows only when that parent
// lists the namespace in its children_from.
import type { ResourceSpec } from "../core/index.js";

/** The namespace of resources outside any namespace. */
export const defaultNamespace = "default";

/** Separates a namespace from a resource name in engine names. */
const separator = "@";

/** One namespace's view of the engine's resource names. */
export class Scope {
  private readonly prefix: string;

  constructor(readonly namespace: string) {
    this.prefix = namespace === defaultNamespace ? "" : namespace + separator;
  }

  /** The engine name of this namespace's resource `name`. */
  engineName(name: string): string {
    return this.prefix + name;
  }

  /** Whether an engine resource belongs to this namespace. */
  owns(engineName: string): boolean {
    return this.prefix === "" ? !engineName.includes(separator) : engineName.startsWith(this.prefix);
  }

  /** The name a client of this namespace knows an engine resource by. */
  publicName(engineName: string): string {
    return engineName.slice(this.prefix.length);
  }

  /** The engine name of a parent reference: a name of this namespace, or "NAMESPACE@NAME" of another. */
  engineRef(ref: string): string {
    const i = ref.indexOf(separator);
    if (i < 0) return this.engineName(ref);
    return ref.slice(0, i) === defaultNamespace ? ref.slice(i + 1) : ref;
  }

  /** How this namespace refers to an engine resource: its public name when its own, else "NAMESPACE@NAME". */
  publicRef(engineName: string): string {
    if (this.owns(engineName)) return this.publicName(engineName);
    return engineName.includes(separator) ? engineName : defaultNamespace + separator + engineName;
  }

  /** An engine spec with its names (the resource's and its parent's) as this namespace writes them. */
  publicSpec(spec: ResourceSpec): ResourceSpec {
    const out = { ...spec, name: this.publicName(spec.name) };
    if (spec.parent !== undefined) out.parent = this.publicRef(spec.parent);
    return out;
  }

  /** A spec as this namespace wrote it, with engine names. */
  engineSpec(spec: ResourceSpec): ResourceSpec {
    const out = { ...spec, name: this.engineName(spec.name) };
    if (spec.parent !== undefined) out.parent = this.engineRef(spec.parent);
    return out;
  }

  /** An engine message with this namespace's engine names made public. */
  publicMessage(message: string): string {
    return this.prefix === "" ? message : message.replaceAll(`'${this.prefix}`, "'");
  }
}

/** The namespace of an engine resource name. */
export function namespaceOf(engineName: string): string {
  const i = engineName.indexOf(separator);
  return i < 0 ? defaultNamespace : engineName.slice(0, i);
}

const scopes = new Map<string, Scope>();

/** The (cached) scope of a namespace. */
export function scopeOf(namespace: string): Scope {
  let scope = scopes.get(namespace);
  if (scope === undefined) {
    if (scopes.size > 10_000) scopes.clear();
    scope = new Scope(namespace);
    scopes.set(namespace, scope);
  }
  return scope;
}
