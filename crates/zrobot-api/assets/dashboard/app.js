// The zrobot dashboard: services, their tasks and logs, the graph of pending
// work and the templates, kept live by the robot's event stream.
//
// Everything comes from the REST API with the credential pasted into the
// page. It is kept in this tab's session storage and sent as a header, never
// in a URL; so `GET /events` is read with fetch and a streaming body (an
// EventSource cannot send headers). Every text from the robot is put in the
// page as text (textContent), never as markup: a service name or a log line
// cannot inject anything.
"use strict";

const CREDENTIAL_KEY = "zrobot.credential";
const LONG_WAIT_SECONDS = 30;
const FINISHED_SHOWN = 50;
const LOG_LINES_KEPT = 2000;
const GRAPH_NODES_DRAWN = 400;
const STATE_RANK = { new: 0, running: 1, ok: 2, error: 2 };

const S = {
  credential: loadCredential(),
  view: "services",
  services: new Map(), // guid -> Service
  selected: null, // guid
  tasks: new Map(), // guid -> task (of the selected service)
  full: new Map(), // guid -> the task as GET .../task_list/{guid} gives it
  expanded: new Set(),
  log: [],
  logNote: "",
  graph: null,
  templates: null,
  lastEventId: null,
  stream: null, // AbortController of the event stream
  dirty: new Set(),
  timers: new Map(),
};

// ---- small helpers -------------------------------------------------------

function $(id) { return document.getElementById(id); }

/** An element with attributes and children (strings become text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function badge(state) {
  return h("span", { class: "badge " + (state || "none") }, state || "—");
}

function when(unix) {
  if (unix === undefined || unix === null) return "";
  return new Date(unix * 1000).toLocaleString();
}

function seconds(d) {
  if (d === undefined || d === null) return "";
  return d < 1 ? (d * 1000).toFixed(1) + " ms" : d.toFixed(2) + " s";
}

function ago(unix) {
  if (!unix) return "";
  const d = Math.max(0, Date.now() / 1000 - unix);
  if (d < 60) return Math.floor(d) + " s";
  if (d < 3600) return Math.floor(d / 60) + " min";
  return Math.floor(d / 3600) + " h";
}

/** Runs `fn` once, `ms` after the last of several calls with the same key. */
function soon(key, ms, fn) {
  clearTimeout(S.timers.get(key));
  S.timers.set(key, setTimeout(() => { S.timers.delete(key); fn(); }, ms));
}

/** Redraws the named parts at the next frame, each once. */
function invalidate(...parts) {
  const first = S.dirty.size === 0;
  parts.forEach((p) => S.dirty.add(p));
  if (first) requestAnimationFrame(draw);
}

function draw() {
  const parts = S.dirty;
  S.dirty = new Set();
  if (parts.has("services")) drawServices();
  if (parts.has("detail")) drawDetail();
  if (parts.has("log")) drawLog();
  if (parts.has("graph")) drawGraph();
  if (parts.has("templates")) drawTemplates();
}

function notice(text, isError) {
  const n = $("notice");
  n.hidden = !text;
  n.textContent = text || "";
  n.className = "notice" + (isError ? " error" : "");
}

// ---- credentials and the API -------------------------------------------

function loadCredential() {
  try {
    const c = JSON.parse(sessionStorage.getItem(CREDENTIAL_KEY) || "null");
    if (c && typeof c.header === "string" && typeof c.token === "string" && c.token) return c;
  } catch (_) { /* none kept */ }
  return null;
}

function credentialHeaders() {
  const headers = {};
  if (S.credential) headers[S.credential.header] = "Bearer " + S.credential.token;
  return headers;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** GETs a JSON document of the API; an error answer throws its message. */
async function api(path) {
  const r = await fetch(path, { headers: credentialHeaders(), cache: "no-store" });
  if (!r.ok) {
    let message = r.status + " " + r.statusText;
    try { message = (await r.json()).message || message; } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, message);
  }
  return r.json();
}

function useCredential(header, token) {
  S.credential = token ? { header, token } : null;
  if (S.credential) sessionStorage.setItem(CREDENTIAL_KEY, JSON.stringify(S.credential));
  else sessionStorage.removeItem(CREDENTIAL_KEY);
  showCredential();
  S.templates = null;
  S.lastEventId = null;
  if (S.stream) S.stream.abort(); // the stream reconnects with the new one and reloads
  else refreshAll();
}

function showCredential() {
  const c = S.credential;
  $("cred-who").textContent = c ? "using a " + c.header + " credential" : "anonymous: public services only, no data";
  $("cred-token").value = "";
  if (c) $("cred-header").value = c.header;
}

// ---- loading --------------------------------------------------------------

async function refreshAll() {
  await refreshServices();
  if (S.selected) await loadService(S.selected);
  if (S.view === "graph") await refreshGraph();
  if (S.view === "templates") await refreshTemplates();
}

async function refreshServices() {
  try {
    const list = await api("/services");
    S.services = new Map(list.map((svc) => [svc.guid, svc]));
    notice("");
  } catch (e) {
    notice("Services could not be listed: " + e.message, true);
  }
  invalidate("services", "detail");
}

async function loadService(guid) {
  S.tasks = new Map();
  S.full = new Map();
  S.log = [];
  S.logNote = "";
  invalidate("detail", "log");
  await Promise.all([refreshService(guid), refreshTasks(guid), refreshLog(guid)]);
}

async function refreshService(guid) {
  try {
    const svc = await api("/services/" + guid);
    S.services.set(guid, svc);
  } catch (e) {
    if (e.status === 404) S.services.delete(guid);
  }
  invalidate("services", "detail");
}

async function refreshTasks(guid) {
  try {
    const tasks = await api("/services/" + guid + "/task_list?all=true");
    if (S.selected !== guid) return;
    for (const t of tasks) upsertTask(t);
  } catch (e) {
    if (S.selected === guid) S.taskNote = "Its tasks cannot be read: " + e.message;
  }
  invalidate("detail");
}

async function refreshLog(guid) {
  try {
    const { logs } = await api("/services/" + guid + "/logs");
    if (S.selected !== guid) return;
    S.log = logs ? logs.split("\n").filter((l) => l) : [];
    S.logNote = "";
  } catch (e) {
    if (S.selected !== guid) return;
    S.log = [];
    S.logNote = "Its log cannot be read with this credential (" + e.message + ").";
  }
  invalidate("log");
}

async function refreshGraph() {
  try {
    S.graph = await api("/graph");
  } catch (e) {
    S.graph = { error: e.message };
  }
  invalidate("graph");
}

async function refreshTemplates() {
  try {
    S.templates = await api("/templates");
  } catch (e) {
    S.templates = { error: e.message };
  }
  invalidate("templates");
}

/** Adds or updates a task of the selected service; a state never goes back. */
function upsertTask(t) {
  const old = S.tasks.get(t.guid);
  if (old && STATE_RANK[old.state] > STATE_RANK[t.state]) return;
  S.tasks.set(t.guid, Object.assign({}, old, t));
  if (t.state === "ok" || t.state === "error") S.full.delete(t.guid);
}

// ---- the event stream -----------------------------------------------------

async function follow() {
  for (;;) {
    const ctl = new AbortController();
    S.stream = ctl;
    try {
      const headers = credentialHeaders();
      if (S.lastEventId) headers["Last-Event-ID"] = S.lastEventId;
      const r = await fetch("/events", { headers, signal: ctl.signal, cache: "no-store" });
      if (!r.ok) throw new ApiError(r.status, "the event stream answered " + r.status);
      live(true);
      // Subscribed: what is loaded from now on cannot miss an event.
      if (!S.lastEventId) refreshAll();
      await readFrames(r.body.getReader());
    } catch (e) {
      if (!ctl.signal.aborted) notice("The event stream stopped (" + e.message + "); reconnecting.", true);
    }
    live(false);
    if (!ctl.signal.aborted) await new Promise((ok) => setTimeout(ok, 1000));
  }
}

async function readFrames(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      onFrame(frame);
    }
  }
}

function onFrame(frame) {
  let id = null;
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith("id:")) id = line.slice(3).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return; // a keep-alive comment
  if (id) S.lastEventId = id;
  let event;
  try { event = JSON.parse(data.join("\n")); } catch (_) { return; }
  onEvent(event);
}

function onEvent(e) {
  const guid = e.service && e.service.guid;
  switch (e.kind) {
    case "gap":
      // Events were missed: what is shown may be stale, load it again.
      soon("all", 200, refreshAll);
      return;
    case "service.created":
    case "service.deleted":
    case "service.upgraded":
      soon("services", 250, refreshServices);
      if (guid === S.selected) soon("service", 100, () => refreshService(guid));
      break;
    case "state.changed":
      soon("service:" + guid, 150, () => refreshService(guid));
      break;
    case "task.scheduled":
    case "task.started":
    case "task.finished":
      if (guid === S.selected) {
        upsertTask(Object.assign({ service_guid: guid }, e.task));
        invalidate("detail");
      }
      break;
    case "log":
      if (guid === S.selected && e.log) {
        const tag = e.log.action ? "[" + e.log.action + " " + (e.log.task || "").replace(/-/g, "").slice(0, 8) + "] " : "";
        S.log.push(new Date(e.time * 1000).toISOString() + " " + e.log.level + " " + tag + e.log.message);
        if (S.log.length > LOG_LINES_KEPT) S.log.splice(0, S.log.length - LOG_LINES_KEPT);
        invalidate("log");
      }
      break;
  }
  if (S.view === "graph" && e.kind.startsWith("task.")) soon("graph", 250, refreshGraph);
}

function live(on) {
  const el = $("live");
  el.className = "live " + (on ? "on" : "off");
  el.textContent = on ? "live" : "offline";
}

// ---- services ---------------------------------------------------------------

function worstState(svc) {
  const states = (svc.state || []).map((r) => r.state);
  for (const s of ["error", "warning", "ok", "skipped"]) if (states.includes(s)) return s;
  return null;
}

function drawServices() {
  const filter = $("filter").value.trim().toLowerCase();
  const rows = [...S.services.values()]
    .filter((svc) => !filter || svc.name.toLowerCase().includes(filter) || svc.template.toLowerCase().includes(filter))
    .sort((a, b) => a.name.localeCompare(b.name));
  const body = $("services").tBodies[0];
  body.replaceChildren(...rows.map((svc) => h("tr", {
    class: svc.guid === S.selected ? "selected" : "",
    "data-guid": svc.guid,
    onclick: () => select(svc.guid),
  },
  h("td", {}, svc.name, svc.public ? h("span", { class: "muted" }, " (public)") : ""),
  h("td", { class: "mono" }, templateName(svc.template)),
  h("td", {}, svc.version),
  h("td", {}, badge(worstState(svc))))));
  const empty = $("services-empty");
  empty.hidden = rows.length > 0;
  empty.textContent = S.services.size ? "No service matches the filter." :
    S.credential ? "This robot has no service this credential may see." :
      "No public service. Paste a credential above to see the others.";
}

function templateName(uid) {
  const parts = uid.split("/");
  return parts.length >= 2 ? parts[parts.length - 2] : uid;
}

function select(guid) {
  S.selected = guid;
  S.expanded = new Set();
  invalidate("services");
  loadService(guid);
}

function drawDetail() {
  const el = $("detail");
  const svc = S.selected && S.services.get(S.selected);
  if (!svc) {
    el.replaceChildren(h("p", { class: "muted" }, S.selected ? "This service is gone." : "Choose a service to see its state, tasks and log."));
    return;
  }
  const logBox = $("log") || h("pre", { id: "log", class: "mono" });
  el.replaceChildren(
    h("h2", {}, svc.name),
    h("div", { class: "muted mono" }, svc.guid, " · ", svc.template),
    h("h3", {}, "State"),
    stateTable(svc),
    h("h3", {}, "Data"),
    svc.data === undefined || svc.data === null
      ? h("p", { class: "muted" }, "Shown only with the god token.")
      : h("pre", { class: "data" }, JSON.stringify(svc.data, null, 2)),
    h("h3", {}, "Tasks"),
    taskTable(),
    h("h3", {}, "Log", h("label", { class: "follow" },
      h("input", { type: "checkbox", id: "log-follow", checked: S.followLog !== false, onchange: (ev) => { S.followLog = ev.target.checked; } }),
      " follow")),
    logBox,
  );
  drawLog();
}

function stateTable(svc) {
  if (!svc.state || !svc.state.length) return h("p", { class: "muted" }, "Its state table is empty.");
  return h("table", { class: "state" },
    h("thead", {}, h("tr", {}, h("th", {}, "category"), h("th", {}, "tag"), h("th", {}, "state"))),
    h("tbody", {}, svc.state.map((r) => h("tr", {}, h("td", {}, r.category), h("td", {}, r.tag), h("td", {}, badge(r.state))))));
}

function taskTable() {
  const all = [...S.tasks.values()];
  const pending = all.filter((t) => t.state === "new" || t.state === "running")
    .sort((a, b) => (STATE_RANK[b.state] - STATE_RANK[a.state]) || (a.created - b.created));
  const finished = all.filter((t) => t.state === "ok" || t.state === "error")
    .sort((a, b) => b.created - a.created).slice(0, FINISHED_SHOWN);
  if (!pending.length && !finished.length) {
    return h("p", { class: "muted" }, S.taskNote || "No task yet.");
  }
  const rows = [];
  for (const t of [...pending, ...finished]) {
    rows.push(h("tr", { class: "task " + t.state, "data-task": t.guid, onclick: () => toggleTask(t.guid) },
      h("td", {}, badge(t.state)),
      h("td", { class: "mono" }, t.action_name),
      h("td", {}, when(t.created)),
      h("td", {}, t.state === "running" ? "running " + ago(t.started) : seconds(t.duration)),
      h("td", { class: "eco" }, t.eco ? t.eco.message : "")));
    if (S.expanded.has(t.guid)) rows.push(h("tr", { class: "task-more" }, h("td", { colspan: 5 }, taskMore(t))));
  }
  return h("table", { class: "tasks" },
    h("thead", {}, h("tr", {}, h("th", {}, "state"), h("th", {}, "action"), h("th", {}, "scheduled"), h("th", {}, "ran"), h("th", {}, "error"))),
    h("tbody", {}, rows));
}

function toggleTask(guid) {
  if (S.expanded.has(guid)) S.expanded.delete(guid);
  else {
    S.expanded.add(guid);
    if (!S.full.has(guid)) loadFullTask(S.selected, guid);
  }
  invalidate("detail");
}

async function loadFullTask(svc, guid) {
  try {
    S.full.set(guid, await api("/services/" + svc + "/task_list/" + guid));
  } catch (e) {
    S.full.set(guid, { error: e.message });
  }
  invalidate("detail");
}

function taskMore(t) {
  const full = S.full.get(t.guid);
  if (!full) return h("span", { class: "muted" }, "loading…");
  if (full.error) return h("span", { class: "eco" }, full.error);
  const parts = [h("div", { class: "muted mono" }, "task ", full.guid, full.attempt > 1 ? " · attempt " + full.attempt : "")];
  parts.push(h("div", {}, "arguments"), h("pre", {}, JSON.stringify(full.args, null, 2)));
  if (full.result !== null && full.result !== undefined) {
    let result = full.result;
    try { result = JSON.stringify(JSON.parse(full.result), null, 2); } catch (_) { /* as given */ }
    parts.push(h("div", {}, "result"), h("pre", { class: "result" }, result));
  }
  if (full.eco) {
    parts.push(h("div", { class: "eco" }, full.eco.cat, ": ", full.eco.message),
      h("pre", { class: "trace" }, full.eco.trace || "(no traceback)"));
  }
  return parts;
}

function drawLog() {
  const box = $("log");
  if (!box) return;
  if (S.logNote) {
    box.textContent = S.logNote;
    return;
  }
  box.replaceChildren(...S.log.map((line) => {
    const level = line.split(" ")[1] || "";
    return h("div", { class: "log-" + level }, line);
  }));
  if (!S.log.length) box.textContent = "Its log is empty.";
  if (S.followLog !== false) box.scrollTop = box.scrollHeight;
}

// ---- the graph of pending work ------------------------------------------

/** Tasks on a cycle of "blocked by" edges (Tarjan's strongly connected parts). */
function cycles(nodes, out) {
  const index = new Map(), low = new Map(), onStack = new Set(), stack = [], inCycle = new Set();
  let next = 0;
  const visit = (v) => {
    index.set(v, next); low.set(v, next); next++;
    stack.push(v); onStack.add(v);
    for (const w of out.get(v) || []) {
      if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) === index.get(v)) {
      const part = [];
      let w;
      do { w = stack.pop(); onStack.delete(w); part.push(w); } while (w !== v);
      const selfLoop = (out.get(v) || []).includes(v);
      if (part.length > 1 || selfLoop) part.forEach((p) => inCycle.add(p));
    }
  };
  for (const v of nodes) if (!index.has(v)) visit(v);
  return inCycle;
}

function graphLayout(tasks, edges) {
  const out = new Map();
  for (const e of edges) {
    if (!out.has(e.from)) out.set(e.from, []);
    out.get(e.from).push(e.to);
  }
  const inCycle = cycles(tasks.map((t) => t.guid), out);
  // A task's level: the longest chain of what blocks it (0: blocked by nothing).
  const level = new Map(), busy = new Set();
  const levelOf = (v) => {
    if (level.has(v)) return level.get(v);
    if (busy.has(v)) return 0;
    busy.add(v);
    let l = 0;
    for (const w of out.get(v) || []) l = Math.max(l, levelOf(w) + 1);
    busy.delete(v);
    level.set(v, l);
    return l;
  };
  tasks.forEach((t) => levelOf(t.guid));
  const maxLevel = Math.max(0, ...level.values());
  // One lane per robot, this one first; the waiting on the left.
  const lanes = new Map([["", []]]);
  for (const t of tasks) {
    const key = t.robot || "";
    if (!lanes.has(key)) lanes.set(key, []);
    lanes.get(key).push(t);
  }
  const W = 210, H = 46, GAP_X = 70, GAP_Y = 14, PAD = 16, HEAD = 24;
  const pos = new Map(), groups = [];
  let y = PAD;
  for (const [robot, members] of [...lanes.entries()].sort((a, b) => (a[0] === "" ? -1 : b[0] === "" ? 1 : a[0].localeCompare(b[0])))) {
    if (!members.length && robot === "") continue;
    const rows = new Map();
    members.sort((a, b) => a.service_name.localeCompare(b.service_name));
    for (const t of members) {
      const col = maxLevel - level.get(t.guid);
      const row = rows.get(col) || 0;
      rows.set(col, row + 1);
      pos.set(t.guid, { x: PAD + 12 + col * (W + GAP_X), y: y + HEAD + row * (H + GAP_Y) });
    }
    const height = HEAD + Math.max(1, ...rows.values()) * (H + GAP_Y) + 4;
    groups.push({ robot, y, height });
    y += height + PAD;
  }
  const width = PAD * 2 + 24 + (maxLevel + 1) * (W + GAP_X) - GAP_X;
  return { pos, groups, width, height: y, W, H, inCycle, PAD };
}

function drawGraph() {
  const box = $("graph"), text = $("graph-text");
  const g = S.graph;
  if (!g) { box.replaceChildren(h("p", { class: "muted" }, "loading…")); return; }
  if (g.error) { box.replaceChildren(h("p", { class: "eco" }, "The graph cannot be read: " + g.error)); text.replaceChildren(); return; }
  if (!g.tasks.length) {
    box.replaceChildren(h("p", { class: "muted", id: "graph-empty" }, "No pending work: no task waits or runs."));
    text.replaceChildren();
    return;
  }
  const tasks = g.tasks.slice(0, GRAPH_NODES_DRAWN);
  const drawn = new Set(tasks.map((t) => t.guid));
  const edges = g.edges.filter((e) => drawn.has(e.from) && drawn.has(e.to));
  const L = graphLayout(tasks, edges);
  const byGuid = new Map(tasks.map((t) => [t.guid, t]));
  const now = Date.now() / 1000;
  const svg = s("svg", { width: L.width, height: L.height, viewBox: `0 0 ${L.width} ${L.height}`, role: "img" },
    s("defs", {},
      s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#57606a" }))));
  for (const grp of L.groups) {
    svg.append(s("g", { class: "group" + (grp.robot ? " remote" : " local"), "data-robot": grp.robot },
      s("rect", { x: L.PAD / 2, y: grp.y, width: L.width - L.PAD, height: grp.height, rx: 8 }),
      s("text", { x: L.PAD, y: grp.y + 16 }, grp.robot ? "robot " + grp.robot : "this robot")));
  }
  for (const e of edges) {
    const a = L.pos.get(e.from), b = L.pos.get(e.to);
    const cycle = L.inCycle.has(e.from) && L.inCycle.has(e.to);
    let d;
    if (b.x > a.x) {
      const x1 = a.x + L.W, y1 = a.y + L.H / 2, x2 = b.x, y2 = b.y + L.H / 2, mid = (x1 + x2) / 2;
      d = `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
    } else {
      // Back or sideways (a cycle, or two tasks of one column): around below.
      const x1 = a.x + L.W / 2, y1 = a.y + L.H, x2 = b.x + L.W / 2, y2 = b.y + L.H;
      const low = Math.max(y1, y2) + 30;
      d = `M${x1},${y1} C${x1},${low} ${x2},${low} ${x2},${y2}`;
    }
    svg.append(s("path", { class: "edge " + e.kind + (cycle ? " cycle" : ""), d, "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to, "data-kind": e.kind }));
  }
  for (const t of tasks) {
    const p = L.pos.get(t.guid);
    const remote = !!t.robot;
    const waitedLong = !remote && t.since && now - t.since > LONG_WAIT_SECONDS && (t.state === "new" || waitsOn(edges, t.guid));
    const cls = ["node", t.state || "remote", remote ? "remote" : "", L.inCycle.has(t.guid) ? "cycle" : "", waitedLong ? "long" : ""].join(" ");
    const sub = remote ? "on " + t.robot : (t.state || "") + (t.since ? " · " + ago(t.since) : "");
    svg.append(s("g", { class: cls, "data-guid": t.guid, "data-service": t.service_name, transform: `translate(${p.x},${p.y})` },
      s("title", {}, `${t.service_name} · ${t.action_name}\ntask ${t.guid}` + (t.template ? `\n${t.template}` : "")),
      s("rect", { width: L.W, height: L.H }),
      s("text", { x: 10, y: 19 }, clip(`${t.service_name} · ${t.action_name}`, 30)),
      s("text", { x: 10, y: 36, class: "sub" }, sub)));
  }
  box.replaceChildren(svg);
  if (g.tasks.length > tasks.length) box.append(h("p", { class: "muted" }, `${g.tasks.length - tasks.length} more pending tasks are not drawn.`));
  const name = (guid) => {
    const t = byGuid.get(guid);
    return t ? `${t.service_name} · ${t.action_name}` + (t.robot ? ` (robot ${t.robot})` : "") : guid;
  };
  text.replaceChildren(...edges.map((e) => h("li", { "data-kind": e.kind },
    name(e.from), e.kind === "waits_on" ? " waits on " : " is queued behind ", name(e.to),
    L.inCycle.has(e.from) && L.inCycle.has(e.to) ? h("strong", { class: "eco" }, " (cycle)") : "")));
}

function waitsOn(edges, guid) {
  return edges.some((e) => e.from === guid && e.kind === "waits_on");
}

function clip(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

// ---- templates ----------------------------------------------------------------

function drawTemplates() {
  const box = $("templates");
  const list = S.templates;
  if (!list) { box.replaceChildren(h("p", { class: "muted" }, "loading…")); return; }
  if (list.error) {
    box.replaceChildren(h("p", { class: "eco" }, "Templates cannot be listed: " + list.error),
      h("p", { class: "muted" }, "Listing templates needs an admin or user credential."));
    return;
  }
  if (!list.length) { box.replaceChildren(h("p", { class: "muted" }, "This robot has no template.")); return; }
  const repos = new Map();
  for (const t of list) {
    const key = `${t.host}/${t.account}/${t.repository}`;
    if (!repos.has(key)) repos.set(key, new Map());
    const names = repos.get(key);
    if (!names.has(t.name)) names.set(t.name, []);
    names.get(t.name).push(t);
  }
  const using = new Map();
  for (const svc of S.services.values()) using.set(svc.template, (using.get(svc.template) || 0) + 1);
  box.replaceChildren(...[...repos.entries()].sort().map(([repo, names]) => h("div", { class: "repo" },
    h("h2", { class: "mono" }, repo),
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "template"), h("th", {}, "versions"), h("th", {}, "services"))),
      h("tbody", {}, [...names.entries()].sort().map(([name, versions]) => h("tr", {},
        h("td", { class: "mono" }, name),
        h("td", {}, versions.map((v) => v.version).join(", ")),
        h("td", {}, versions.reduce((n, v) => n + (using.get(v.uid) || 0), 0)))))))));
}

// ---- the page ---------------------------------------------------------------

function show(view) {
  S.view = view;
  for (const tab of document.querySelectorAll("button.tab")) tab.classList.toggle("active", tab.dataset.view === view);
  for (const v of ["services", "graph", "templates"]) $("view-" + v).hidden = v !== view;
  if (view === "graph") refreshGraph();
  if (view === "templates") refreshTemplates();
}

function start() {
  for (const tab of document.querySelectorAll("button.tab")) tab.addEventListener("click", () => show(tab.dataset.view));
  $("credential").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("cred-token").value.trim();
    if (token) useCredential($("cred-header").value, token);
  });
  $("cred-forget").addEventListener("click", () => useCredential(null, null));
  $("filter").addEventListener("input", () => invalidate("services"));
  // Durations and "waiting over 30 s" move with the clock.
  setInterval(() => {
    if (S.view === "graph") refreshGraph();
    else if (S.selected) invalidate("detail");
  }, 5000);
  showCredential();
  follow();
}

start();
