// GET /: the dashboard, one self-contained HTML page (no CDN, no build
// step). Its script (script.ts) polls /status and the AdminService over
// Connect JSON once a second and draws everything itself. The content
// security policy lets the page run only its own script and style and talk
// only to this server.
import { createHash } from "node:crypto";
import type { Page } from "../http-server.js";
import { dashboardScript } from "./script.js";

// Written with String.raw: a regex's backslashes reach the browser as written.
const style = String.raw`
:root { --fg: #1d2330; --muted: #667085; --line: #e3e6ec; --bg: #f5f6f8; --card: #fff; --ok: #2e9d63; --warn: #d08a11; --bad: #d1435b; --accent: #3867d6; --load: #8e5bd8; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header.top { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 18px; padding: 10px 20px; background: var(--fg); color: #fff; }
header.top h1 { margin: 0 12px 0 0; font-size: 18px; letter-spacing: .3px; }
header.top .item { color: #c5cad6; }
header.top .item b { color: #fff; font-weight: 600; }
header.top .spacer { flex: 1; }
header.top button { background: transparent; color: #c5cad6; border: 1px solid #4a5266; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-weight: 600; }
.badge.good { background: var(--ok); color: #fff; }
.badge.wait { background: var(--warn); color: #fff; }
.badge.bad { background: var(--bad); color: #fff; }
main { padding: 16px 20px 40px; }
button { font: inherit; padding: 3px 10px; border: 1px solid var(--line); border-radius: 5px; background: #fff; color: var(--fg); cursor: pointer; }
button:hover { border-color: var(--accent); }
button.danger { color: var(--bad); }
button.danger.armed { background: var(--bad); color: #fff; border-color: var(--bad); }
#banner { margin: 0 0 12px; padding: 8px 12px; border-radius: 6px; background: #fde8eb; color: #8a1c2e; }
#editor { margin: 0 0 14px; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; }
#editor summary { cursor: pointer; font-weight: 600; }
#edit-form { display: grid; grid-template-columns: max-content 1fr; gap: 8px 12px; margin: 10px 0 4px; align-items: start; }
#edit-form label { padding-top: 4px; color: var(--muted); }
#edit-form input, #edit-form select, #edit-form textarea { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; padding: 5px 7px; border: 1px solid var(--line); border-radius: 5px; width: 100%; }
#edit-form textarea { min-height: 140px; }
#edit-form .actions { grid-column: 2; }
#action-result { display: block; margin: 6px 0 0; white-space: pre-wrap; }
#action-result.error { color: var(--bad); }
#action-result.ok { color: var(--ok); }
#resources { display: grid; grid-template-columns: repeat(auto-fill, minmax(430px, 1fr)); gap: 14px; }
#resources.stale { opacity: .45; }
#empty { color: var(--muted); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card > header { display: flex; align-items: center; gap: 8px; }
.card h3 { margin: 0; font-size: 16px; word-break: break-all; }
.card .ns { color: var(--muted); border: 1px solid var(--line); border-radius: 9px; padding: 0 7px; font-size: 12px; }
.card .spacer { flex: 1; }
.card .definition { margin: 2px 0 10px; color: var(--muted); font-size: 12px; }
.meter { margin: 0 0 8px; }
.meter .head { display: flex; justify-content: space-between; gap: 8px; font-size: 13px; }
.meter .head .value { font-variant-numeric: tabular-nums; font-weight: 600; }
.meter .foot { color: var(--muted); font-size: 12px; }
.bar { height: 8px; background: #edf0f4; border-radius: 4px; overflow: hidden; margin: 3px 0 2px; }
.bar > div { height: 100%; background: var(--ok); transition: width .4s; }
.bar > div.warn { background: var(--warn); }
.bar > div.bad { background: var(--bad); }
.figures { display: grid; grid-template-columns: 1.3fr repeat(4, 1fr); gap: 6px 10px; margin: 10px 0 6px; }
.figures div { min-width: 0; }
.figures dt { color: var(--muted); font-size: 12px; white-space: nowrap; }
.card .outcomes { margin: 0 0 8px; color: var(--muted); font-size: 12px; }
.card .outcomes b { color: var(--fg); font-weight: 600; font-variant-numeric: tabular-nums; }
.card .paused { margin: 0 0 8px; padding: 4px 8px; border-radius: 4px; background: #fef3c7; color: #92400e; font-size: 12px; font-weight: 600; }
.card .learned { color: #92400e; }
.figures dd { margin: 0; font-size: 15px; font-weight: 600; font-variant-numeric: tabular-nums; }
table.lanes { width: 100%; border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
table.lanes th { text-align: right; color: var(--muted); font-weight: 500; border-bottom: 1px solid var(--line); padding: 2px 6px; }
table.lanes td { text-align: right; padding: 2px 6px; border-bottom: 1px solid #f0f2f5; }
table.lanes th:first-child, table.lanes td:first-child { text-align: left; }
.chart { margin-top: 12px; }
.chart .title { display: flex; justify-content: space-between; gap: 8px; font-size: 12px; color: var(--muted); }
.chart .title b { color: var(--fg); font-variant-numeric: tabular-nums; }
.chart .title .top { white-space: nowrap; }
.chart svg { display: block; width: 100%; height: 80px; background: #fafbfc; border: 1px solid var(--line); border-radius: 4px; }
.chart .series { fill: none; stroke: var(--accent); stroke-width: 2; vector-effect: non-scaling-stroke; }
.chart .series.load { stroke: var(--load); }
.chart .limit-line { stroke: var(--bad); stroke-width: 1.2; stroke-dasharray: 5 4; vector-effect: non-scaling-stroke; }
.chart .axis { display: flex; justify-content: space-between; font-size: 11px; color: var(--muted); }
#key-panel { max-width: 460px; margin: 12vh auto; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 18px 22px; }
#key-panel h2 { margin: 0 0 8px; font-size: 17px; }
#key-panel p { color: var(--muted); }
#key-form { display: flex; gap: 8px; }
#key-input { flex: 1; font: 13px ui-monospace, monospace; padding: 6px 8px; border: 1px solid var(--line); border-radius: 5px; }
#key-error { color: var(--bad); min-height: 1.4em; }
[hidden] { display: none !important; }
`;

const body = String.raw`
<header class="top">
  <h1>ratequeue</h1>
  <span class="item">node <span id="node-role" class="badge">…</span></span>
  <span class="item">Redis <b id="node-redis">…</b></span>
  <span class="item">sessions <b id="node-sessions">…</b></span>
  <span class="item" id="caller"></span>
  <span class="spacer"></span>
  <span class="item" id="updated"></span>
  <button id="forget-key" type="button" hidden>Forget key</button>
</header>
<section id="key-panel" hidden>
  <h2>API key</h2>
  <p>This server checks API keys. The page sends the key as <code>Authorization: Bearer</code> and keeps it in this tab's session storage only: closing the tab forgets it.</p>
  <form id="key-form" autocomplete="off">
    <input id="key-input" type="password" placeholder="rq_…" aria-label="API key" autocomplete="off" required>
    <button type="submit">Open</button>
  </form>
  <p id="key-error" role="alert"></p>
</section>
<main id="main" hidden>
  <p id="banner" role="alert" hidden></p>
  <section id="editor" hidden>
    <details id="editor-details">
      <summary>Create or change a resource</summary>
      <form id="edit-form">
        <label for="edit-namespace" id="edit-namespace-label">Namespace</label>
        <select id="edit-namespace"></select>
        <label for="edit-name">Name</label>
        <input id="edit-name" required spellcheck="false">
        <label for="edit-definition">Definition<br><small>YAML or JSON, as the config file writes it under <code>resources.&lt;name&gt;</code></small></label>
        <textarea id="edit-definition" spellcheck="false" placeholder="limits:&#10;  - { dimension: requests, amount: 60, period: 60s }&#10;concurrency: 4&#10;lanes: { user: 3, batch: 1 }"></textarea>
        <div class="actions"><button id="edit-save" type="submit">Save</button></div>
      </form>
    </details>
    <output id="action-result"></output>
  </section>
  <p id="empty" hidden>No resources yet.</p>
  <div id="resources"></div>
</main>
`;

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;

const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ratequeue</title>
<link rel="icon" href="data:,">
<style>${style}</style>
</head>
<body>${body}<script>${dashboardScript}</script>
</body>
</html>
`;

const headers = {
  "content-security-policy": [
    "default-src 'none'",
    `script-src ${sha256(dashboardScript)}`,
    `style-src ${sha256(style)}`,
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; "),
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** GET /: the dashboard. It holds no data; the script asks for it with the viewer's key. */
export const dashboardPage: Page = async () => ({ type: "text/html; charset=utf-8", body: html, headers });
