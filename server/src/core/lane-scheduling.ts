// Which waiter a resource serves next: weighted fair queuing over load
// between its flows, its lanes (by weight) and its children with waiters
// below them (by share, tree.ts). Each flow's finish tag counts its grants in
// cost / weight; the resource's system virtual time is the start tag of the
// grant in service. The next grant goes to the flow whose head would finish
// first. Inside a lane, the queue orders by priority, then arrival
// (resource.ts).
import { hasRoom, readyAt } from "./admission.js";
import type { Lane, Resource, Waiter } from "./resource.js";
import type { Millis } from "./types.js";

/**
 * The smallest virtual cost of a grant, so 0-load requests still advance
 * their lane's finish tag and weights still share them out.
 */
export const MIN_VIRTUAL_COST = 1e-6;

function virtualCost(weight: number, load: number): number {
  return Math.max(load, MIN_VIRTUAL_COST) / weight;
}

/** Where selectNext records the earliest time a blocked choice may fit (Infinity: only a release can help). */
export interface Wake {
  at: Millis;
}

/**
 * The waiter r's subtree serves next, when r and every level below it on
 * the way admit it now; else undefined, with `wake.at` lowered to when a
 * blocked choice may fit.
 *
 * At each level the flow whose head would finish first is chosen. A child
 * whose own limits (or its descendants') hold it back is passed over, so
 * the next child may go: no head-of-line blocking across children. When
 * r's own limits hold back the chosen flow's head, nothing is chosen: the
 * head is served strictly, whatever flow it came from.
 */
export function selectNext(r: Resource, now: Millis, wake: Wake): Waiter | undefined {
  if (!hasRoom(r, now)) {
    // Unknown leases of a previous leader block until they have certainly expired.
    if (r.unknownAt(now) > 0 && r.unknown!.until < wake.at) wake.at = r.unknown!.until;
    return undefined;
  }
  let best: Waiter | undefined;
  let bestKey = Infinity;
  const lanes = r.lanes;
  if (lanes !== undefined && r.waiting > 0) {
    for (let i = 0; i < lanes.length; i++) {
      const l = lanes[i] as Lane;
      const head = l.queue.peek();
      if (head === undefined) continue;
      const key = l.finish + virtualCost(l.weight, head.load);
      if (best === undefined || key < bestKey) {
        best = head;
        bestKey = key;
      }
    }
  }
  if (r.active !== undefined) {
    for (const c of r.active) {
      const w = selectNext(c, now, wake);
      if (w === undefined) continue;
      const key = c.finish + virtualCost(c.spec.share ?? 1, w.load);
      if (best === undefined || key < bestKey) {
        best = w;
        bestKey = key;
      }
    }
  }
  if (best === undefined) return undefined;
  const at = readyAt(r, best.load, now);
  if (at > now) {
    if (at < wake.at) wake.at = at;
    return undefined;
  }
  return best;
}

/** The lane to serve next: smallest finish + cost / weight among non-empty lanes (ties: lane order); r has waiters. */
export function chooseLane(r: Resource): Lane {
  const lanes = r.lanes as Lane[];
  if (lanes.length === 1) return lanes[0] as Lane;
  let best: Lane | undefined;
  let bestKey = Infinity;
  for (let i = 0; i < lanes.length; i++) {
    const l = lanes[i] as Lane;
    const head = l.queue.peek();
    if (head === undefined) continue;
    const key = l.finish + virtualCost(l.weight, head.load);
    if (best === undefined || key < bestKey) {
      best = l;
      bestKey = key;
    }
  }
  return best as Lane;
}

/** Queues `w` in `lane`. A lane that was idle starts at the system virtual time: no banked credit. */
export function joinLane(r: Resource, lane: Lane, w: Waiter): void {
  if (lane.queue.size === 0 && lane.finish < r.vtime) lane.finish = r.vtime;
  w.lane = lane;
  lane.queue.push(w);
}

/**
 * Advances the tags for a grant of `load` to waiter `w`: its lane's at its
 * resource, then each ancestor's tag of the child it came through.
 */
export function chargeFlows(w: Waiter): void {
  const r = w.res;
  const lane = w.lane;
  if (lane.finish > r.vtime) r.vtime = lane.finish;
  lane.finish += virtualCost(lane.weight, w.load);
  for (let c = r; c.parent !== undefined; c = c.parent) {
    const p = c.parent;
    if (c.finish > p.vtime) p.vtime = c.finish;
    c.finish += virtualCost(c.spec.share ?? 1, w.load);
  }
}

/**
 * Forgets virtual time once nothing waits below r, so tags stay small and
 * no flow keeps credit or debt (children see the new epoch when they next
 * become active: tree.ts).
 */
export function resetVirtualTime(r: Resource): void {
  r.vtime = 0;
  r.epoch++;
  if (r.lanes !== undefined) for (const l of r.lanes) l.finish = 0;
}
