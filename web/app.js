/* rpr dashboard: one page over rprd's API, no library.
 *
 * Every object comes from one stream, GET /api/v1/watch (every kind,
 * newline-delimited {"type","object"}), kept in `objects` and rendered again
 * when it changes: the page is live without reloads. Writes are the API's
 * own requests — enrolling is POST /api/v1/apply of the same object
 * `rprctl apply` would send — with the token in an HttpOnly cookie set by
 * POST /api/v1/login (the page never sees it after the login form). Write
 * controls are shown only to roles the API would let through. */
"use strict";

const KINDS = ["Server", "Repo", "Binding", "Command", "Run", "Token", "Pipeline", "Runner", "Sync"];
const ROLES = {anonymous: 0, viewer: 1, operator: 2, admin: 3};
const INTERVALS = ["1m", "5m", "15m", "30m", "1h", "6h", "12h", "24h", "168h"];
const FINISHED = ["Succeeded", "Failed", "Canceled", "Interrupted"];

const objects = new Map(KINDS.map((k) => [k, new Map()]));
let session = {role: "anonymous", authenticated: false, anonymousRead: false};
let health = null;
let watchAbort = null;
let renderQueued = false;
let logFollow = null; /* {name, abort} while a run's page follows its output */
let checkHtml = "";   /* the last server check's answer, shown under the servers */

/* ---- small helpers ------------------------------------------------------------ */

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) =>
  ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const short = (sha) => (sha ? String(sha).slice(0, 12) : "");
const can = (role) => ROLES[session.role] >= ROLES[role];
const key = (o) => `${o.metadata.namespace}/${o.metadata.name}`;
const list = (kind) => [...objects.get(kind).values()].sort((a, b) => key(a).localeCompare(key(b)));
const cond = (o, type) => (o.status?.conditions || []).find((c) => c.type === type);

function ago(t) {
  if (!t) return "";
  const s = Math.round((Date.now() - Date.parse(t)) / 1000);
  if (Number.isNaN(s)) return esc(t);
  const abs = Math.abs(s);
  const v = abs < 60 ? `${abs}s` : abs < 3600 ? `${Math.floor(abs / 60)}m` : abs < 86400 ?
    `${Math.floor(abs / 3600)}h` : `${Math.floor(abs / 86400)}d`;
  return `<time datetime="${esc(t)}" title="${esc(t)}">${s >= 0 ? `${v} ago` : `in ${v}`}</time>`;
}

function toast(msg) {
  const t = $("#toast");
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}

async function api(method, path, body) {
  const init = {method, headers: {}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { /* text answers (logs) */ }
  if (!r.ok) throw new Error(json?.message || `${r.status} ${r.statusText}`);
  return json ?? text;
}

function plural(kind) {
  return {Server: "servers", Repo: "repos", Binding: "bindings", Command: "commands", Run: "runs", Token: "tokens",
    Pipeline: "pipelines", Runner: "runners", Sync: "syncs"}[kind];
}

function objPath(kind, ns, name, sub) {
  return `/api/v1/namespaces/${encodeURIComponent(ns)}/${plural(kind)}/${encodeURIComponent(name)}` +
    (sub ? `/${sub}` : "");
}

/* ---- the stream ----------------------------------------------------------------- */

/* Reads a streamed answer, handing fn the complete, non-empty lines of
 * each piece as it arrives (and what is left at the end). */
async function eachLines(r, fn) {
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buf += dec.decode(value, {stream: true});
    const nl = buf.lastIndexOf("\n");
    if (nl < 0) continue;
    fn(buf.slice(0, nl).split("\n").filter(Boolean));
    buf = buf.slice(nl + 1);
  }
  if (buf) fn([buf]);
}

function setLive(text, bad) {
  const p = $("#live");
  p.textContent = text;
  p.className = bad ? "live bad" : "live";
}

async function watch() {
  if (watchAbort) watchAbort.abort();
  const ctl = new AbortController();
  watchAbort = ctl;
  for (const m of objects.values()) m.clear();
  try {
    const r = await fetch("/api/v1/watch", {signal: ctl.signal});
    if (r.status === 401 || r.status === 403) {
      setLive("This rprd shows nothing without a token: log in.", true);
      render(true);
      return;
    }
    if (!r.ok) throw new Error(`${r.status}`);
    setLive("Live: changes appear as they happen.");
    await eachLines(r, (lines) => lines.forEach((line) => apply(JSON.parse(line))));
    throw new Error("the stream ended");
  } catch (e) {
    if (ctl.signal.aborted) return;
    if (e instanceof FellBehind) {
      /* rprd keeps a bounded backlog per watcher: list everything again */
      setLive("Fell behind rprd's changes; listing again…", true);
      watch();
      return;
    }
    setLive(`Disconnected (${e.message}); reconnecting…`, true);
    setTimeout(() => { if (watchAbort === ctl) watch(); }, 2000);
  }
}

class FellBehind extends Error {}

function apply(ev) {
  if (ev.type === "ERROR") {
    if (ev.object?.code === 410) throw new FellBehind("410");
    throw new Error(ev.object?.message || "watch error");
  }
  const o = ev.object;
  const m = objects.get(o?.kind);
  if (!m) return;
  if (ev.type === "DELETED") m.delete(key(o));
  else m.set(key(o), o);
  queueRender();
}

function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}

async function pollHealth() {
  try { health = await api("GET", "/healthz"); } catch (e) { health = null; }
  if (route().view === "overview") queueRender();
}

/* ---- session ------------------------------------------------------------------------ */

async function loadSession() {
  try { session = await api("GET", "/api/v1/session"); } catch (e) { /* stays anonymous */ }
  renderSession();
}

function renderSession() {
  const el = $("#session");
  if (session.authenticated) {
    el.innerHTML = `<span>Signed in as <strong>${esc(session.name)}</strong> (${esc(session.role)})</span>
      <button type="button" id="logout">Log out</button>`;
    $("#logout").onclick = logout;
    return;
  }
  el.innerHTML = `<form id="login" aria-label="Log in">
      <label for="login-token" class="muted">API token</label>
      <input id="login-token" type="password" autocomplete="off" required>
      <button type="submit">Log in</button></form>
      <span class="muted">${session.anonymousRead ? "Read-only" : ""}</span>`;
  $("#login").onsubmit = async (e) => {
    e.preventDefault();
    try {
      session = await api("POST", "/api/v1/login", {token: $("#login-token").value});
      renderSession();
      watch();
    } catch (err) {
      toast(`Log in: ${err.message}`);
    }
  };
}

async function logout() {
  try { session = await api("POST", "/api/v1/logout"); } catch (e) { toast(e.message); }
  renderSession();
  watch();
}

/* ---- routing -------------------------------------------------------------------------- */

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const view = parts[0] || "overview";
  return {view, ns: parts.length > 2 ? parts[1] : "default", name: parts.length > 2 ? parts[2] : parts[1]};
}

const VIEWS = {overview, servers, repos, bindings, commands, runs, tokens, pipelines, runners, syncs, logs};

/* What has the keyboard focus, to find it again in the new HTML. */
function focusKey() {
  const a = document.activeElement;
  if (!a || !$("#main").contains(a)) return null;
  if (a.id) return `#${CSS.escape(a.id)}`;
  if (a.dataset.act) return `[data-act="${CSS.escape(a.dataset.act)}"][data-name="${CSS.escape(a.dataset.name)}"]`;
  if (a.getAttribute("href")) return `a[href="${CSS.escape(a.getAttribute("href"))}"]`;
  return null;
}

function render(force) {
  const r = route();
  for (const a of document.querySelectorAll("#nav a")) {
    const v = a.getAttribute("href").replace(/^#\/?/, "") || "overview";
    if (v === r.view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (r.view === "runs" && r.name) return runPage(r);
  if (logFollow) { logFollow.abort.abort(); logFollow = null; }
  /* The logs are read on demand, not from the stream. */
  if (r.view === "logs" && !force && $("#activity-log")) return;
  const fn = VIEWS[r.view] || overview;
  const main = $("#main");
  const focused = focusKey();
  /* What the user opened stays open when a change redraws the page. */
  const opened = [...main.querySelectorAll("details[data-key][open]")].map((d) => d.dataset.key);
  main.innerHTML = fn(r);
  wire(main);
  for (const k of opened) main.querySelector(`details[data-key="${CSS.escape(k)}"]`)?.setAttribute("open", "");
  if (focused) main.querySelector(focused)?.focus();
}

/* Buttons carry data-act="verb" data-kind data-ns data-name. */
function wire(root) {
  for (const b of root.querySelectorAll("[data-act]")) b.onclick = () => act(b.dataset);
}

/* ---- tables ------------------------------------------------------------------------------ */

function table(caption, cols, rows, empty) {
  if (!rows.length) return `<p class="empty">${esc(empty)}</p>`;
  return `<table class="rows"><caption>${esc(caption)}</caption><thead><tr>` +
    cols.map((c) => `<th scope="col">${esc(c)}</th>`).join("") + `</tr></thead><tbody>` +
    rows.map((cells) => "<tr>" + cells.map((c, i) =>
      `<td data-label="${esc(cols[i])}"${cols[i] === "Actions" ? ' class="actions"' : ""}>${c ?? ""}</td>`).join("") +
      "</tr>").join("") + "</tbody></table>";
}

function btn(act, o, label, role, cls) {
  if (!can(role)) return "";
  return `<button type="button" data-act="${act}" data-kind="${esc(o.kind)}" data-ns="${esc(o.metadata.namespace)}"
    data-name="${esc(o.metadata.name)}"${cls ? ` class="${cls}"` : ""}
    aria-label="${esc(label)} ${esc(o.kind.toLowerCase())} ${esc(o.metadata.name)}">${esc(label)}</button>`;
}

function nameCell(o) {
  const managed = o.metadata.managedBy ? ` <span class="badge warn" title="from a config repo: ${esc(o.metadata.managedBy)}">managed</span>` : "";
  return `<strong>${esc(o.metadata.name)}</strong>${o.metadata.namespace !== "default" ? ` <span class="muted">${esc(o.metadata.namespace)}</span>` : ""}${managed}`;
}

function readyCell(o, type = "Ready") {
  const c = cond(o, type);
  if (!c) return '<span class="muted">–</span>';
  return `<span class="${c.status === "True" ? "ok" : "bad"}" title="${esc(c.message)}">${esc(c.reason)}</span>`;
}

/* ---- overview -------------------------------------------------------------------------------- */

function overview() {
  const cards = [];
  const card = (n, what, cls) => cards.push(`<div class="card"><div class="n ${cls || ""}">${n}</div><div class="what">${esc(what)}</div></div>`);
  for (const k of KINDS) card(objects.get(k).size, `${plural(k)}`);
  const notReady = KINDS.flatMap((k) => list(k)).filter((o) => cond(o, "Ready")?.status === "False");
  card(notReady.length, "not Ready", notReady.length ? "bad" : "ok");
  const unreachable = list("Server").filter((o) => o.status?.phase === "Unreachable");
  card(unreachable.length, "servers unreachable", unreachable.length ? "bad" : "ok");
  const running = list("Run").filter((o) => ["Pending", "Running"].includes(o.status?.phase));
  card(running.length, "runs in progress");
  const failing = list("Binding").filter((o) => cond(o, "Deployed")?.reason === "RunFailed");
  card(failing.length, "bindings failing", failing.length ? "bad" : "ok");
  const expiring = list("Token").filter((o) => cond(o, "Expired")?.status === "True" || cond(o, "ExpiringSoon")?.status === "True");
  card(expiring.length, "tokens expired or expiring", expiring.length ? "warn" : "ok");

  const loops = health?.loops ? Object.entries(health.loops).map(([n, t]) => [esc(n), ago(t)]) : [];
  const problems = [
    ...unreachable.map((o) => [nameCell(o), "Server", esc(cond(o, "Reachable")?.message || "unreachable")]),
    ...failing.map((o) => [nameCell(o), "Binding", esc(cond(o, "Deployed")?.message)]),
    ...expiring.map((o) => [nameCell(o), "Token", esc(o.status?.expiresIn ? `expires in ${o.status.expiresIn}` : "expired")]),
    ...notReady.filter((o) => o.kind !== "Server").map((o) => [nameCell(o), esc(o.kind), esc(cond(o, "Ready").message)]),
  ];
  return `<h2>Overview</h2><div class="cards" aria-label="Counts">${cards.join("")}</div>
    <h3>Needs attention</h3>${table("Objects that are not well", ["Name", "Kind", "Why"], problems, "Nothing needs attention.")}
    <h3>Loops</h3>${table("Each loop's last tick (from /healthz)", ["Loop", "Last tick"], loops, "rprd's health is not known.")}
    <p class="muted">Store: ${esc(health?.store || "?")}, revision ${esc(health?.revision ?? "?")}.</p>`;
}

/* ---- servers ------------------------------------------------------------------------------------- */

function servers() {
  const rows = list("Server").map((o) => {
    const s = o.status || {}, m = s.metrics || {};
    const active = o.spec.active !== false;
    const phase = s.phase || "Unknown";
    return [nameCell(o),
      esc(o.spec.transport === "local" ? "local" : `${o.spec.user || "root"}@${o.spec.host}:${o.spec.port || 22}`),
      `<span class="${phase === "Reachable" ? "ok" : phase === "Unreachable" ? "bad" : "muted"}">${esc(phase)}</span>`,
      ago(s.lastLoginTime), ago(s.lastCheckTime),
      m.load1 !== undefined ? esc(`${Number(m.load1).toFixed(2)} / ${Math.round(m.memUsedPercent)}% / ${Math.round(m.diskUsedPercent)}%`) : "",
      btn("check", o, "Check now", "operator") + btn(active ? "deactivate" : "activate", o, active ? "Deactivate" : "Activate", "admin") +
      btn("delete", o, "Delete", "admin", "danger")];
  });
  return `<h2>Servers</h2><div class="bar">${can("admin") ? '<button type="button" class="primary" id="enroll-server">Enroll a server</button>' : ""}</div>
    ${table("Servers", ["Name", "Where", "Phase", "Last login", "Last check", "Load / mem / disk", "Actions"], rows, "No servers yet.")}
    <div id="check-output" aria-live="polite">${checkHtml}</div>`;
}

function serverForm() {
  openDialog("Enroll a server", `
    ${field("name", "Name", '<input id="f-name" required pattern="[a-z0-9]([a-z0-9\\-]*[a-z0-9])?" maxlength="63">', "lower case letters, digits and -")}
    ${field("labels", "Labels", '<input id="f-labels" placeholder="role=web, env=prod">', "key=value, comma separated")}
    ${field("transport", "Transport", '<select id="f-transport"><option>ssh</option><option>local</option></select>')}
    ${field("host", "Host", '<input id="f-host">', "ssh only")}
    ${field("port", "Port", '<input id="f-port" type="number" min="1" max="65535" value="22">')}
    ${field("user", "User", '<input id="f-user" value="deploy">')}
    ${field("identity", "Private key file", '<input id="f-identity" placeholder="/etc/rpr/keys/deploy_ed25519">', "or a keyRef Token below")}
    ${field("keyref", "Key Token (keyRef)", '<input id="f-keyref">')}
    ${field("hostkey", "Host key", '<input id="f-hostkey" placeholder="ssh-ed25519 SHA256:...">', "pinned fingerprint; empty: accept the first one seen")}
    ${field("interval", "Check interval", intervalSelect("f-interval", "12h"))}`, () => {
    const t = val("f-transport");
    const spec = {transport: t, check: {interval: val("f-interval")}};
    if (t === "ssh") {
      Object.assign(spec, {host: val("f-host"), port: Number(val("f-port") || 22), user: val("f-user")});
      if (val("f-identity")) spec.identityFile = val("f-identity");
      if (val("f-keyref")) spec.keyRef = val("f-keyref");
      if (val("f-hostkey")) spec.hostKey = val("f-hostkey"); else spec.hostKeyPolicy = "accept-new";
    }
    return {apiVersion: "rpr/v1", kind: "Server", metadata: meta(val("f-name"), val("f-labels")), spec};
  });
}

/* ---- repos ----------------------------------------------------------------------------------------- */

function repos() {
  const rows = list("Repo").map((o) => {
    const c = o.status?.lastCommit;
    const active = o.spec.active !== false;
    return [nameCell(o), esc(o.spec.provider || "github"),
      esc(o.spec.url || `${o.spec.owner}/${o.spec.name}`), esc(o.spec.branch || "main"), esc(o.spec.interval || "24h"),
      active ? '<span class="ok">yes</span>' : '<span class="muted">no</span>',
      c ? `<code>${esc(short(c.sha))}</code> ${ago(c.time)} ${esc(c.author || "")}<br><span class="muted">${esc(c.message || "")}</span>` : "",
      ago(o.status?.lastCheckTime), readyCell(o),
      btn("check", o, "Check now", "operator") + btn("edit", o, "Edit", "admin") +
      btn(active ? "deactivate" : "activate", o, active ? "Deactivate" : "Activate", "admin") + btn("delete", o, "Delete", "admin", "danger")];
  });
  return `<h2>Repos</h2><div class="bar">${can("admin") ? '<button type="button" class="primary" id="enroll-repo">Enroll a repo</button>' : ""}</div>
    ${table("Repos", ["Name", "Provider", "Repository", "Branch", "Interval", "Active", "Last commit", "Last check", "Ready", "Actions"], rows, "No repos yet.")}`;
}

function repoForm(o) {
  const s = o?.spec || {};
  const branches = o?.status?.branches || [];
  const branchInput = branches.length ?
    `<select id="f-branch">${branches.map((b) => `<option${b === (s.branch || "main") ? " selected" : ""}>${esc(b)}</option>`).join("")}</select>` :
    `<input id="f-branch" value="${esc(s.branch || "main")}">`;
  openDialog(o ? `Edit repo ${o.metadata.name}` : "Enroll a repo", `
    ${o?.metadata.managedBy ? `<p class="warnbox">This repo comes from a config repo (${esc(o.metadata.managedBy)}): the config repo will win over edits made here.</p>` : ""}
    ${field("name", "Name", `<input id="f-name" required value="${esc(o?.metadata.name || "")}"${o ? " readonly" : ""}>`)}
    ${field("provider", "Provider", `<select id="f-provider"><option${s.provider === "git" ? "" : " selected"}>github</option><option${s.provider === "git" ? " selected" : ""}>git</option></select>`)}
    ${field("url", "URL", `<input id="f-url" required value="${esc(s.url || (s.owner ? `https://github.com/${s.owner}/${s.name}` : ""))}">`, "https://github.com/OWNER/NAME, or any git URL")}
    ${field("branch", "Branch", branchInput, branches.length ? "from the repository's branch list" : "")}
    ${field("interval", "Check interval", intervalSelect("f-interval", s.interval || "24h"))}
    ${field("tokenref", "Token (tokenRef)", `<input id="f-tokenref" value="${esc(s.tokenRef || "")}">`, "a github Token, for private repositories")}`, () => {
    const spec = {provider: val("f-provider"), url: val("f-url"), branch: val("f-branch"), interval: val("f-interval")};
    if (val("f-tokenref")) spec.tokenRef = val("f-tokenref");
    if (s.active === false) spec.active = false;
    return {apiVersion: "rpr/v1", kind: "Repo", metadata: keepMeta(o, val("f-name")), spec};
  });
}

/* ---- bindings ---------------------------------------------------------------------------------------- */

function bindings() {
  const rows = list("Binding").map((o) => {
    const per = Object.entries(o.status?.servers || {}).map(([srv, e]) =>
      `${esc(srv)}: <code>${esc(short(e.deployedCommit)) || "–"}</code> <span class="${e.lastRunPhase === "Failed" ? "bad" : "muted"}">${esc(e.lastRunPhase || "")}</span>`).join("<br>");
    const where = o.spec.server ? esc(o.spec.server) :
      esc(Object.entries(o.spec.servers?.matchLabels || {}).map(([k, v]) => `${k}=${v}`).join(","));
    const last = o.status?.lastRun;
    return [nameCell(o), esc(o.spec.repo), where, `<code>${esc((o.spec.command || "").split("\n")[0])}</code>`, per,
      last ? `<a href="#/runs/${esc(o.metadata.namespace)}/${esc(last)}">${esc(last)}</a>` : "", readyCell(o, "Deployed"),
      btn("trigger", o, "Trigger", "operator") + btn("edit", o, "Edit", "admin") + btn("delete", o, "Delete", "admin", "danger")];
  });
  return `<h2>Bindings</h2><div class="bar">${can("admin") ? '<button type="button" class="primary" id="create-binding">Create a binding</button>' : ""}</div>
    ${table("Bindings", ["Name", "Repo", "Servers", "Command", "Deployed", "Last run", "Deployed?", "Actions"], rows, "No bindings yet.")}`;
}

function bindingForm(o) {
  const s = o?.spec || {};
  const opts = (kind, cur) => list(kind).map((x) => `<option${x.metadata.name === cur ? " selected" : ""}>${esc(x.metadata.name)}</option>`).join("");
  const labels = Object.entries(s.servers?.matchLabels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  openDialog(o ? `Edit binding ${o.metadata.name}` : "Create a binding", `
    ${o?.metadata.managedBy ? `<p class="warnbox">This binding comes from a config repo (${esc(o.metadata.managedBy)}): the config repo will win over edits made here.</p>` : ""}
    ${field("name", "Name", `<input id="f-name" required value="${esc(o?.metadata.name || "")}"${o ? " readonly" : ""}>`)}
    ${field("repo", "Repo", `<select id="f-repo" required>${opts("Repo", s.repo)}</select>`)}
    ${field("server", "Server", `<select id="f-server"><option value="">(by labels)</option>${opts("Server", s.server)}</select>`)}
    ${field("labels", "Or servers with labels", `<input id="f-labels" value="${esc(labels)}" placeholder="role=web">`)}
    ${field("command", "Command", `<textarea id="f-command" required>${esc(s.command || "")}</textarea>`, "run by /bin/sh with RPR_COMMIT, RPR_REPO, RPR_SERVER, ...")}
    ${field("timeout", "Timeout", `<input id="f-timeout" value="${esc(s.timeout || "10m")}">`)}
    ${field("retries", "Retries", `<input id="f-retries" type="number" min="0" max="100" value="${esc(s.retries ?? 0)}">`)}`, () => {
    const spec = {repo: val("f-repo"), command: val("f-command"), timeout: val("f-timeout"), retries: Number(val("f-retries") || 0)};
    if (val("f-server")) spec.server = val("f-server");
    else spec.servers = {matchLabels: labelsOf(val("f-labels"))};
    for (const k of ["workdir", "env", "backoff", "waitTimeout", "deployOnCreate", "active", "history"])
      if (s[k] !== undefined) spec[k] = s[k];
    return {apiVersion: "rpr/v1", kind: "Binding", metadata: keepMeta(o, val("f-name")), spec};
  });
}

/* ---- commands: one command for servers that may be offline ---------------------------------------- */

function commands() {
  const rows = list("Command").sort((a, b) => (b.metadata.creationTimestamp || "").localeCompare(a.metadata.creationTimestamp || "")).map((o) => {
    const st = o.status || {}, n = st.counts || {};
    const per = Object.entries(st.servers || {}).map(([srv, e]) => {
      const cls = e.phase === "Succeeded" ? "ok" : FINISHED.includes(e.phase) ? "bad" : "muted";
      const exit = e.exitCode !== undefined ? ` exit ${esc(e.exitCode)}` : "";
      return `${esc(srv)}: <a href="#/runs/${esc(o.metadata.namespace)}/${esc(e.run)}" class="${cls}">${esc(e.phase || "Pending")}</a>` +
        ` <span class="muted">${esc(e.reason || "")}${exit}</span>`;
    }).join("<br>");
    const counts = `${esc(n.succeeded ?? 0)} of ${esc(n.total ?? 0)} done` +
      (n.failed ? `, <span class="bad">${esc(n.failed)} failed</span>` : "") + (n.waiting ? `, ${esc(n.waiting)} waiting` : "");
    return [nameCell(o), `<code>${esc((o.spec.command || "").split("\n")[0])}</code>`, counts, per,
      `<span class="${st.phase === "Succeeded" ? "ok" : st.phase === "Failed" ? "bad" : "warn"}">${esc(st.phase || "Pending")}</span>`,
      ago(st.startTime), btn("delete", o, "Delete", "admin", "danger")];
  });
  return `<h2>Commands</h2><p class="muted">One command for a set of servers, run by each as soon as it is online.</p>
    <div class="bar">${can("admin") ? '<button type="button" class="primary" id="run-command">Run a command</button>' : ""}</div>
    ${table("Commands, newest first", ["Name", "Command", "Progress", "Servers", "Phase", "Made", "Actions"], rows, "No commands yet.")}`;
}

function commandForm() {
  const stamp = new Date().toISOString().replace(/[^0-9]/g, "").slice(0, 14);
  openDialog("Run a command", `
    ${field("name", "Name", `<input id="f-name" required value="cmd-${stamp.slice(0, 8)}-${stamp.slice(8)}">`)}
    ${field("servers", "Servers", `<input id="f-servers" placeholder="pi-1, pi-2">`, "names, comma-separated")}
    ${field("labels", "Or servers with labels", `<input id="f-labels" placeholder="site=north">`, "chosen now: a server labelled later does not get it")}
    ${field("command", "Command", `<textarea id="f-command" required></textarea>`, "run once by /bin/sh on each server")}
    ${field("wait", "Wait for offline servers", `<input id="f-wait" value="24h">`, "e.g. 7d; then that server's run fails")}`, () => {
    const spec = {command: val("f-command"), waitTimeout: val("f-wait")};
    const names = val("f-servers").split(",").map((x) => x.trim()).filter(Boolean);
    if (names.length) spec.serverNames = names;
    else spec.servers = {matchLabels: labelsOf(val("f-labels"))};
    if (objects.get("Command").has(`default/${val("f-name")}`)) throw new Error(`command ${val("f-name")} exists: a command runs once; pick another name`);
    return {apiVersion: "rpr/v1", kind: "Command", metadata: meta(val("f-name")), spec};
  });
}

/* ---- runs -------------------------------------------------------------------------------------------- */

function runNumber(o) { return Number(o.metadata.name.split("-").pop()) || 0; }

function runs() {
  const all = list("Run").sort((a, b) => (b.metadata.creationTimestamp || "").localeCompare(a.metadata.creationTimestamp || "") || runNumber(b) - runNumber(a));
  const rows = all.slice(0, 200).map((o) => {
    const p = o.status?.phase || "Pending";
    return [`<a href="#/runs/${esc(o.metadata.namespace)}/${esc(o.metadata.name)}">${esc(o.metadata.name)}</a>`,
      esc(o.spec.owner?.name), esc(o.spec.server), phaseCell(o), o.status?.durationSeconds !== undefined ? esc(`${Number(o.status.durationSeconds).toFixed(1)}s`) : "",
      `<code>${esc(short(o.spec.commit))}</code>`, ago(o.status?.startTime)];
  });
  return `<h2>Runs</h2>${table(`Runs, newest first${all.length > 200 ? " (the last 200)" : ""}`, ["Run", "Owner", "Server", "Phase", "Duration", "Commit", "Started"], rows, "No runs yet.")}`;
}

function phaseCell(o) {
  const p = o.status?.phase || "Pending";
  const cls = p === "Succeeded" ? "ok" : ["Failed", "Interrupted"].includes(p) ? "bad" : p === "Running" ? "warn" : "muted";
  return `<span class="${cls}" title="${esc(o.status?.message || "")}">${esc(p)}</span> <span class="muted">${esc(o.status?.reason || "")}</span>`;
}

function runPage(r) {
  const o = objects.get("Run").get(`${r.ns}/${r.name}`);
  const main = $("#main");
  if (!o) {
    main.innerHTML = `<h2>Run ${esc(r.name)}</h2><p class="empty">No such run (yet).</p>`;
    return;
  }
  const s = o.status || {};
  const args = Object.entries(o.spec.args || {}).map(([k, v]) => `${k}=${v}`).join(" ");
  const facts = [["Phase", phaseCell(o)], ["Message", esc(s.message)], ["Owner", esc(`${o.spec.owner?.kind} ${o.spec.owner?.name}`)],
    ["Server", esc(o.spec.server)], ["Commit", o.spec.commit ? `<code>${esc(o.spec.commit)}</code>` : ""],
    ["Arguments", esc(args)], ["Attempt", esc(o.spec.attempt)], ["Triggered by", esc(o.spec.triggeredBy)],
    ["Started", ago(s.startTime)], ["Ended", ago(s.endTime)], ["Exit code", esc(s.exitCode ?? "")]].filter(([, v]) => v);
  const live = !FINISHED.includes(s.phase);
  let head = $("#run-head");
  if (!head || head.dataset.run !== key(o)) {
    const tasks = Object.keys(o.spec.tasks ? s.tasks || o.spec.tasks : {});
    const which = tasks.length ? `<label for="log-task">Output of</label> <select id="log-task">
      <option value="">the job</option>${tasks.map((t) => `<option>${esc(t)}</option>`).join("")}</select>` : "";
    main.innerHTML = `<h2>Run ${esc(o.metadata.name)}</h2><div id="run-head" data-run="${esc(key(o))}"></div>
      <div id="run-tasks"></div>
      <h3 id="log-title">Output</h3><div class="bar">${which}</div>
      <pre class="log" id="run-log" aria-labelledby="log-title" aria-live="off" tabindex="0"></pre>`;
    head = $("#run-head");
    const sel = $("#log-task");
    if (sel) sel.onchange = () => { $("#run-log").textContent = ""; followLog(o, sel.value); };
    followLog(o);
  }
  const tasks = Object.entries(s.tasks || {});
  $("#run-tasks").innerHTML = tasks.length ? table("Tasks", ["Task", "Server", "Phase", "Attempt", "Exit", "Took"],
    tasks.map(([k, t]) => [esc(k), esc(t.server || ""), `<span class="${t.phase === "Succeeded" ? "ok" : ["Failed", "Interrupted"].includes(t.phase) ? "bad" : "muted"}" title="${esc(t.message || "")}">${esc(t.phase)}</span>`,
      esc(t.attempt), esc(t.exitCode ?? ""), t.startTime && t.endTime ? esc(`${((Date.parse(t.endTime) - Date.parse(t.startTime)) / 1000).toFixed(2)}s`) : ""]), "") : "";
  head.innerHTML = `<dl class="facts">${facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("")}</dl>
    <div class="bar">${live ? btn("cancel", o, "Cancel", "operator", "danger") : ""}
    ${o.spec.owner?.kind ? `<a href="#/${plural(o.spec.owner.kind)}">${esc(o.spec.owner.kind)} ${esc(o.spec.owner.name)}</a>` : ""}</div>`;
  wire(head);
}

/* Streams the run's output file (or one task's) into #run-log, following
 * it while it runs. */
async function followLog(o, task) {
  if (logFollow) logFollow.abort.abort();
  const abort = new AbortController();
  logFollow = {name: key(o), abort};
  const pre = $("#run-log");
  try {
    const q = task ? `&task=${encodeURIComponent(task)}` : "";
    const r = await fetch(objPath("Run", o.metadata.namespace, o.metadata.name, "log") + "?follow=1" + q, {signal: abort.signal});
    if (!r.ok) throw new Error(`${r.status}`);
    await eachLines(r, (lines) => appendLog(pre, lines));
  } catch (e) {
    if (!abort.signal.aborted) appendLog(pre, [`(the output stream stopped: ${e.message})`]);
  }
}

function appendLog(pre, lines) {
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  for (const line of lines) {
    const span = document.createElement("span");
    const mark = line.split(" ", 2)[1];
    if (mark === "err" || mark === "rpr") span.className = mark;
    span.textContent = line + "\n";
    pre.appendChild(span);
  }
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

/* ---- tokens, pipelines, runners ------------------------------------------------------------------------ */

function tokens() {
  const rows = list("Token").map((o) => {
    const expired = cond(o, "Expired")?.status === "True", soon = cond(o, "ExpiringSoon")?.status === "True";
    return [nameCell(o), esc(o.spec.type), esc(o.spec.role || ""), esc(o.status?.expires || o.spec.expires || "never"),
      expired ? '<span class="bad">expired</span>' : soon ? `<span class="warn">expires in ${esc(o.status?.expiresIn)}</span>` : esc(o.status?.expiresIn || ""),
      ago(o.status?.lastUsed)];
  });
  return `<h2>Tokens</h2><p class="muted">Secrets are never shown: rprd does not give them out.</p>
    ${table("Tokens", ["Name", "Type", "Role", "Expires", "Warning", "Last used"], rows, "No tokens.")}`;
}

function pipelines() {
  const rows = list("Pipeline").map((o) => {
    const s = o.status || {}, jobs = list("Run").filter((r) => r.spec.pipeline === o.metadata.name);
    const last = s.lastRun ? objects.get("Run").get(`${o.metadata.namespace}/${s.lastRun}`) : null;
    return [nameCell(o), esc(Object.keys(o.spec.tasks || {}).length), esc(o.spec.schedule || ""),
      o.spec.trigger ? esc(`repo ${o.spec.trigger.repo}`) : "", esc(`${s.running || 0} / ${o.spec.concurrency || 1}`),
      esc(s.queued || 0), last ? `<a href="#/runs/${esc(o.metadata.namespace)}/${esc(last.metadata.name)}">${esc(last.metadata.name)}</a> ${phaseCell(last)}` : "",
      ago(s.nextScheduleTime), esc(jobs.length), btn("start", o, "Start", "operator")];
  });
  return `<h2>Pipelines</h2>${table("Pipelines", ["Name", "Tasks", "Schedule", "Trigger", "Running", "Queued", "Last job", "Next by schedule", "Jobs kept", "Actions"], rows, "No pipelines.")}`;
}

function startForm(o) {
  const args = Object.entries(o.spec.args || {});
  openDialog(`Start pipeline ${o.metadata.name}`, args.length ? args.map(([k, a]) =>
    field(k, k, `<input id="f-arg-${esc(k)}" value="${esc(a.default ?? "")}">`, a.description || "")).join("") :
    "<p>This pipeline takes no arguments.</p>", null, async () => {
    const given = {};
    for (const [k] of args) given[k] = document.getElementById(`f-arg-${k}`).value;
    const job = await api("POST", objPath("Pipeline", o.metadata.namespace, o.metadata.name, "runs"), {args: given});
    location.hash = `#/runs/${job.metadata.namespace}/${job.metadata.name}`;
    return `job ${job.metadata.name} started`;
  });
}

/* ---- runners --------------------------------------------------------------------------------------- */

function bytes(n) {
  if (n == null) return "";
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${(n / (1 << 20)).toFixed(0)} MiB`;
}

function runners() {
  const all = list("Runner");
  const rows = all.map((o) => {
    const s = o.status || {}, sp = o.spec, as = sp.autoscale, sa = s.autoscale || {};
    return [nameCell(o), esc(sp.repo ? `repo ${sp.repo}` : `org ${sp.org}`),
      esc(`${s.readyReplicas ?? 0} / ${as ? sa.desired ?? 0 : sp.replicas ?? 1}`), esc(s.busyReplicas ?? 0),
      esc(as ? as.min ?? 0 : ""), esc(as ? as.max : ""), esc(as ? sa.desired ?? 0 : ""), esc(as ? sa.queued ?? 0 : ""),
      esc(sp.mode || "native"), esc(s.version || ""), readyCell(o),
      btn("scale", o, "Scale", "admin") + btn("delete", o, "Delete", "admin", "danger")];
  });
  const insts = all.flatMap((o) => (o.status?.instances || []).map((i) => [
    `<strong>${esc(i.name)}</strong>`, esc(o.metadata.name), esc(i.server),
    `<span class="${["idle", "busy"].includes(i.state) ? "ok" : ["starting", "registering"].includes(i.state) ? "warn" : "bad"}" title="${esc(i.message || "")}">${esc(i.state)}</span>`,
    i.state === "busy" ? "yes" : "no", ago(i.lastHeartbeat),
    esc(i.cpuSeconds != null ? `${Number(i.cpuSeconds).toFixed(1)} s / ${bytes(i.memBytes)}` :
      i.cpuPercent != null ? `${Number(i.cpuPercent).toFixed(1)} % / ${bytes(i.memBytes)}` : ""),
    esc(i.containerId ? `container ${i.containerId}` : i.pid ? `pid ${i.pid}` : ""), esc(i.message || "")]));
  /* The last scale decisions of autoscaled Runners, newest first. */
  const decisions = all.flatMap((o) => (o.status?.autoscale?.history || []).map((d) => ({o, d})))
    .sort((a, b) => String(b.d.time).localeCompare(String(a.d.time))).slice(0, 20)
    .map(({o, d}) => [esc(o.metadata.name), ago(d.time), esc(d.from), esc(d.to), esc(d.reason)]);
  return `<h2>Runners</h2>
    ${table("Runners", ["Name", "For", "Ready", "Busy", "Min", "Max", "Desired", "Queued", "Mode", "Version", "Ready?", "Actions"], rows, "No runners.")}
    <h3>Instances</h3>
    ${table("Runner instances", ["Instance", "Runner", "Server", "State", "Busy", "Heartbeat", "CPU / memory", "Process", "Why"], insts, "No runner instances.")}
    <h3>Scale decisions</h3>
    ${table("Scale decisions", ["Runner", "When", "From", "To", "Why"], decisions, "No scale decisions (autoscaled Runners only).")}`;
}

function scaleForm(o) {
  const as = o.spec.autoscale;
  if (as) {
    openDialog(`Scale runner ${o.metadata.name}`,
      field("f-min", "Min", `<input id="f-min" type="number" min="0" max="100" value="${esc(as.min ?? 0)}">`, "Never fewer runners.") +
      field("f-max", "Max", `<input id="f-max" type="number" min="1" max="100" value="${esc(as.max)}">`,
        "Never more. Scaling down never stops a runner with a job."),
      () => ({apiVersion: "rpr/v1", kind: "Runner", metadata: keepMeta(o),
        spec: {...o.spec, autoscale: {...as, min: Number(val("f-min")), max: Number(val("f-max"))}}}));
    return;
  }
  openDialog(`Scale runner ${o.metadata.name}`,
    field("f-replicas", "Replicas", `<input id="f-replicas" type="number" min="0" max="100" value="${esc(o.spec.replicas ?? 1)}">`,
      "Scaling down never stops a runner with a job: it goes once the job is over."),
    () => ({apiVersion: "rpr/v1", kind: "Runner", metadata: keepMeta(o),
      spec: {...o.spec, replicas: Number(val("f-replicas"))}}));
}

/* ---- syncs ------------------------------------------------------------------------------------------ */

const INVENTORY_SHOWN = 200;

function syncDetails(o) {
  const s = o.status || {}, inv = s.inventory || [], errs = s.errors || [];
  const rows = inv.slice(0, INVENTORY_SHOWN).map((e) => `<li>${esc(e.kind)} ${esc(e.namespace)}/${esc(e.name)}</li>`).join("");
  return `<details data-key="sync:${esc(key(o))}"><summary>${esc(inv.length)} objects${errs.length ? `, <span class="bad">${esc(errs.length)} errors</span>` : ""}</summary>
    ${errs.length ? `<ul class="sync-errors" aria-label="errors of ${esc(o.metadata.name)}">${errs.map((e) => `<li><code>${esc(e)}</code></li>`).join("")}</ul>` : ""}
    <ul class="sync-inventory" aria-label="inventory of ${esc(o.metadata.name)}">${rows}${inv.length > INVENTORY_SHOWN ? `<li class="muted">and ${esc(inv.length - INVENTORY_SHOWN)} more (rprctl describe sync ${esc(o.metadata.name)})</li>` : ""}</ul></details>`;
}

function syncs() {
  const rows = list("Sync").map((o) => {
    const s = o.status || {}, rev = s.lastAppliedRevision || "";
    return [nameCell(o), esc(o.spec.repo), `<code>${esc(o.spec.path || ".")}</code>`,
      `<code>${esc(rev.replace(/sha1:([0-9a-f]{12})[0-9a-f]*/, "$1"))}</code>`, readyCell(o), syncDetails(o),
      ago(s.lastSyncTime), esc(s.drift?.corrected || 0),
      btn("sync", o, "Sync now", "admin") + btn("delete", o, "Delete", "admin", "danger")];
  });
  return `<h2>Syncs</h2><p class="muted">Manifests of a config repository, applied whole or not at all.</p>
    ${table("Syncs", ["Name", "Repo", "Path", "Revision", "Ready", "Objects", "Last sync", "Drift corrected", "Actions"], rows, "No syncs.")}`;
}

/* "Sync now", as rprctl sync does it: the Repo looks at its branch, then the
 * annotation rpr/requestedAt changes, which rprd answers by syncing. */
async function syncNow(o) {
  const ns = o.metadata.namespace, path = objPath("Sync", ns, o.metadata.name);
  await api("POST", objPath("Repo", ns, o.spec.repo, "check"));
  const token = new Date().toISOString();
  for (let tries = 1; ; tries++) {
    const now = await api("GET", path);
    const meta = {...now.metadata, annotations: {...(now.metadata.annotations || {}), "rpr/requestedAt": token}};
    try {
      await api("PUT", path, {apiVersion: now.apiVersion, kind: now.kind, metadata: meta, spec: now.spec});
      return;
    } catch (e) {
      /* rprd wrote the Sync's status in between: read it again. */
      if (tries === 5 || !/modified/.test(e.message)) throw e;
    }
  }
}

/* ---- logs ------------------------------------------------------------------------------------------- */

const logTail = {activity: 10, connectivity: 10};

function logs() {
  setTimeout(loadLogs, 0);
  return `<h2>Logs</h2>` + ["activity", "connectivity"].map((n) => `
    <h3 id="${n}-title">${n[0].toUpperCase() + n.slice(1)}</h3>
    <div class="bar"><label for="${n}-tail">Last</label>
      <select id="${n}-tail" data-log="${n}">${[10, 50, 200, 1000].map((t) => `<option${t === logTail[n] ? " selected" : ""}>${t}</option>`).join("")}</select>
      <span>lines</span> <button type="button" data-reload="${n}">Refresh</button></div>
    <pre class="log" id="${n}-log" aria-labelledby="${n}-title" tabindex="0">…</pre>`).join("");
}

async function loadLogs() {
  for (const n of ["activity", "connectivity"]) {
    const pre = document.getElementById(`${n}-log`);
    if (!pre) return;
    const sel = document.getElementById(`${n}-tail`);
    sel.onchange = () => { logTail[n] = Number(sel.value); loadLogs(); };
    document.querySelector(`[data-reload="${n}"]`).onclick = loadLogs;
    try {
      const text = await api("GET", `/api/v1/logs/${n}?tail=${logTail[n]}`);
      pre.textContent = text || "(empty)";
    } catch (e) {
      pre.textContent = `(cannot read it: ${e.message})`;
    }
  }
}

/* ---- forms ------------------------------------------------------------------------------------------ */

function field(id, label, control, hint) {
  const c = control.replace(/id="(f-[A-Za-z0-9_-]+)"/, (m, fid) => `id="${fid}"${hint ? ` aria-describedby="${fid}-hint"` : ""}`);
  const fid = (control.match(/id="(f-[A-Za-z0-9_-]+)"/) || [])[1];
  return `<div class="field"><label for="${fid}">${esc(label)}</label>${c}${hint ? `<span class="hint" id="${fid}-hint">${esc(hint)}</span>` : ""}</div>`;
}

function intervalSelect(id, cur) {
  const all = INTERVALS.includes(cur) ? INTERVALS : [...INTERVALS, cur];
  return `<select id="${id}">${all.map((i) => `<option${i === cur ? " selected" : ""}>${esc(i)}</option>`).join("")}</select>`;
}

const val = (id) => document.getElementById(id).value.trim();

function labelsOf(text) {
  const out = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [k, ...v] = part.split("=");
    out[k.trim()] = v.join("=").trim();
  }
  return out;
}

function meta(name, labels) {
  const m = {name, namespace: "default"};
  const l = labelsOf(labels || "");
  if (Object.keys(l).length) m.labels = l;
  return m;
}

/* An edit keeps what the form does not show: labels, annotations. */
function keepMeta(o, name) {
  if (!o) return meta(name);
  const m = {name: o.metadata.name, namespace: o.metadata.namespace};
  if (o.metadata.labels) m.labels = o.metadata.labels;
  if (o.metadata.annotations) m.annotations = o.metadata.annotations;
  return m;
}

/* A form in the dialog. On Save, build() makes the object to apply, or
 * submit() does something else and says what (both may throw). */
function openDialog(title, body, build, submit) {
  const d = $("#dialog");
  d.innerHTML = `<form method="dialog" id="dialog-form"><h2 id="dialog-title">${esc(title)}</h2>${body}
    <p id="dialog-error" class="bad" role="alert"></p>
    <div class="bar"><button type="submit" class="primary">Save</button><button type="button" id="dialog-cancel">Cancel</button></div></form>`;
  $("#dialog-cancel").onclick = () => d.close();
  $("#dialog-form").onsubmit = async (e) => {
    e.preventDefault();
    try {
      if (submit) {
        const said = await submit();
        d.close();
        toast(said);
        return;
      }
      const obj = build();
      await api("POST", "/api/v1/apply", [obj]);
      d.close();
      toast(`${obj.kind.toLowerCase()}/${obj.metadata.name} applied`);
    } catch (err) {
      $("#dialog-error").textContent = err.message;
    }
  };
  d.showModal();
  d.querySelector("input:not([readonly]), select, textarea")?.focus();
}

/* ---- actions ------------------------------------------------------------------------------------------ */

async function act({act: verb, kind, ns, name}) {
  const o = objects.get(kind).get(`${ns}/${name}`);
  const managedNote = o?.metadata.managedBy ? `\n\nIt comes from a config repo (${o.metadata.managedBy}), which will win.` : "";
  try {
    if (verb === "check" && kind === "Server") {
      checkHtml = `<p class="muted">Checking ${esc(name)}…</p>`;
      queueRender();
      const r = await api("POST", objPath(kind, ns, name, "check"));
      checkHtml = `<h3>Check of ${esc(name)}</h3><p class="${r.reachable ? "ok" : "bad"}">${esc(r.reachable ? `reachable in ${r.durationSeconds.toFixed(2)}s` : `${r.reason}: ${r.message}`)}</p>
        ${r.output ? `<pre class="log" id="check-uptime" aria-label="uptime output">${esc(r.output)}</pre>` : ""}`;
      queueRender();
    } else if (verb === "check") {
      await api("POST", objPath(kind, ns, name, "check"));
      toast(`${name}: checked`);
    } else if (verb === "trigger") {
      const r = await api("POST", objPath(kind, ns, name, "trigger"), {});
      toast(`${name}: ${r.runs.length} run(s) started${r.queued.length ? `, ${r.queued.length} queued` : ""}`);
    } else if (verb === "cancel") {
      await api("POST", objPath(kind, ns, name, "cancel"));
      toast(`${name}: canceling`);
    } else if (verb === "activate" || verb === "deactivate") {
      if (managedNote && !confirm(`${verb} ${name}?${managedNote}`)) return;
      const spec = {...o.spec, active: verb === "activate"};
      await api("POST", "/api/v1/apply", [{apiVersion: "rpr/v1", kind, metadata: keepMeta(o), spec}]);
      toast(`${name}: ${verb}d`);
    } else if (verb === "delete") {
      if (!confirm(`Delete ${kind.toLowerCase()} ${name}?${managedNote}`)) return;
      await api("DELETE", objPath(kind, ns, name));
      toast(`${name}: deleted`);
    } else if (verb === "sync") {
      await syncNow(o);
      toast(`${name}: sync asked`);
    } else if (verb === "start") {
      startForm(o);
    } else if (verb === "scale") {
      scaleForm(o);
    } else if (verb === "edit") {
      if (kind === "Repo") repoForm(o); else bindingForm(o);
    }
  } catch (e) {
    toast(`${verb} ${name}: ${e.message}`);
  }
}

/* ---- start ---------------------------------------------------------------------------------------------- */

document.addEventListener("click", (e) => {
  const id = e.target?.id;
  if (id === "enroll-server") serverForm();
  else if (id === "enroll-repo") repoForm(null);
  else if (id === "create-binding") bindingForm(null);
  else if (id === "run-command") commandForm();
});
window.addEventListener("hashchange", () => { render(true); $("#main").focus(); });

loadSession().then(watch);
pollHealth();
setInterval(pollHealth, 5000);
setInterval(() => { if (["overview", "servers", "repos", "runs"].includes(route().view)) queueRender(); }, 15000);
render(true);
