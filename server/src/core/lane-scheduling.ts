// Which lane a resource serves next: weighted fair queuing over load. Each
// lane's finish tag counts its grants in cost / weight; the resource's system
// virtual time is the start tag of the grant in service. The next grant goes
// to the lane whose head would finish first. Inside a lane, the queue orders
// by priority, then arrival (resource.ts).
import type { Lane, Resource, Waiter } from "./resource.js";

/**
 * The smallest virtual cost of a grant, so 0-load requests still advance
 * their lane's finish tag and weights still share them out.
 */
export const MIN_VIRTUAL_COST = 1e-6;

function virtualCost(lane: Lane, load: number): number {
  return Math.max(load, MIN_VIRTUAL_COST) / lane.weight;
}

/** The lane to serve next: smallest finish + cost / weight among non-empty lanes (ties: lane order). */
export function chooseLane(r: Resource): Lane {
  const lanes = r.lanes;
  if (lanes.length === 1) return lanes[0] as Lane;
  let best: Lane | undefined;
  let bestKey = Infinity;
  for (let i = 0; i < lanes.length; i++) {
    const l = lanes[i] as Lane;
    const head = l.queue.peek();
    if (head === undefined) continue;
    const key = l.finish + virtualCost(l, head.load);
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

/** Advances the tags for a grant of `load` from `lane`'s queue. */
export function chargeLane(r: Resource, lane: Lane, load: number): void {
  if (lane.finish > r.vtime) r.vtime = lane.finish;
  lane.finish += virtualCost(lane, load);
}

/** Forgets virtual time once the queue is empty, so tags stay small and no lane keeps credit or debt. */
export function resetVirtualTime(r: Resource): void {
  r.vtime = 0;
  for (const l of r.lanes) l.finish = 0;
}
