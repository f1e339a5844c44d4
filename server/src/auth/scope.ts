// Namespaces at the RPC edge. The engine knows only flat resource names; a
// resource `r` of namespace `team-a` is the engine resource `team-a@r`, and
// a resource of `default` keeps its plain name. '@' can occur in neither
// resource nor namespace names (validate/fields.ts), so no name of one
// namespace can ever reach another's.

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
