// Resource trees: a child under a parent, up to MAX_TREE_DEPTH levels. A
// resource's inFlight and backlog count its whole subtree, so an ancestor's
// concurrency cap and its scheduler see every descendant's leases and
// waiters; a child with waiters below it is one of its parent's flows
// (lane-scheduling.ts). The engine keeps these counts through the functions
// here and nowhere else.
import { joinFlows, leaveFlows, refreshFlow, resetVirtualTime } from "./lane-scheduling.js";
import type { Resource } from "./resource.js";

/** The root of r's tree (r itself for a lone resource). */
export function rootOf(r: Resource): Resource {
  let n = r;
  while (n.parent !== undefined) n = n.parent;
  return n;
}

/** The levels below r: 0 for a resource without children; keyed children count as one level. */
export function heightOf(r: Resource): number {
  let h = r.spec.perKey !== undefined ? 1 : 0;
  if (r.children !== undefined) for (const c of r.children) if (c.spec.keyed !== true) h = Math.max(h, 1 + heightOf(c));
  return h;
}

/** True when `a` is `r` or one of its ancestors. */
export function isAncestorOrSelf(a: Resource, r: Resource): boolean {
  for (let n: Resource | undefined = r; n !== undefined; n = n.parent) if (n === a) return true;
  return false;
}

/** Puts r (and its subtree's leases and waiters) under `parent`; `key`: what r's name has after "PARENT/", when the caller has it. */
export function attach(r: Resource, parent: Resource, key = keyOf(r, parent)): void {
  r.parent = parent;
  setDepth(r, parent.depth + 1);
  (parent.children ??= new Set()).add(r);
  if (key !== undefined) (parent.childrenByKey ??= new Map()).set(key, r);
  for (let a: Resource | undefined = parent; a !== undefined; a = a.parent) a.inFlight += r.inFlight;
  if (r.backlog > 0) {
    becameActive(r);
    addBacklogAbove(r, r.backlog);
  }
}

/** Takes r (and its subtree's leases and waiters) out from under its parent; it becomes a root. */
export function detach(r: Resource): void {
  const parent = r.parent;
  if (parent === undefined) return;
  if (r.backlog > 0) addBacklogAbove(r, -r.backlog);
  for (let a: Resource | undefined = parent; a !== undefined; a = a.parent) a.inFlight -= r.inFlight;
  parent.children?.delete(r);
  if (parent.active?.delete(r)) {
    leaveFlows(r, parent);
    refreshFlow(parent);
  }
  const key = keyOf(r, parent);
  if (key !== undefined && parent.childrenByKey?.get(key) === r) parent.childrenByKey.delete(key);
  r.parent = undefined;
  setDepth(r, 0);
}

/** The key r answers to under `parent`: what its name has after "PARENT/" (keyed children, and declared ones so named); else undefined. */
function keyOf(r: Resource, parent: Resource): string | undefined {
  const p = parent.name;
  return r.name.length > p.length + 1 && r.name.startsWith(p) && r.name[p.length] === "/" ? r.name.slice(p.length + 1) : undefined;
}

/** Counts `delta` waiters joining (or leaving) r's own queue, up the tree. */
export function addBacklog(r: Resource, delta: number): void {
  const was = r.backlog;
  r.backlog += delta;
  if (was === 0 && r.backlog > 0) becameActive(r);
  else if (was > 0 && r.backlog === 0) becameIdle(r);
  addBacklogAbove(r, delta);
}

/** Counts a lease held (+1) or ended (-1) on r, up the tree. */
export function addInFlight(r: Resource, delta: number): void {
  for (let n: Resource | undefined = r; n !== undefined; n = n.parent) n.inFlight += delta;
}

function addBacklogAbove(r: Resource, delta: number): void {
  for (let n = r.parent; n !== undefined; n = n.parent) {
    const was = n.backlog;
    n.backlog += delta;
    if (was === 0 && n.backlog > 0) becameActive(n);
    else if (was > 0 && n.backlog === 0) becameIdle(n);
  }
}

/**
 * r has waiters below it again: it joins its parent's flows. A child idle
 * since the parent's last reset starts at the parent's virtual time (no
 * banked credit); one that only paused keeps its debt.
 */
function becameActive(r: Resource): void {
  const p = r.parent;
  if (p === undefined) return;
  if (r.finishEpoch !== p.epoch) {
    r.finish = p.vtime;
    r.finishEpoch = p.epoch;
  } else if (r.finish < p.vtime) r.finish = p.vtime;
  const active = (p.active ??= new Set());
  if (active.has(r)) return;
  active.add(r);
  joinFlows(r, p);
  // The parent has a child with waiters now: it is no longer plain.
  refreshFlow(p);
}

function becameIdle(r: Resource): void {
  resetVirtualTime(r);
  const p = r.parent;
  if (p?.active?.delete(r)) {
    leaveFlows(r, p);
    refreshFlow(p);
  }
}

function setDepth(r: Resource, depth: number): void {
  r.depth = depth;
  if (r.children !== undefined) for (const c of r.children) setDepth(c, depth + 1);
}
