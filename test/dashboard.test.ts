// The dashboard (GET /) in a real browser: Debian's chromium, driven by
// playwright-core. A server runs a workload of known rates; the page must
// show what GetResourceStats says within a refresh, create, change and
// delete a resource from the config file's shape with an admin key, and
// show a worker key its namespace read-only while the server refuses any
// change it tries.
//
// DASHBOARD_SCREENSHOT=docs/dashboard.png npx vitest run test/dashboard.test.ts
// also writes the README's screenshot, after a minute of traffic.
import { existsSync } from "node:fs";
import { createAdminClient, createClient, type RateQueueClient } from "@ratequeue/client";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { rootKeyFile } from "./support/keys.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

/** Where to write the README's screenshot, if anywhere. */
const screenshot = process.env.DASHBOARD_SCREENSHOT;
/** Debian's chromium: scripts/test-all.sh installs it when it is missing. */
const chromiumPath = "/usr/bin/chromium";
const rootKey = "dashboard-root-key-0123456789abcdefghijklmnop";
const config = {
  resources: {
    // Saturated by the workload: 10 grants/s and 50 load/s, whatever the machine.
    paced: {
      limits: [
        { dimension: "requests", amount: 10, period: "1s", burst: 1 },
        { dimension: "load", amount: 100, period: "1s" },
      ],
      lanes: { interactive: 3, batch: 1 },
    },
    // Full and still: 3 leases held, 3 waiting; its hour-long limits refill too slowly to move the figures shown.
    held: {
      limits: [
        { dimension: "requests", amount: 100, period: "1h" },
        { dimension: "load", amount: 1000, period: "1h" },
      ],
      concurrency: 3,
      lanes: { user: 3, batch: 1 },
    },
    // A tree: two customers' keyed children, each holding a lease.
    tenants: { per_key: { concurrency: 1 }, concurrency: 10 },
  },
  namespaces: { "team-a": { resources: { api: { limits: [{ dimension: "requests", amount: 60, period: "60s" }], concurrency: 2 } } } },
};

/** What a resource's card shows, as numbers. */
interface Shown {
  leases: number;
  queued: number;
  grants: number;
  waitP50Ms: number;
  waitP99Ms: number;
  grantsPerSecond: number;
  loadPerSecond: number;
  /** Per limit: the bar (percent of the amount used over the last period), units used then, burst in use (percent) and units available. */
  limits: { periodUse: number; used: number; utilisation: number; available: number }[];
  lanes: Record<string, { queued: number; grants: number }>;
}

/** "1,234" → 1234; "40.0%" → 40; "–" → NaN. */
const numberIn = (text: string): number => Number(/-?[\d,]+(\.\d+)?/.exec(text)?.[0].replaceAll(",", "") ?? NaN);
/** "0.3 ms", "152 ms", "12.5 s" → ms. */
const msIn = (text: string): number => numberIn(text) * (text.trim().endsWith(" s") ? 1000 : 1);

const card = (page: Page, namespace: string, name: string) => page.locator(`article[data-namespace="${namespace}"][data-resource="${name}"]`);

async function readCard(page: Page, namespace: string, name: string): Promise<Shown> {
  const raw = await card(page, namespace, name).evaluate((el) => {
    const text = (root: Element, stat: string) => root.querySelector(`[data-stat="${stat}"]`)?.textContent ?? "";
    return {
      figures: Object.fromEntries(["leases", "queued", "grants", "wait-p50", "wait-p99", "grants-per-s", "load-per-s"].map((s) => [s, text(el, s)])),
      limits: [...el.querySelectorAll("[data-limit]:not([data-limit=concurrency])")].map((m) => ({
        periodUse: text(m, "period-use"),
        used: text(m, "used"),
        utilisation: text(m, "utilisation"),
        available: text(m, "available"),
      })),
      lanes: [...el.querySelectorAll("tr[data-lane]")].map((row) => [row.getAttribute("data-lane")!, text(row, "lane-queued"), text(row, "lane-grants")]),
    };
  });
  const f = raw.figures as Record<string, string>;
  return {
    leases: numberIn(f.leases!),
    queued: numberIn(f.queued!),
    grants: numberIn(f.grants!),
    waitP50Ms: msIn(f["wait-p50"]!),
    waitP99Ms: msIn(f["wait-p99"]!),
    grantsPerSecond: numberIn(f["grants-per-s"]!),
    loadPerSecond: numberIn(f["load-per-s"]!),
    limits: raw.limits.map((l) => ({ periodUse: numberIn(l.periodUse), used: numberIn(l.used), utilisation: numberIn(l.utilisation), available: numberIn(l.available) })),
    lanes: Object.fromEntries(raw.lanes.map(([lane, queued, grants]) => [lane, { queued: numberIn(queued!), grants: numberIn(grants!) }])),
  };
}

type Stats = Awaited<ReturnType<ReturnType<typeof createAdminClient>["getResourceStats"]>>;

/** Where the card differs from GetResourceStats (empty when it agrees), for a resource whose figures stand still. */
function differences(shown: Shown, stats: Stats): string[] {
  const out: string[] = [];
  const same = (what: string, page: number, server: number, tolerance = 0) => {
    if (!(Math.abs(page - server) <= tolerance)) out.push(`${what}: page ${page}, GetResourceStats ${server}`);
  };
  same("leases in flight", shown.leases, stats.leasesInFlight);
  same("grants", shown.grants, Number(stats.grants));
  same("queued", shown.queued, stats.lanes.reduce((n, l) => n + l.queueDepth, 0));
  for (const lane of stats.lanes) {
    same(`lane ${lane.name} queued`, shown.lanes[lane.name]?.queued ?? NaN, lane.queueDepth);
    same(`lane ${lane.name} grants`, shown.lanes[lane.name]?.grants ?? NaN, Number(lane.grants));
  }
  stats.limits.forEach((l, i) => {
    // Shown to 0.1 %; the hour-long limits refill by less than that within a refresh.
    same(`limit ${i} used over its period %`, shown.limits[i]?.periodUse ?? NaN, Math.min(1, l.usedLastPeriod / l.limit.amount) * 100, 0.05);
    same(`limit ${i} used over its period`, shown.limits[i]?.used ?? NaN, l.usedLastPeriod, 0.05);
    same(`limit ${i} burst in use %`, shown.limits[i]?.utilisation ?? NaN, l.utilisation * 100, 0.15);
    same(`limit ${i} available`, shown.limits[i]?.available ?? NaN, l.available, 1);
  });
  // Shown to 0.1 ms below 100 ms, to 1 ms below 10 s.
  const p50 = stats.waitP50Ms;
  const p99 = stats.waitP99Ms;
  same("wait p50 ms", shown.waitP50Ms, p50, p50 < 100 ? 0.05 : 0.5);
  same("wait p99 ms", shown.waitP99Ms, p99, p99 < 100 ? 0.05 : 0.5);
  return out;
}

/** Script errors and console errors (a load the content security policy refused, say) of the pages opened so far. */
const problems: string[] = [];

/** A page in a new browser session, its problems recorded. */
async function newPage(browser: Browser): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 1440, height: 1000 } })).newPage();
  page.on("pageerror", (err) => problems.push(`script error: ${err.message}`));
  page.on("console", (message) => {
    // The answers the tests provoke (a bad definition, a wrong key, a worker's change) log their status.
    if (message.type() === "error" && !/the server responded with a status of 40[013]/.test(message.text())) problems.push(message.text());
  });
  return page;
}

/** Opens the page in a new browser session and enters the key. */
async function openWithKey(browser: Browser, server: ServerProcess, key: string): Promise<Page> {
  const page = await newPage(browser);
  await page.goto(server.httpUrl);
  await page.locator("#key-input").fill(key);
  await page.locator("#key-form button[type=submit]").click();
  await page.locator("#main").waitFor({ state: "visible" });
  return page;
}

const headerText = (page: Page, id: string) => page.locator(`#${id}`).textContent();
const cardsShown = (page: Page) =>
  page.locator("article[data-resource]").evaluateAll((cards) => cards.map((c) => `${c.getAttribute("data-namespace")}/${c.getAttribute("data-resource")}`));

describe("the dashboard in chromium", () => {
  let server: ServerProcess;
  let browser: Browser;
  const keys: Record<string, string> = {};
  let fleet: RateQueueClient;
  let teamA: RateQueueClient;
  let pacing = true;
  let pacers: Promise<void>[] = [];
  const waiting: Promise<unknown>[] = [];

  beforeAll(async () => {
    // No skip: a missing browser fails the test, as a missing redis-server would.
    if (!existsSync(chromiumPath)) throw new Error(`${chromiumPath} is missing: apt-get install chromium (scripts/test-all.sh installs it)`);
    server = await startServerProcess({ config, args: ["--root-key-file", rootKeyFile(rootKey)] });
    const root = createAdminClient({ url: server.url, apiKey: rootKey });
    keys.worker = (await root.createApiKey({ namespace: "team-a", role: "worker" })).key;
    keys.admin = (await root.createApiKey({ namespace: "team-a", role: "admin" })).key;
    root.close();
    browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });

    // paced: four callers that never stop asking, in both lanes; the limit grants 10/s of load 5.
    fleet = createClient({ url: server.url, apiKey: rootKey });
    pacers = [0, 1, 2, 3].map(async (i) => {
      while (pacing) await (await fleet.acquire("paced", { load: 5, lane: i % 2 === 0 ? "interactive" : "batch" })).release();
    });
    // held: three leases of load 100; a fourth caller waits until one is released, then three wait for good.
    const first = await fleet.acquire("held", { load: 100, lane: "user" });
    await fleet.acquire("held", { load: 100, lane: "batch" });
    await fleet.acquire("held", { load: 100, lane: "batch" });
    const fourth = fleet.acquire("held", { load: 100, lane: "user" });
    await new Promise((resolve) => setTimeout(resolve, 300)); // a wait of about 300 ms: wait p99 is more than 0
    await first.release();
    await fourth;
    for (const lane of ["user", "user", "batch"]) waiting.push(fleet.acquire("held", { lane, timeoutMs: 300_000 }).catch((e: unknown) => e));
    await fleet.acquire("tenants", { key: "alice" });
    await fleet.acquire("tenants", { key: "bob" });
    // team-a: three calls through a worker key, and one lease held.
    teamA = createClient({ url: server.url, apiKey: keys.worker });
    for (let i = 0; i < 3; i++) await (await teamA.acquire("api")).release();
    await teamA.acquire("api");
  });

  afterAll(async () => {
    pacing = false;
    await Promise.allSettled(pacers);
    await Promise.allSettled([fleet?.close(), teamA?.close()]);
    await Promise.allSettled(waiting);
    await browser?.close();
    await server?.stop();
  });

  afterEach(() => {
    expect(problems.splice(0)).toEqual([]);
  });

  test("a root key: every namespace's resources, the node, and GetResourceStats' numbers within a refresh", async () => {
    const page = await newPage(browser);
    await page.goto(server.httpUrl);
    // Authentication is on: the page asks for a key, and asks again when the server refuses one.
    await page.locator("#key-panel").waitFor({ state: "visible" });
    await page.locator("#key-input").fill("rq_nosuchkey_0123456789");
    await page.locator("#key-form button[type=submit]").click();
    await expect.poll(() => page.locator("#key-error").textContent()).toContain("The server refused the key");
    expect(await page.locator("#key-panel").isVisible()).toBe(true);
    await page.locator("#key-input").fill(rootKey);
    await page.locator("#key-form button[type=submit]").click();
    await page.locator("#main").waitFor({ state: "visible" });

    await expect.poll(() => headerText(page, "node-role")).toBe("leader");
    expect(await headerText(page, "node-redis")).toBe("none (a lone node)");
    // Both clients' session streams: a root key counts every namespace's.
    await expect.poll(() => headerText(page, "node-sessions")).toBe("2");
    expect(await headerText(page, "caller")).toBe("root key, namespace default");
    await expect.poll(() => cardsShown(page)).toEqual(["default/held", "default/paced", "default/tenants", "team-a/api"]);

    const admin = createAdminClient({ url: server.url, apiKey: rootKey });
    const teamAdmin = createAdminClient({ url: server.url, apiKey: rootKey, namespace: "team-a" });
    try {
      // Resources at rest: the same numbers as GetResourceStats, once the page has refreshed.
      const atRest = async (page: Page, ns: string, name: string) => differences(await readCard(page, ns, name), await (ns === "default" ? admin : teamAdmin).getResourceStats(name));
      await expect.poll(() => atRest(page, "default", "held"), { timeout: 10_000 }).toEqual([]);
      const held = await readCard(page, "default", "held");
      expect([held.leases, held.queued, held.lanes.user?.queued, held.lanes.batch?.queued, held.grants]).toEqual([3, 3, 2, 1, 4]);
      expect(held.limits.map((l) => [l.periodUse, l.used, Math.round(l.utilisation)])).toEqual([
        [4, 4, 4],
        [40, 400, 40],
      ]);
      expect(held.waitP99Ms).toBeGreaterThan(200);
      await expect.poll(() => atRest(page, "team-a", "api"), { timeout: 10_000 }).toEqual([]);
      // A parent's card lists its children, keyed ones marked, with their leases.
      const children = () =>
        card(page, "default", "tenants").evaluate((el) => [
          el.querySelector('[data-stat="children-count"]')?.textContent ?? "",
          ...[...el.querySelectorAll("tr[data-child]")].map((row) => [...row.querySelectorAll("td")].map((td) => td.textContent).join(" | ")),
        ]);
      await expect.poll(children, { timeout: 10_000 }).toEqual(["2 children:", "tenants/alice (keyed) | 1 | 1 | 0 | 1", "tenants/bob (keyed) | 1 | 1 | 0 | 1"]);
      expect(await card(page, "default", "tenants").locator("p.definition").textContent()).toContain("a child per key: no limits, concurrency 1");

      // The provider said no on team-a's api, and that its limit is half the configured one: the card says so.
      expect(await teamA.report("api", { throttled: true, retryAfterMs: 60_000, requests: { limit: 30 } })).toBeInstanceOf(Date);
      const feedbackShown = () =>
        card(page, "team-a", "api").evaluate((el) => {
          const paused = el.querySelector<HTMLElement>('[data-stat="paused"]');
          const text = (stat: string) => el.querySelector(`[data-stat="${stat}"]`)?.textContent ?? "";
          return { paused: paused?.hidden ? "(hidden)" : (paused?.textContent ?? ""), learned: text("learned"), throttles: text("throttles") };
        });
      await expect
        .poll(feedbackShown, { timeout: 10_000 })
        .toEqual({ paused: expect.stringMatching(/^paused: the provider refused a call; nothing is granted until /), learned: " · learned from the provider: 30 of 60", throttles: "1" });

      // paced moves at 10 grants/s: the page catches up with a reading of GetResourceStats
      // within a refresh or two, and never shows more than the server has granted.
      const before = Number((await admin.getResourceStats("paced")).grants);
      await expect.poll(async () => (await readCard(page, "default", "paced")).grants, { timeout: 5_000 }).toBeGreaterThanOrEqual(before);
      const shownNow = (await readCard(page, "default", "paced")).grants;
      expect(shownNow).toBeLessThanOrEqual(Number((await admin.getResourceStats("paced")).grants));
      // Rates from successive counters: 10 grants/s of load 5 (a wide band: the machine is shared).
      await expect
        .poll(async () => {
          const { grantsPerSecond, loadPerSecond } = await readCard(page, "default", "paced");
          return grantsPerSecond >= 7 && grantsPerSecond <= 13 && loadPerSecond >= 35 && loadPerSecond <= 65 ? "about 10/s and 50/s" : `${grantsPerSecond}/s and ${loadPerSecond}/s`;
        }, { timeout: 15_000 })
        .toBe("about 10/s and 50/s");

      if (screenshot) {
        // A minute of history in the charts (one point a refresh).
        await page.waitForFunction(() => (document.querySelector("[data-resource=paced] polyline")?.getAttribute("points") ?? "").split(" ").length >= 60, undefined, { timeout: 120_000 });
        // A short viewport: the full-page capture is then as tall as the content.
        await page.setViewportSize({ width: 1440, height: 600 });
        await page.screenshot({ path: screenshot, fullPage: true });
      }

      // Once the callers stop: the page shows the final counters exactly, and the rate falls to 0.
      pacing = false;
      await Promise.all(pacers);
      await expect.poll(() => atRest(page, "default", "paced"), { timeout: 10_000 }).toEqual([]);
      await expect.poll(async () => (await readCard(page, "default", "paced")).grantsPerSecond, { timeout: 15_000 }).toBe(0);
    } finally {
      admin.close();
      teamAdmin.close();
      await page.context().close();
    }
  }, screenshot ? 180_000 : undefined);

  test("an admin key creates, changes and deletes a resource from the config file's shape; errors show the server's message", async () => {
    const page = await openWithKey(browser, server, keys.admin!);
    const admin = createAdminClient({ url: server.url, apiKey: keys.admin });
    try {
      await expect.poll(() => cardsShown(page)).toEqual(["team-a/api"]);
      // An admin key acts in its own namespace: nothing to choose.
      expect(await page.locator("#edit-namespace").isVisible()).toBe(false);
      await page.locator("#editor summary").click();
      // YAML as the config file writes it under resources.<name>.
      const definition = [
        "limits:",
        "  - { dimension: requests, amount: 60, period: 1m, burst: 10 }",
        "  - { dimension: load, amount: 5000, period: 1h }",
        "concurrency: 4",
        "lanes: { user: 3, batch: 1 }",
        "default_lane: batch",
        "lease_ttl: 1500ms",
        "max_queue: 50",
      ].join("\n");
      const save = async (name: string, text: string) => {
        await page.locator("#edit-name").fill(name);
        await page.locator("#edit-definition").fill(text);
        await page.locator("#edit-save").click();
      };
      const result = () => page.locator("#action-result").textContent();

      await save("made-on-page", definition);
      await expect.poll(result).toBe("created 'made-on-page'");
      const made = await admin.getResource("made-on-page");
      expect(made.limits).toEqual([
        { dimension: "requests", amount: 60, period: "60s", burst: 10 },
        { dimension: "load", amount: 5000, period: "3600s", burst: 5000 },
      ]);
      expect(made.lanes).toEqual({ user: 3, batch: 1 });
      expect([made.concurrency, made.defaultLane, made.leaseTtl, made.maxQueue]).toEqual([4, "batch", "1500ms", 50]);
      await expect.poll(() => cardsShown(page)).toEqual(["team-a/api", "team-a/made-on-page"]);

      // Edit fills the form with the stored definition as `ratequeue resources get -o yaml` writes it, defaults spelled out.
      await card(page, "team-a", "made-on-page").getByRole("button", { name: "Edit" }).click();
      await expect
        .poll(() => page.locator("#edit-definition").inputValue())
        .toBe(
          [
            "limits:",
            "  - { dimension: requests, amount: 60, period: 60s, burst: 10 }",
            "  - { dimension: load, amount: 5000, period: 3600s, burst: 5000 }",
            "concurrency: 4",
            "lanes: { user: 3, batch: 1 }",
            "default_lane: batch",
            "lease_ttl: 1500ms",
            "max_queue: 50",
            "cooldown: 1s",
            "learn_limits: true",
            "",
          ].join("\n"),
        );
      // JSON of the same shape is read too.
      await save("made-on-page", JSON.stringify({ limits: [{ dimension: "requests", amount: 60, period: "1m", burst: 10 }], concurrency: 6 }));
      await expect.poll(result).toBe("changed 'made-on-page'");
      const changed = await admin.getResource("made-on-page");
      expect([changed.concurrency, changed.limits.length, changed.lanes]).toEqual([6, 1, { default: 1 }]);

      // The server's words: PutResource's validation, and the config reader's check of the shape.
      await save("made-on-page", definition.replace("concurrency: 4", "concurrency: 2000000"));
      await expect.poll(result).toBe("invalid_argument: resource.concurrency: must be an integer from 0 to 1000000, got 2000000");
      await save("made-on-page", "limit: []");
      await expect.poll(result).toBe("invalid_argument: resources.made-on-page.limit: unknown key; expected one of limits, concurrency, lanes, default_lane, lease_ttl, max_queue, cooldown, learn_limits, parent, share, per_key, per_key_idle, children_from");
      await save("made-on-page", "limits: [");
      await expect.poll(result).toMatch(/^invalid_argument: resources\.made-on-page: not valid YAML: /);
      expect((await admin.getResource("made-on-page")).concurrency).toBe(6);

      // Delete asks for a second click.
      const remove = card(page, "team-a", "made-on-page").getByRole("button", { name: "Delete" });
      await remove.click();
      expect(await admin.getResource("made-on-page")).toBeDefined();
      await card(page, "team-a", "made-on-page").getByRole("button", { name: "Confirm delete" }).click();
      await expect.poll(result).toBe("deleted 'made-on-page'");
      await expect(admin.getResource("made-on-page")).rejects.toMatchObject({ code: "NOT_FOUND" });
      await expect.poll(() => cardsShown(page)).toEqual(["team-a/api"]);
    } finally {
      admin.close();
      await page.context().close();
    }
  });

  test("a worker key: its namespace only, no edit controls, and the server refuses a change; the key lives in the tab's session", async () => {
    const page = await openWithKey(browser, server, keys.worker!);
    const admin = createAdminClient({ url: server.url, apiKey: rootKey, namespace: "team-a" });
    try {
      await expect.poll(() => cardsShown(page)).toEqual(["team-a/api"]);
      expect(await headerText(page, "caller")).toBe("worker key, namespace team-a");
      // Only team-a's session stream, not the default namespace's.
      await expect.poll(() => headerText(page, "node-sessions")).toBe("1");
      await expect.poll(async () => (await readCard(page, "team-a", "api")).grants).toBe(4);
      expect(await page.locator("#editor").isVisible()).toBe(false);
      expect(await page.locator("textarea, #edit-form").evaluateAll((els) => els.filter((el) => (el as HTMLElement).offsetParent !== null).length)).toBe(0);
      expect(await page.getByRole("button", { name: /edit|delete/i }).count()).toBe(0);

      // What the page would send, sent anyway: the server refuses it.
      const attempts = await page.evaluate(async () => {
        const key = [...Array(sessionStorage.length).keys()].map((i) => sessionStorage.getItem(sessionStorage.key(i)!)).find((v) => v?.startsWith("rq_"));
        const call = async (method: string, body: unknown) => {
          const res = await fetch(`/ratequeue.v1.AdminService/${method}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key}` }, body: JSON.stringify(body) });
          return { status: res.status, body: await res.json() };
        };
        return [await call("PutResource", { resource: { name: "api", concurrency: 99 } }), await call("DeleteResource", { name: "api" })];
      });
      const refused = { status: 403, body: { code: "permission_denied", message: expect.stringContaining("this key's role is worker") } };
      expect(attempts).toEqual([refused, refused]);
      expect((await admin.getResource("api")).concurrency).toBe(2);

      // The key is kept in this tab's session storage and nowhere else: a reload keeps it, a new browser session asks.
      const stored = await page.evaluate(() => ({
        session: [...Array(sessionStorage.length).keys()].map((i) => sessionStorage.getItem(sessionStorage.key(i)!)),
        local: localStorage.length,
        cookies: document.cookie,
      }));
      expect(stored).toEqual({ session: [keys.worker], local: 0, cookies: "" });
      await page.reload();
      await expect.poll(() => cardsShown(page)).toEqual(["team-a/api"]);
      const fresh = await newPage(browser);
      await fresh.goto(server.httpUrl);
      await fresh.locator("#key-panel").waitFor({ state: "visible" });
      expect(await fresh.locator("#key-error").textContent()).toBe("");
      await fresh.context().close();
      // Forget key drops it at once.
      await page.getByRole("button", { name: "Forget key" }).click();
      await page.locator("#key-panel").waitFor({ state: "visible" });
      expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    } finally {
      admin.close();
      await page.context().close();
    }
  });
});
