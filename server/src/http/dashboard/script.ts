// The dashboard's script, run by the browser (page.ts inlines it). It asks
// GET /status and the AdminService over Connect JSON with the viewer's key,
// once a second, and keeps the last minutes of each resource's counters to
// chart grants/s and load/s against its limits. Admin and root keys get a
// form that turns the config file's shape of one resource into PutResource's
// Resource JSON.
//
// Plain browser JavaScript in a String.raw template: no backtick and no
// dollar-brace in it, and what is written here is what the browser runs.
export const dashboardScript = String.raw`
"use strict";
(() => {
  const keyStorage = "ratequeue.apiKey";
  const refreshMs = 1000;
  const historyMs = 5 * 60 * 1000;
  const rateWindowMs = 5000;
  const deleteConfirmMs = 4000;
  const svgNs = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  /** An element with attributes ("text" sets its text, "on..." adds a listener) and children. */
  function h(tag, attrs, children) {
    const el = tag.startsWith("svg:") ? document.createElementNS(svgNs, tag.slice(4)) : document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") el.textContent = String(value);
      else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children || []) if (child) el.append(child);
    return el;
  }

  // ------------------------------------------------------------ formatting

  const count = (n) => Math.round(n).toLocaleString("en-US");
  const amount = (n) => n.toLocaleString("en-US", { maximumFractionDigits: 1 });
  const percent = (ratio) => (ratio * 100).toFixed(1) + "%";
  function rate(perSecond) {
    if (perSecond === 0) return "0";
    if (Math.abs(perSecond) < 1) return perSecond.toPrecision(2);
    if (Math.abs(perSecond) < 100) return perSecond.toFixed(1);
    return count(perSecond);
  }
  function waitText(ms) {
    if (ms < 100) return ms.toFixed(1) + " ms";
    if (ms < 10000) return Math.round(ms) + " ms";
    return (ms / 1000).toFixed(1) + " s";
  }
  /** Proto JSON numbers: uint64 arrive as strings, zero values are left out. */
  const num = (v) => Number(v || 0);
  /** A proto JSON duration ("1.500s") in ms; absent means zero. */
  const durationMs = (v) => (v ? parseFloat(v) * 1000 : 0);
  /** ms as the config file writes durations: 500ms, 60s, 5m, 1h. */
  function durationText(ms) {
    if (ms > 0 && ms % 3600000 === 0) return ms / 3600000 + "h";
    if (ms > 0 && ms % 60000 === 0) return ms / 60000 + "m";
    if (ms % 1000 === 0) return ms / 1000 + "s";
    return ms + "ms";
  }
  const barClass = (ratio) => (ratio >= 0.9 ? "bad" : ratio >= 0.7 ? "warn" : "");

  // ------------------------------------------------------------ the server

  class CallError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }
  const describe = (err) => (err instanceof CallError ? err.code + ": " + err.message : String(err.message || err));

  function headers(namespace) {
    const out = { "content-type": "application/json" };
    const key = sessionStorage.getItem(keyStorage);
    if (key) out.authorization = "Bearer " + key;
    if (namespace !== undefined) out["ratequeue-namespace"] = namespace;
    return out;
  }

  async function request(path, init) {
    let res;
    try {
      res = await fetch(path, { ...init, cache: "no-store" });
    } catch (err) {
      throw new CallError(0, "unavailable", "cannot reach the server (" + err.message + ")");
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new CallError(res.status, body.code || "http_" + res.status, body.message || res.statusText);
    return body;
  }

  const state = {
    /** The last GET /status. */
    status: undefined,
    /** Cards by namespace and name. */
    cards: new Map(),
    /** Bumped to stop a polling loop (a new key, or a 401). */
    generation: 0,
    timer: undefined,
    /** The Delete button waiting for its second click, and until when. */
    armedDelete: undefined,
  };
  const isRoot = () => state.status !== undefined && state.status.caller.role === "root";
  const mayEdit = () => state.status !== undefined && state.status.caller.role !== "worker";
  /** A root key names the namespace of each call; other keys act in their own. */
  const scopeOf = (namespace) => (isRoot() ? namespace : undefined);

  /** An AdminService method over Connect JSON. */
  function admin(method, body, namespace) {
    return request("/ratequeue.v1.AdminService/" + method, { method: "POST", headers: headers(scopeOf(namespace)), body: JSON.stringify(body) });
  }

  // ------------------------------------------------------------ the key

  /** Stops polling, forgets the key and asks for one, saying why (or nothing). */
  function askForKey(why) {
    state.generation++;
    clearTimeout(state.timer);
    sessionStorage.removeItem(keyStorage);
    $("main").hidden = true;
    $("key-panel").hidden = false;
    $("key-error").textContent = why;
    $("key-input").value = "";
    $("key-input").focus();
  }
  /** A 401: no key yet, or the server refused it (unknown, revoked). */
  const refused = (err) => askForKey(sessionStorage.getItem(keyStorage) === null ? "" : "The server refused the key: " + err.message);

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(keyStorage, $("key-input").value.trim());
    $("key-input").value = "";
    start();
  });
  $("forget-key").addEventListener("click", () => askForKey(""));

  // ------------------------------------------------------------ polling

  function start() {
    state.generation++;
    clearTimeout(state.timer);
    for (const card of state.cards.values()) card.el.remove();
    state.cards.clear();
    $("key-panel").hidden = true;
    $("main").hidden = false;
    void tick();
  }

  async function tick() {
    const generation = state.generation;
    const startedAt = performance.now();
    try {
      const status = await request("/status", { headers: headers() });
      if (generation !== state.generation) return;
      state.status = status;
      // The node first: a standby shows its role even though it answers the admin calls with UNAVAILABLE.
      renderStatus(status);
      const namespaces = isRoot() ? ((await admin("ListNamespaces", {})).namespaces || []).map((n) => n.name) : [status.caller.namespace];
      const lists = await Promise.all(namespaces.map((ns) => admin("ListResources", {}, ns).then((r) => (r.resources || []).map((def) => ({ ns, def })))));
      const found = lists.flat();
      // A resource deleted between the list and its stats is left out of this refresh.
      const stats = await Promise.all(found.map(({ ns, def }) => admin("GetResourceStats", { name: def.name }, ns).then((r) => r.stats, (err) => (err.status === 404 ? undefined : Promise.reject(err)))));
      if (generation !== state.generation) return;
      const at = performance.now();
      renderNamespaces(namespaces);
      renderResources(found.map((f, i) => ({ ...f, stats: stats[i] })).filter((f) => f.stats !== undefined), namespaces.length > 1, at);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString("en-GB");
      setBanner("");
    } catch (err) {
      if (generation !== state.generation) return;
      if (err instanceof CallError && err.status === 401) return refused(err);
      setBanner(describe(err));
    }
    state.timer = setTimeout(() => {
      if (generation === state.generation) void tick();
    }, Math.max(0, refreshMs - (performance.now() - startedAt)));
  }

  /** Shows why the last refresh failed, or nothing; the figures of a failed refresh are dimmed as stale. */
  function setBanner(text) {
    $("banner").textContent = text;
    $("banner").hidden = text === "";
    $("resources").classList.toggle("stale", text !== "");
  }

  function renderStatus(status) {
    const role = $("node-role");
    role.textContent = status.role;
    role.className = "badge " + (status.role === "leader" ? "good" : status.role === "standby" ? "wait" : "bad");
    $("node-redis").textContent = status.redis === "none" ? "none (a lone node)" : status.redis;
    $("node-sessions").textContent = count(status.sessions);
    $("caller").textContent = status.auth ? status.caller.role + " key, namespace " + status.caller.namespace : "authentication off";
    $("forget-key").hidden = !status.auth;
    $("editor").hidden = !mayEdit();
    $("edit-namespace").hidden = $("edit-namespace-label").hidden = !isRoot();
  }

  /** The namespaces a root key may create resources in. */
  function renderNamespaces(namespaces) {
    const select = $("edit-namespace");
    const options = [...select.options].map((o) => o.value);
    if (options.join("\n") !== namespaces.join("\n")) {
      const chosen = select.value;
      select.replaceChildren(...namespaces.map((ns) => h("option", { value: ns, text: ns })));
      if (namespaces.includes(chosen)) select.value = chosen;
    }
  }

  // ------------------------------------------------------------ resources

  function renderResources(found, showNamespace, at) {
    const editable = mayEdit();
    const seen = new Set();
    const order = [];
    for (const { ns, def, stats } of found) {
      const id = ns + "\n" + def.name;
      seen.add(id);
      // A card is rebuilt only when the definition changes: its buttons stay put between refreshes.
      const shape = JSON.stringify([def, showNamespace, editable]);
      let card = state.cards.get(id);
      if (card === undefined || card.shape !== shape) {
        const history = card === undefined ? [] : card.history;
        if (card !== undefined) card.el.remove();
        card = buildCard(ns, def, showNamespace, editable);
        card.shape = shape;
        card.history = history;
        state.cards.set(id, card);
      }
      updateCard(card, stats, at);
      order.push(card.el);
    }
    for (const [id, card] of state.cards) {
      if (!seen.has(id)) {
        card.el.remove();
        state.cards.delete(id);
      }
    }
    const list = $("resources");
    const current = [...list.children];
    if (current.length !== order.length || current.some((el, i) => el !== order[i])) list.replaceChildren(...order);
    $("empty").hidden = order.length > 0;
  }

  function limitLabel(l) {
    const dimension = l.dimension === "DIMENSION_LOAD" ? "load" : "requests";
    const burst = num(l.burst) !== 0 && num(l.burst) !== num(l.amount) ? ", burst " + amount(num(l.burst)) : "";
    return dimension + ": " + amount(num(l.amount)) + " per " + durationText(durationMs(l.period)) + burst;
  }

  function meter(label, attrs) {
    const value = h("span", { class: "value", ...attrs.value });
    const fill = h("div");
    const foot = h("div", { class: "foot" }, attrs.foot || []);
    const el = h("div", { class: "meter", ...attrs.meter }, [h("div", { class: "head" }, [h("span", { text: label }), value]), h("div", { class: "bar" }, [fill]), foot]);
    return {
      el,
      set(ratio, text) {
        const clamped = Math.max(0, Math.min(1, ratio));
        value.textContent = text;
        fill.style.width = (clamped * 100).toFixed(2) + "%";
        fill.className = barClass(clamped);
      },
    };
  }

  function figure(label, stat) {
    const dd = h("dd", { "data-stat": stat, text: "–" });
    return { el: h("div", {}, [h("dt", { text: label }), dd]), dd };
  }

  /** A chart of one counter's rate over the last minutes, against a limit's rate when there is one. */
  function chart(what, field, limit) {
    const width = 600;
    const height = 80;
    const limitPerSecond = limit === undefined ? undefined : num(limit.amount) / (durationMs(limit.period) / 1000);
    const now = h("b", { "data-stat": field === "grants" ? "grants-per-s" : "load-per-s", text: "–" });
    const top = h("span", { class: "top" });
    const series = h("svg:polyline", { class: "series" + (field === "load" ? " load" : "") });
    const limitLine = h("svg:line", { class: "limit-line", x1: 0, x2: width });
    const svg = h("svg:svg", { viewBox: "0 0 " + width + " " + height, preserveAspectRatio: "none", role: "img", "aria-label": what + " over the last 5 minutes" }, [limitLine, series]);
    const against = limit === undefined ? "" : " against " + limitLabel(limit) + " (" + rate(limitPerSecond) + "/s)";
    const el = h("div", { class: "chart", "data-chart": field }, [
      h("div", { class: "title" }, [h("span", {}, [what + " now ", now, against]), top]),
      svg,
      h("div", { class: "axis" }, [h("span", { text: "5 min ago" }), h("span", { text: "now" })]),
    ]);
    return {
      el,
      update(history, at) {
        const points = rates(history, field);
        now.textContent = points.length === 0 ? "–" : rate(points[points.length - 1].v);
        const peak = Math.max(limitPerSecond === undefined ? 0 : limitPerSecond * 1.25, ...points.map((p) => p.v * 1.1)) || 1;
        top.textContent = "top " + rate(peak) + "/s";
        const y = (v) => (height - (height * v) / peak).toFixed(1);
        series.setAttribute("points", points.map((p) => (width * (1 - (at - p.t) / historyMs)).toFixed(1) + "," + y(p.v)).join(" "));
        limitLine.setAttribute("visibility", limitPerSecond === undefined ? "hidden" : "visible");
        if (limitPerSecond !== undefined) {
          limitLine.setAttribute("y1", y(limitPerSecond));
          limitLine.setAttribute("y2", y(limitPerSecond));
        }
      },
    };
  }

  /** A counter's rate at each sample: its increase over the samples of the window before it. */
  function rates(history, field) {
    const out = [];
    let j = 0;
    for (let i = 1; i < history.length; i++) {
      while (history[i].t - history[j].t > rateWindowMs) j++;
      const from = history[Math.min(j, i - 1)];
      const seconds = (history[i].t - from.t) / 1000;
      out.push({ t: history[i].t, v: seconds > 0 ? (history[i][field] - from[field]) / seconds : 0 });
    }
    return out;
  }

  function buildCard(ns, def, showNamespace, editable) {
    const lanes = def.lanes || [];
    const limits = def.limits || [];
    const buttons = [];
    let deleteButton;
    if (editable) {
      buttons.push(h("button", { type: "button", text: "Edit", onclick: () => edit(ns, def) }));
      deleteButton = h("button", { type: "button", class: "danger", text: "Delete", onclick: () => remove(ns, def.name, deleteButton) });
      buttons.push(deleteButton);
    }
    const facts = [
      ...(def.parent ? ["under " + def.parent + ", share " + count(num(def.share) || 1)] : []),
      ...(def.perKey ? ["a child per key: " + ((def.perKey.limits || []).map(limitLabel).join(", ") || "no limits") + (num(def.perKey.concurrency) ? ", concurrency " + count(num(def.perKey.concurrency)) : "")] : []),
      num(def.concurrency) === 0 ? "no concurrency cap" : "concurrency " + count(num(def.concurrency)),
      "lease TTL " + durationText(durationMs(def.leaseTtl)),
      "max queue " + count(num(def.maxQueue)),
    ];
    // The bar: what the limit allowed over its last period that was used, as ratequeue_limit_utilisation_ratio
    // counts it; the foot: the burst in use now, and what would be granted at once.
    const limitMeters = limits.map((l, i) => {
      const used = h("span", { "data-stat": "used" });
      const burst = h("span", { "data-stat": "utilisation" });
      const available = h("span", { "data-stat": "available" });
      // Shown while provider feedback holds the limit below its configured amount.
      const learned = h("span", { "data-stat": "learned", class: "learned" });
      const foot = [used, " used over the last " + durationText(durationMs(l.period)) + " · burst in use ", burst, " · available now ", available, learned];
      const m = meter(limitLabel(l), { meter: { "data-limit": i }, value: { "data-stat": "period-use" }, foot });
      return { ...m, used, burst, available, learned };
    });
    const leases = num(def.concurrency) === 0 ? undefined : meter("leases held, of " + count(num(def.concurrency)), { meter: { "data-limit": "concurrency" }, value: { "data-stat": "concurrency" } });
    const figures = {
      leases: figure("Leases in flight", "leases"),
      queued: figure("Queued", "queued"),
      grants: figure("Grants", "grants"),
      p50: figure("Wait p50", "wait-p50"),
      p99: figure("Wait p99", "wait-p99"),
    };
    const outcomes = {
      rejections: h("b", { "data-stat": "rejections" }),
      timeouts: h("b", { "data-stat": "timeouts" }),
      cancellations: h("b", { "data-stat": "cancellations" }),
      expirations: h("b", { "data-stat": "expirations" }),
      waitMax: h("b", { "data-stat": "wait-max" }),
      throttles: h("b", { "data-stat": "throttles" }),
    };
    // The provider said no: the resource grants nothing until this time.
    const paused = h("p", { class: "paused", "data-stat": "paused", hidden: "" });
    const outcomeLine = h("p", { class: "outcomes" }, [
      "rejected ", outcomes.rejections, " · timed out ", outcomes.timeouts, " · cancelled ", outcomes.cancellations,
      " · expired ", outcomes.expirations, " · longest wait ", outcomes.waitMax, " · refused by the provider ", outcomes.throttles,
    ]);
    const laneRows = lanes.map((lane) => {
      const cells = { queued: h("td", { "data-stat": "lane-queued" }), grants: h("td", { "data-stat": "lane-grants" }), load: h("td", { "data-stat": "lane-load" }) };
      return { name: lane.name, cells, el: h("tr", { "data-lane": lane.name }, [h("td", { text: lane.name }), h("td", { text: count(num(lane.weight) || 1) }), cells.queued, cells.grants, cells.load]) };
    });
    // A parent's busiest children (GetResourceStats' top by demand), filled by updateCard.
    const childRows = h("tbody", {});
    const childCount = h("span", { "data-stat": "children-count" });
    const children = h("div", { class: "children", hidden: "" }, [
      h("p", { class: "outcomes" }, [childCount]),
      h("table", { class: "lanes", "data-table": "children" }, [
        h("thead", {}, [h("tr", {}, ["Child", "Share", "Leases", "Queued", "Grants"].map((t) => h("th", { text: t })))]),
        childRows,
      ]),
    ]);
    const requestLimits = limits.filter((l) => l.dimension !== "DIMENSION_LOAD");
    const loadLimits = limits.filter((l) => l.dimension === "DIMENSION_LOAD");
    const charts = [chart("grants/s", "grants", requestLimits[0]), chart("load/s", "load", loadLimits[0])];
    const el = h("article", { class: "card", "data-resource": def.name, "data-namespace": ns }, [
      h("header", {}, [h("h3", { text: def.name }), showNamespace ? h("span", { class: "ns", text: ns }) : null, h("span", { class: "spacer" }), ...buttons]),
      h("p", { class: "definition", text: facts.join(" · ") }),
      paused,
      ...limitMeters.map((m) => m.el),
      leases && leases.el,
      h("dl", { class: "figures" }, Object.values(figures).map((f) => f.el)),
      outcomeLine,
      h("table", { class: "lanes" }, [
        h("thead", {}, [h("tr", {}, ["Lane", "Weight", "Queued", "Grants", "Load granted"].map((t) => h("th", { text: t })))]),
        h("tbody", {}, laneRows.map((r) => r.el)),
      ]),
      children,
      ...charts.map((c) => c.el),
    ]);
    return { el, limitMeters, leases, figures, outcomes, paused, laneRows, children, childRows, childCount, charts, deleteButton, concurrency: num(def.concurrency) };
  }

  function updateCard(card, stats, at) {
    const lanes = stats.lanes || [];
    const grants = num(stats.grants);
    const load = lanes.reduce((sum, l) => sum + num(l.loadGranted), 0);
    const last = card.history[card.history.length - 1];
    // A resource deleted and created again starts its counters anew.
    if (last !== undefined && (grants < last.grants || load < last.load)) card.history = [];
    card.history.push({ t: at, grants, load });
    while (card.history.length > 0 && at - card.history[0].t > historyMs) card.history.shift();

    (stats.limits || []).forEach((l, i) => {
      const m = card.limitMeters[i];
      if (m === undefined) return;
      // What the limit allowed: the learned amount while the provider holds it lower.
      const learned = l.learnedAmount === undefined ? undefined : num(l.learnedAmount);
      const allowed = learned === undefined ? num(l.limit && l.limit.amount) : learned;
      const ratio = allowed > 0 ? Math.min(1, num(l.usedLastPeriod) / allowed) : 0;
      m.set(ratio, percent(ratio));
      m.learned.textContent = learned === undefined ? "" : " · learned from the provider: " + amount(learned) + " of " + amount(num(l.limit && l.limit.amount));
      m.used.textContent = amount(num(l.usedLastPeriod));
      m.burst.textContent = percent(num(l.utilisation));
      m.available.textContent = amount(num(l.available)) + " of " + amount(num(l.limit && l.limit.burst) || num(l.limit && l.limit.amount));
    });
    const held = num(stats.leasesInFlight);
    if (card.leases) card.leases.set(held / card.concurrency, count(held) + " / " + count(card.concurrency));
    const f = card.figures;
    f.leases.dd.textContent = count(held);
    f.grants.dd.textContent = count(grants);
    f.p50.dd.textContent = waitText(durationMs(stats.waitP50));
    f.p99.dd.textContent = waitText(durationMs(stats.waitP99));
    f.queued.dd.textContent = count(lanes.reduce((sum, l) => sum + num(l.queueDepth), 0));
    const o = card.outcomes;
    o.rejections.textContent = count(num(stats.rejections));
    o.timeouts.textContent = count(num(stats.timeouts));
    o.cancellations.textContent = count(num(stats.cancellations));
    o.expirations.textContent = count(num(stats.expirations));
    o.waitMax.textContent = waitText(durationMs(stats.waitMax));
    o.throttles.textContent = count(num(stats.throttles));
    const pausedUntil = stats.pausedUntil === undefined ? undefined : Date.parse(stats.pausedUntil);
    card.paused.hidden = pausedUntil === undefined;
    card.paused.textContent = pausedUntil === undefined ? "" : "paused: the provider refused a call; nothing is granted until " + new Date(pausedUntil).toLocaleTimeString();
    for (const row of card.laneRows) {
      const lane = lanes.find((l) => l.name === row.name) || {};
      row.cells.queued.textContent = count(num(lane.queueDepth));
      row.cells.grants.textContent = count(num(lane.grants));
      row.cells.load.textContent = amount(num(lane.loadGranted));
    }
    const kids = stats.children || [];
    const total = num(stats.childrenCount);
    card.children.hidden = total === 0;
    card.childCount.textContent = total === 0 ? "" : count(total) + (total === 1 ? " child" : " children") + (kids.length < total ? ", the " + count(kids.length) + " busiest:" : ":");
    card.childRows.replaceChildren(
      ...kids.map((c) =>
        h("tr", { "data-child": c.name }, [
          h("td", { text: c.name + (c.keyed ? " (keyed)" : "") }),
          h("td", { text: count(num(c.share) || 1) }),
          h("td", { text: count(num(c.leasesInFlight)) }),
          h("td", { text: count(num(c.queueDepth)) }),
          h("td", { text: count(num(c.grants)) }),
        ]),
      ),
    );
    for (const c of card.charts) c.update(card.history, at);
    if (card.deleteButton && state.armedDelete && state.armedDelete.button === card.deleteButton && performance.now() > state.armedDelete.until) disarm();
  }

  // ------------------------------------------------------------ changes

  function showResult(text, ok) {
    const out = $("action-result");
    out.textContent = text;
    out.className = ok ? "ok" : "error";
  }

  /**
   * The editor holds a definition in the config file's shape (YAML or JSON);
   * the server converts it to and from PutResource's message with the same
   * code that reads config files.
   */
  async function edit(ns, def) {
    let text;
    try {
      text = (await request("/dashboard/config-from-resource", { method: "POST", headers: headers(), body: JSON.stringify(def) })).text;
    } catch (err) {
      return showResult(describe(err), false);
    }
    if (isRoot()) $("edit-namespace").value = ns;
    $("edit-name").value = def.name;
    $("edit-definition").value = text;
    $("editor-details").open = true;
    $("editor").scrollIntoView({ block: "nearest" });
    $("edit-definition").focus();
  }

  $("edit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const ns = isRoot() ? $("edit-namespace").value : state.status.caller.namespace;
    const name = $("edit-name").value.trim();
    try {
      const { resource } = await request("/dashboard/resource-from-config", { method: "POST", headers: headers(), body: JSON.stringify({ name, text: $("edit-definition").value }) });
      const answer = await admin("PutResource", { resource }, ns);
      showResult((answer.created ? "created '" : "changed '") + name + "'" + (isRoot() ? " in namespace " + ns : ""), true);
    } catch (err) {
      if (err instanceof CallError && err.status === 401) return refused(err);
      showResult(describe(err), false);
    }
  });

  function disarm() {
    if (state.armedDelete === undefined) return;
    state.armedDelete.button.textContent = "Delete";
    state.armedDelete.button.classList.remove("armed");
    state.armedDelete = undefined;
  }

  /** The first click arms the button; a second one within a few seconds deletes. */
  async function remove(ns, name, button) {
    if (state.armedDelete === undefined || state.armedDelete.button !== button) {
      disarm();
      state.armedDelete = { button, until: performance.now() + deleteConfirmMs };
      button.textContent = "Confirm delete";
      button.classList.add("armed");
      return;
    }
    disarm();
    try {
      await admin("DeleteResource", { name }, ns);
      showResult("deleted '" + name + "'" + (isRoot() ? " from namespace " + ns : ""), true);
    } catch (err) {
      if (err instanceof CallError && err.status === 401) return refused(err);
      showResult(describe(err), false);
    }
  }

  start();
})();
`;
