// Which waiter a resource serves next: weighted fair queuing over load
// between its flows, its lanes (by weight) and its children with waiters
// below them (by share, tree.ts). Each flow's finish tag counts its grants in
// cost / weight; the resource's system virtual time is the start tag of the
// grant in service. The next grant goes to the flow whose head would finish
// first. Inside a lane, the queue orders by priority, then arrival
// (resource.ts).
//
// A parent may have a great many children with waiters (a tenant per key).
// Those that are plain (no children with waiters of their own: their next
// waiter is the head of the lane they would serve next) wait in a heap by
// the key they would be chosen by, so that a grant costs O(log n) in them,
// not O(n); the others are weighed one by one (ChildFlows).
import { hasRoom, readyAt } from "./admission.js";
import { ChildFlows, type Flow, type Lane, type Resource, type Waiter } from "./resource.js";
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
  if (r.waiting > 0) {
    best = laneHead(r);
    bestKey = LANE_KEY.at;
  }
  const flows = r.flows;
  if (flows !== undefined) {
    // Children win over lanes only with a smaller key, and over each other with a smaller key or, equal, an earlier rank.
    let bestRank = Infinity;
    for (const c of flows.others) {
      const w = selectNext(c, now, wake);
      if (w === undefined) continue;
      const key = c.finish + virtualCost(c.spec.share ?? 1, w.load);
      const rank = (c.flow as Flow).rank;
      if (best === undefined || key < bestKey || (bestRank < Infinity && key === bestKey && rank < bestRank)) {
        best = w;
        bestKey = key;
        bestRank = rank;
      }
    }
    // The plain ones in their heap's order: the first that fits is the best of them; a blocked one is passed over
    // (it may wake the parent later). Those after one that cannot win cannot either.
    const heap = flows.heap;
    if (heap.length > 0) {
      const frontier = FRONTIER;
      frontier.length = 0;
      frontier.push(0);
      while (frontier.length > 0) {
        const c = heap[popFirst(frontier, heap)] as Resource;
        const f = c.flow as Flow;
        if (!(best === undefined || f.key < bestKey || (bestRank < Infinity && f.key === bestKey && f.rank < bestRank))) break;
        const child = 2 * f.index + 1;
        if (child < heap.length) pushIndex(frontier, heap, child);
        if (child + 1 < heap.length) pushIndex(frontier, heap, child + 1);
        if (!hasRoom(c, now)) {
          if (c.unknownAt(now) > 0 && c.unknown!.until < wake.at) wake.at = c.unknown!.until;
          continue;
        }
        const head = f.offer as Waiter;
        const at = readyAt(c, head.load, now);
        if (at > now) {
          if (at < wake.at) wake.at = at;
          continue;
        }
        best = head;
        bestKey = f.key;
        bestRank = f.rank;
        break;
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

/** The key of the last bestLane. */
const LANE_KEY: Wake = { at: Infinity };

/**
 * The non-empty lane whose head has the smallest finish + cost / weight
 * (ties: lane order), its key in LANE_KEY; undefined when every lane is empty.
 */
function bestLane(lanes: readonly Lane[] | undefined): Lane | undefined {
  let best: Lane | undefined;
  let bestKey = Infinity;
  if (lanes !== undefined) {
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
  }
  LANE_KEY.at = bestKey;
  return best;
}

/** The head of the lane r serves next (see chooseLane), its key in LANE_KEY; undefined when r's lanes are empty. */
function laneHead(r: Resource): Waiter | undefined {
  return bestLane(r.lanes)?.queue.peek();
}

/** The lane to serve next: smallest finish + cost / weight among non-empty lanes (ties: lane order); r has waiters. */
export function chooseLane(r: Resource): Lane {
  const lanes = r.lanes as Lane[];
  if (lanes.length === 1) return lanes[0] as Lane;
  return bestLane(lanes) as Lane;
}

/** Queues `w` in `lane`. A lane that was idle starts at the system virtual time: no banked credit. */
export function joinLane(r: Resource, lane: Lane, w: Waiter): void {
  if (lane.queue.size === 0 && lane.finish < r.vtime) lane.finish = r.vtime;
  w.lane = lane;
  lane.queue.push(w);
  if (r.flow !== undefined) refreshFlow(r);
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
    if (c.flow !== undefined) refreshFlow(c);
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

/** A child with waiters joins its parent's flows (tree.ts, when it comes to have waiters below it). */
export function joinFlows(c: Resource, p: Resource): void {
  const flows = (p.flows ??= new ChildFlows());
  c.flow = { rank: flows.nextRank(), offer: undefined, key: 0, index: -1 };
  flows.others.add(c);
  refreshFlow(c);
}

/** A child leaves its parent's flows (no waiters below it, or taken from under the parent). */
export function leaveFlows(c: Resource, p: Resource): void {
  const f = c.flow;
  if (f === undefined) return;
  const flows = p.flows as ChildFlows;
  if (f.index >= 0) heapRemove(flows.heap, f.index);
  else flows.others.delete(c);
  c.flow = undefined;
}

/**
 * Puts a child with waiters where its parent weighs it, after anything its
 * key or plainness depends on changed: its finish tag, its share, its lane
 * head, its lanes, its own children with waiters.
 */
export function refreshFlow(c: Resource): void {
  const f = c.flow;
  const p = c.parent;
  if (f === undefined || p === undefined) return;
  const flows = p.flows as ChildFlows;
  const head = c.active === undefined || c.active.size === 0 ? laneHead(c) : undefined;
  f.offer = head;
  if (head === undefined) {
    if (f.index >= 0) {
      heapRemove(flows.heap, f.index);
      flows.others.add(c);
    }
    return;
  }
  // The same expression selectNext weighs the child by: the same number.
  const key = c.finish + virtualCost(c.spec.share ?? 1, head.load);
  if (f.index < 0) {
    flows.others.delete(c);
    f.key = key;
    f.index = flows.heap.length;
    flows.heap.push(c);
    siftUp(flows.heap, f.index);
  } else if (key !== f.key) {
    f.key = key;
    if (!siftUp(flows.heap, f.index)) siftDown(flows.heap, f.index);
  }
}

/** Whether a comes before b in a heap of flows: smaller key, then earlier rank. */
function before(a: Resource, b: Resource): boolean {
  const fa = a.flow as Flow;
  const fb = b.flow as Flow;
  return fa.key < fb.key || (fa.key === fb.key && fa.rank < fb.rank);
}

function place(heap: Resource[], c: Resource, i: number): void {
  heap[i] = c;
  (c.flow as Flow).index = i;
}

function siftUp(heap: Resource[], i: number): boolean {
  const c = heap[i] as Resource;
  const start = i;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    const above = heap[parent] as Resource;
    if (!before(c, above)) break;
    place(heap, above, i);
    i = parent;
  }
  place(heap, c, i);
  return i !== start;
}

function siftDown(heap: Resource[], i: number): void {
  const c = heap[i] as Resource;
  const n = heap.length;
  for (;;) {
    let next = 2 * i + 1;
    if (next >= n) break;
    if (next + 1 < n && before(heap[next + 1] as Resource, heap[next] as Resource)) next++;
    const below = heap[next] as Resource;
    if (!before(below, c)) break;
    place(heap, below, i);
    i = next;
  }
  place(heap, c, i);
}

function heapRemove(heap: Resource[], i: number): void {
  const gone = heap[i] as Resource;
  const last = heap.pop() as Resource;
  (gone.flow as Flow).index = -1;
  if (i === heap.length) return;
  place(heap, last, i);
  if (!siftUp(heap, i)) siftDown(heap, i);
}

/** Heap positions still to visit while walking a heap of flows in order, itself a heap by their flows (selectNext). */
const FRONTIER: number[] = [];

function pushIndex(frontier: number[], heap: Resource[], index: number): void {
  let i = frontier.length;
  frontier.push(index);
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(heap[index] as Resource, heap[frontier[parent] as number] as Resource)) break;
    frontier[i] = frontier[parent] as number;
    i = parent;
  }
  frontier[i] = index;
}

function popFirst(frontier: number[], heap: Resource[]): number {
  const first = frontier[0] as number;
  const last = frontier.pop() as number;
  const n = frontier.length;
  if (n > 0) {
    let i = 0;
    for (;;) {
      let next = 2 * i + 1;
      if (next >= n) break;
      if (next + 1 < n && before(heap[frontier[next + 1] as number] as Resource, heap[frontier[next] as number] as Resource)) next++;
      if (!before(heap[frontier[next] as number] as Resource, heap[last] as Resource)) break;
      frontier[i] = frontier[next] as number;
      i = next;
    }
    frontier[i] = last;
  }
  return first;
}
