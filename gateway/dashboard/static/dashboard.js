/* The dashboard's only script: reads the admin JSON API and fills the server-rendered pages.
   Every figure shown comes from /admin/api/...; times are shown in the browser's time zone. */
"use strict";

const REFRESH_MS = 10000;
const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const COLORS = ["#0a58ca", "#e8590c", "#2f9e44", "#9c36b5", "#c92a2a", "#1098ad", "#f08c00", "#5c7cfa", "#868e96"];
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
const hourFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "numeric" });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
const charts = {};

const $ = (id) => document.getElementById(id);
function usd(v) {
  if (v == null) return "–";
  const a = Math.abs(v);
  const digits = a >= 1 ? a.toFixed(2) : a >= 0.001 || a === 0 ? a.toFixed(4) : a.toPrecision(2);
  return (v < 0 ? "-$" : "$") + digits;
}
const num = (v) => (v == null ? "–" : Number(v).toLocaleString());
const pct = (v) => (v == null ? "–" : (100 * v).toFixed(1) + "%");
const ms = (v) => (v == null ? "–" : Number(v).toFixed(1) + " ms");
const when = (iso) => (iso ? timeFormat.format(new Date(iso)) : "–");

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fillRows(tbody, rows, empty) {
  tbody.replaceChildren(...rows);
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(empty);
    td.colSpan = tbody.closest("table").querySelectorAll("thead th").length;
    tr.append(td);
    tbody.append(tr);
  }
}

function setValue(id, value, text) {
  const el = $(id);
  el.dataset.value = value == null ? "" : String(value);
  el.textContent = text;
}

async function api(path, params) {
  const url = path + (params ? "?" + new URLSearchParams(params) : "");
  const response = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
  if (response.status === 401) {
    window.location.assign("/admin/login");
    throw new Error("signed out");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

/* ---- overview ---- */

function localInput(date) {
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 16);
}

function query() {
  const range = $("range").value;
  let start, end;
  if (range === "custom" && $("from").value && $("to").value) {
    start = new Date($("from").value);
    end = new Date($("to").value);
  } else {
    end = new Date();
    start = new Date(end.getTime() - (RANGES[range] || RANGES["24h"]));
  }
  const params = { start: start.toISOString(), end: end.toISOString() };
  for (const name of ["key", "model", "provider"]) if ($(name).value) params[name] = $(name).value;
  return params;
}

function bucketFor(params) {
  return new Date(params.end) - new Date(params.start) > 2 * 86400e3 ? "day" : "hour";
}

function remember() {
  const state = new URLSearchParams();
  for (const name of ["range", "key", "model", "provider", "stack"]) if ($(name).value) state.set(name, $(name).value);
  if ($("range").value === "custom") { state.set("from", $("from").value); state.set("to", $("to").value); }
  history.replaceState(null, "", "?" + state);
}

function restore() {
  const state = new URLSearchParams(location.search);
  for (const name of ["range", "key", "model", "provider", "stack", "from", "to"]) {
    const value = state.get(name);
    if (value !== null && $(name)) $(name).value = value;
  }
  if (!$("from").value) $("from").value = localInput(new Date(Date.now() - 86400e3));
  if (!$("to").value) $("to").value = localInput(new Date());
  showCustom();
}

function showCustom() {
  for (const el of document.querySelectorAll(".field.custom")) el.hidden = $("range").value !== "custom";
}

function drawChart(id, config) {
  if (!window.Chart) return;
  if (charts[id]) charts[id].destroy();
  config.options = Object.assign({ animation: false, maintainAspectRatio: false, responsive: true }, config.options);
  charts[id] = new window.Chart($(id), config);
}

function renderTotals(t) {
  setValue("total-cost", t.cost_usd, usd(t.cost_usd));
  setValue("total-requests", t.requests, num(t.requests));
  setValue("total-input", t.input_tokens, num(t.input_tokens));
  setValue("total-output", t.output_tokens, num(t.output_tokens));
  setValue("total-error-rate", t.error_rate, pct(t.error_rate));
  setValue("total-refused", t.refused, num(t.refused));
  setValue("total-rag", t.rag_requests, num(t.rag_requests));
}

let slotFormat = hourFormat;
const slotLabel = (iso) => slotFormat.format(new Date(iso));

/* Every bucket of the range, in the API's UTC form, so quiet hours show as gaps, not as nothing. */
function slots(params, bucket) {
  const step = bucket === "day" ? 86400e3 : 3600e3;
  const first = Math.floor(new Date(params.start).getTime() / step) * step;
  const out = [];
  for (let t = first; t < new Date(params.end).getTime() && out.length < 2000; t += step) {
    out.push(new Date(t).toISOString().replace(".000Z", "Z"));
  }
  return out;
}

function renderSpend(rows, groupBy, buckets) {
  const name = (r) => r.group ?? "(none)";
  const spent = new Map();
  for (const r of rows) spent.set(name(r), (spent.get(name(r)) || 0) + r.cost_usd);
  const groups = [...spent.keys()].filter((g) => spent.get(g) > 0);
  const datasets = groups.map((g, i) => ({
    label: g,
    backgroundColor: COLORS[i % COLORS.length],
    data: buckets.map((b) => rows.filter((r) => r.bucket === b && name(r) === g).reduce((sum, r) => sum + r.cost_usd, 0)),
  }));
  $("spend-chart").setAttribute("aria-label", `Spend over time, stacked by ${groupBy}: ${groups.join(", ") || "no spend"}`);
  drawChart("spend-chart", {
    type: "bar",
    data: { labels: buckets.map(slotLabel), datasets },
    options: { scales: { x: { stacked: true }, y: { stacked: true, ticks: { callback: (v) => usd(v) } } } },
  });
}

function renderSavings(report, buckets) {
  const t = report.total;
  setValue("saved-actual", t.actual_usd, usd(t.actual_usd));
  const dearest = t.saved_vs_most_expensive_pct == null ? "" : ` (${t.saved_vs_most_expensive_pct.toFixed(1)}%)`;
  setValue("saved-dearest", t.saved_vs_most_expensive_usd, usd(t.saved_vs_most_expensive_usd) + dearest);
  const cheapest = t.extra_vs_cheapest_up_pct == null ? "" : ` (${t.extra_vs_cheapest_up_pct.toFixed(1)}%)`;
  setValue("saved-cheapest", t.extra_vs_cheapest_up_usd, usd(t.extra_vs_cheapest_up_usd) + cheapest);
  const hits = ` (${t.cache_hits} hit${t.cache_hits === 1 ? "" : "s"})`;
  setValue("saved-cache", t.cache_saved_usd, usd(t.cache_saved_usd) + hits);
  const byBucket = new Map(report.data.map((r) => [r.bucket, r]));
  const line = (label, key, color) => ({ label, borderColor: color, backgroundColor: color, pointRadius: 0,
    data: buckets.map((b) => (byBucket.has(b) ? byBucket.get(b)[key] : 0)) });
  drawChart("savings-chart", {
    type: "line",
    data: { labels: buckets.map(slotLabel), datasets: [
      line("Actual", "actual_usd", COLORS[0]), line("Most expensive", "most_expensive_usd", COLORS[4]),
      line("Cheapest up", "cheapest_up_usd", COLORS[2])] },
    options: { scales: { y: { ticks: { callback: (v) => usd(v) } } } },
  });
}

function renderKeys(keys) {
  fillRows($("keys-body"), keys.map((k) => {
    const tr = document.createElement("tr");
    const b = k.budget;
    const refused = k.usage.refused;
    tr.append(cell(k.name ?? "(no key)"), cell(usd(k.usage.cost_usd)),
      cell(b ? `${usd(b.spent_usd)} of ${usd(b.budget_usd)} / ${b.period}` : "none"),
      cell(b ? when(b.resets_at) : "–"), cell(num(k.usage.requests)),
      cell(`${refused["402"]} / ${refused["403"]} / ${refused["429"]}`));
    return tr;
  }), "No keys.");
}

function renderDeployments(rows) {
  fillRows($("deployments-body"), rows.map((d) => {
    const tr = document.createElement("tr");
    tr.append(cell(d.deployment), cell(num(d.requests)), cell(ms(d.ttft_p50_ms)), cell(ms(d.ttft_p95_ms)),
      cell(d.tokens_per_s == null ? "–" : d.tokens_per_s.toFixed(1)), cell(pct(d.error_rate)),
      cell(d.breaker ? d.breaker.replace("_", "-") : "–", "breaker-" + d.breaker), cell(num(d.in_flight)));
    return tr;
  }), "No deployments.");
}

function route(r) {
  if (!r.attempt_log || !r.attempt_log.length) return r.deployment || (r.status >= 400 ? "refused" : "–");
  return r.attempt_log.map((a) => `${a.deployment} ${a.outcome === "ok" ? "✓" : "✗ " + a.outcome}`).join(" → ");
}

function renderRecent(rows) {
  fillRows($("recent-body"), rows.map((r) => {
    const tr = document.createElement("tr");
    const link = document.createElement("a");
    link.href = "/admin/requests/" + encodeURIComponent(r.request_id);
    link.textContent = when(r.created_at);
    link.setAttribute("aria-label", `Request ${r.request_id} at ${when(r.created_at)}`);
    const first = document.createElement("td");
    first.append(link);
    tr.append(first, cell(r.model), cell(route(r), "route"), cell(String(r.status), r.status >= 400 ? "bad" : "ok"),
      cell(`${num(r.input_tokens)} / ${num(r.output_tokens)}`), cell(usd(r.cost_usd)));
    return tr;
  }), "No requests in this range.");
}

let loading = false;

async function refresh() {
  if (loading) return;
  loading = true;
  const params = query();
  const bucket = bucketFor(params);
  const stack = $("stack").value;
  $("export").href = "/admin/api/ledger.csv?" + new URLSearchParams(params);
  try {
    const [summary, spend, saved, deployments, keys, recent] = await Promise.all([
      api("/admin/api/summary", params),
      api("/admin/api/spend", { ...params, group_by: stack, bucket }),
      api("/admin/api/savings", { ...params, bucket }),
      api("/admin/api/deployments", params),
      api("/admin/api/key-usage", params),
      api("/admin/api/ledger", { ...params, limit: 20 }),
    ]);
    renderTotals(summary.data);
    const buckets = slots(params, bucket);
    slotFormat = bucket === "day" ? dayFormat : hourFormat;
    $("bucket-note").textContent = bucket === "day" ? "One bar per UTC day." : "One bar per hour, in your time zone.";
    renderSpend(spend.data, stack, buckets);
    renderSavings(saved, buckets);
    renderKeys(keys.data);
    renderDeployments(deployments.data);
    renderRecent(recent.data);
    $("status").className = "status";
    $("status").textContent = `Showing ${when(params.start)} – ${when(params.end)}. Updated ${when(new Date().toISOString())}.`;
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (error) {
    $("status").className = "status bad";
    $("status").textContent = "Could not load: " + error.message;
  } finally {
    loading = false;
  }
}

function overview() {
  restore();
  const changed = () => { showCustom(); remember(); refresh(); };
  for (const name of ["range", "from", "to", "key", "model", "provider", "stack"]) $(name).addEventListener("change", changed);
  $("controls").addEventListener("submit", (event) => { event.preventDefault(); remember(); refresh(); });
  setInterval(() => { if ($("auto").checked && !document.hidden) refresh(); }, REFRESH_MS);
  refresh();
}

/* ---- one request ---- */

function field(list, name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.append(dt, dd);
}

const PROMPT_PARTS = [["messages", "Prompt, as the client sent it"], ["augmented", "Prompt as sent upstream (augmented)"],
  ["answer", "Answer"]];

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (error) { return String(text); }
}

function renderPrompt(prompt) {
  const box = $("prompt");
  if (prompt == null) {
    box.textContent = "Not stored: prompt monitoring did not keep this request's prompt.";
    return;
  }
  const parts = PROMPT_PARTS.filter(([name]) => prompt[name] != null).flatMap(([name, title]) => {
    const h = document.createElement("h3");
    h.textContent = title;
    const pre = document.createElement("pre");
    pre.textContent = pretty(prompt[name]);
    const cut = prompt.truncated && prompt.truncated[name];
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = cut ? `Cut to ${num(prompt.cap_chars)} of ${num(cut)} characters.` : "";
    return cut ? [h, pre, note] : [h, pre];
  });
  box.replaceChildren(...parts);
}

async function requestPage() {
  const id = $("request").dataset.requestId;
  try {
    const r = await api("/admin/api/requests/" + encodeURIComponent(id));
    const list = $("fields");
    list.replaceChildren();
    field(list, "Time", when(r.created_at));
    field(list, "Model", r.model);
    field(list, "Answered by", r.deployment || "–");
    field(list, "Key", r.key_id || "(no key)");
    field(list, "Status", String(r.status));
    field(list, "Finish reason", r.finish_reason || "–");
    field(list, "Tokens in / out", `${num(r.input_tokens)} / ${num(r.output_tokens)}${r.usage_estimated ? " (estimated)" : ""}`);
    field(list, "Cost", usd(r.cost_usd));
    field(list, "Latency", ms(r.latency_ms));
    field(list, "Time to first token", ms(r.ttft_ms));
    field(list, "Streamed", r.streamed ? (r.cancelled ? "yes, cancelled by the client" : "yes") : "no");
    field(list, "Routing policy", r.policy || "–");
    if (r.error) field(list, "Error", r.error);
    if (r.retrieval_ms != null) {
      const chunks = Array.isArray(r.rag_chunks) ? r.rag_chunks.length : 0;
      field(list, "Retrieval (RAG)", `${ms(r.retrieval_ms)}, ${chunks} chunk${chunks === 1 ? "" : "s"} added to the prompt`);
    }
    fillRows($("attempts-body"), r.attempts.map((a, i) => {
      const tr = document.createElement("tr");
      tr.append(cell(String(i + 1)), cell(a.deployment + (a.hedge ? " (hedge)" : "")),
        cell(a.outcome, a.outcome === "ok" ? "ok" : "bad"), cell(a.status == null ? "–" : String(a.status)),
        cell(Number(a.start_ms).toFixed(1)), cell(Number(a.elapsed_ms).toFixed(1)), cell(a.message || ""));
      return tr;
    }), "No attempts: the request was refused before routing.");
    renderPrompt(r.prompt);
    $("status").textContent = "";
    document.body.dataset.loaded = "1";
  } catch (error) {
    $("status").className = "status bad";
    $("status").textContent = "Could not load: " + error.message;
  }
}

$("tz").textContent = Intl.DateTimeFormat().resolvedOptions().timeZone || "your time zone";
if (document.body.dataset.page === "overview") overview();
if (document.body.dataset.page === "request") requestPage();
