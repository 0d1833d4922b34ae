// The faas live dashboard: reads /ui/events (server-sent events, through fetch so that the
// admin key can travel in the Authorization header) and draws what it says. Plain JS, no
// library. The key comes from the address's fragment (#key=KEY, never sent to the server),
// the form on the page, or this tab's session storage.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const MIB = 1024 * 1024;
const mem = (b) => (b >= 1024 * MIB ? (b / 1024 / MIB).toFixed(1) + " GiB" : Math.round(b / MIB) + " MiB");
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
const pct = (a, b) => (b > 0 ? Math.min(100, (100 * a) / b).toFixed(1) : 0) + "%";

let key = sessionStorage.getItem("faas-key") || "";
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("key")) {
  key = fragment.get("key");
  sessionStorage.setItem("faas-key", key);
  history.replaceState(null, "", location.pathname);
}

const seenContainers = new Set();
let firstState = true;
const history60 = new Map(); // function -> calls/s of the last 60 states
const decisions = []; // newest first
const seenDecisions = new Set();
const waiting = new Map(); // request -> {function, at}
const colds = [];

function status(text, on) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (on ? "on" : "off");
}

function spark(values) {
  const max = Math.max(1e-9, ...values);
  const pts = values.map((v, i) => `${(i * 100) / 59},${20 - (v / max) * 18}`).join(" ");
  return `<svg class="spark" viewBox="0 0 100 20" preserveAspectRatio="none"><polyline points="${pts}"/></svg>`;
}

function drawNodes(nodes) {
  const box = $("nodes");
  if (!nodes.length) {
    box.innerHTML = '<p class="empty">No node yet: invoke a function.</p>';
    return;
  }
  box.innerHTML = nodes.map((n) => {
    const cards = n.containers.map((c) => {
      const fresh = !firstState && !seenContainers.has(c.id);
      seenContainers.add(c.id);
      const cls = c.state === "dead" ? "dead" : c.in_flight > 0 ? "busy" : "";
      const idle = c.in_flight > 0 ? `${c.in_flight} in flight` : `idle ${Math.round(c.idle_for_ms / 1000)} s`;
      return `<div class="container ${cls}${fresh ? " new" : ""}" data-container-id="${esc(c.id)}" data-function="${esc(c.function)}" data-in-flight="${c.in_flight}">
        <b title="${esc(c.id)}">${esc(c.function)}</b>
        <span class="meta">${esc(c.state)} · ${idle}</span><br>
        <span class="meta">${mem(c.memory_used_bytes)} of ${mem(c.memory_limit_bytes)}</span>
        <div class="bar"><i class="used" style="width:${pct(c.memory_used_bytes, c.memory_limit_bytes)}"></i></div>
      </div>`;
    }).join("");
    return `<div class="node ${esc(n.state)}" data-node-id="${esc(n.id)}">
      <h3>${esc(n.id)} <small>${esc(n.address)}</small></h3>
      <span class="meta">${mem(n.committed_bytes)} committed, ${mem(n.used_bytes)} in use, of ${mem(n.total_bytes)}${n.error ? " — " + esc(n.error) : ""}</span>
      <div class="bar"><i style="width:${pct(n.committed_bytes, n.total_bytes)}"></i><i class="used" style="width:${pct(n.used_bytes, n.total_bytes)}"></i></div>
      <div class="containers">${cards || '<span class="empty">no container</span>'}</div>
    </div>`;
  }).join("");
}

function drawFunctions(fns, deployed) {
  const byName = new Map(fns.map((f) => [f.name, f]));
  for (const d of deployed) if (!byName.has(d.name)) byName.set(d.name, { name: d.name, rps: 0, latency_ms: 0, calls: 0, errors: 0, cold_starts: 0 });
  const rows = [...byName.values()].sort((a, b) => b.calls - a.calls || a.name.localeCompare(b.name));
  for (const f of rows) {
    const h = history60.get(f.name) || new Array(60).fill(0);
    h.push(f.rps);
    h.splice(0, h.length - 60);
    history60.set(f.name, h);
  }
  $("functions").tBodies[0].innerHTML = rows.map((f) => `<tr data-function="${esc(f.name)}" data-calls="${f.calls}">
    <td>${f.name === "-" ? "<i>(no such function)</i>" : esc(f.name)}</td><td class="num">${f.rps.toFixed(1)}</td>
    <td class="num">${f.calls ? f.latency_ms.toFixed(1) + " ms" : "—"}</td>
    <td class="num">${f.calls}</td><td class="num">${f.errors}</td><td class="num">${f.cold_starts}</td>
    <td>${spark(history60.get(f.name))}</td></tr>`).join("") || '<tr><td colspan="7" class="empty">No function deployed.</td></tr>';
}

function drawTargets(targets) {
  $("targets").tBodies[0].innerHTML = targets.map((t) => `<tr data-target="${esc(t.target)}">
    <td>${esc(t.target)}</td><td class="num">${t.rps.toFixed(1)}</td><td class="num">${t.calls}</td>
    <td class="num">${t.errors}</td><td>${t.breaker ? `<span class="badge ${t.breaker}">${t.breaker}</span>` : "—"}</td></tr>`).join("")
    || '<tr><td colspan="5" class="empty">No routed call yet.</td></tr>';
}

function onState(s) {
  const containers = s.nodes.reduce((n, node) => n + node.containers.length, 0);
  $("t-nodes").textContent = s.nodes.length;
  $("t-containers").textContent = containers;
  $("t-inflight").textContent = s.in_flight;
  $("t-rps").textContent = s.functions.reduce((a, f) => a + f.rps, 0).toFixed(1);
  $("t-cold").textContent = s.functions.reduce((a, f) => a + f.cold_starts, 0);
  drawNodes(s.nodes);
  drawFunctions(s.functions, s.deployed);
  drawTargets(s.targets);
  const p = $("problems");
  p.hidden = !s.problems.length;
  p.textContent = s.problems.join("; ");
  firstState = false;
}

function drawFeeds() {
  const hideWarm = $("hidewarm").checked;
  $("decisions").innerHTML = decisions.filter((d) => !(hideWarm && d.kind === "grant-warm")).slice(0, 100).map((d) => `<li data-kind="${esc(d.kind)}" data-function="${esc(d.function)}">
    <time>${clock(d.at_ms)}</time><span class="badge ${esc(d.kind)}">${esc(d.kind)}</span>
    ${d.function ? "<b>" + esc(d.function) + "</b> " : ""}${esc(d.reason)}</li>`).join("") || '<li class="empty">No decision yet.</li>';
  $("colds").innerHTML = colds.slice(0, 50).map((d) => `<li data-function="${esc(d.function)}"><time>${clock(d.at_ms)}</time>
    <b>${esc(d.function)}</b> on ${esc(d.node)} (container ${esc(d.container)})</li>`).join("") || '<li class="empty">None yet.</li>';
  const now = Date.now();
  $("waiting").innerHTML = [...waiting.entries()].map(([r, w]) => `<li><time>${Math.round((now - w.at) / 1000)} s</time>
    <b>${esc(w.function)}</b> request ${esc(r)}</li>`).join("") || '<li class="empty">Nobody waits.</li>';
  $("t-waiting").textContent = waiting.size;
}

function onDecision(d) {
  if (seenDecisions.has(d.seq)) return;
  seenDecisions.add(d.seq);
  decisions.unshift(d);
  decisions.splice(200);
  if (d.kind === "queue") waiting.set(d.request, { function: d.function, at: d.at_ms });
  if (d.kind.startsWith("grant") || d.kind === "reject") waiting.delete(d.request);
  if (d.kind === "grant-cold") { colds.unshift(d); colds.splice(100); }
  drawFeeds();
}

function onBlock(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return;
  const value = JSON.parse(data.join("\n"));
  if (name === "state") onState(value);
  else if (name === "decision") onDecision(value);
  else if (name === "problem") { const p = $("problems"); p.hidden = false; p.textContent = value.problem; }
}

async function connect() {
  status("connecting…", false);
  let response;
  try {
    response = await fetch("/ui/events", { headers: key ? { Authorization: "Bearer " + key } : {} });
  } catch (e) {
    status("cannot reach the API server", false);
    return setTimeout(connect, 2000);
  }
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    status((body.error && body.error.message) || "an admin key is needed", false);
    $("keyform").hidden = false;
    return;
  }
  if (!response.ok) {
    status("the API server answered " + response.status, false);
    return setTimeout(connect, 2000);
  }
  status("live", true);
  $("keyform").hidden = true;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let i;
      while ((i = buffer.indexOf("\n\n")) >= 0) {
        onBlock(buffer.slice(0, i));
        buffer = buffer.slice(i + 2);
      }
    }
  } catch (e) { /* the stream broke: reconnect */ }
  status("disconnected: reconnecting…", false);
  setTimeout(connect, 2000);
}

$("keyform").addEventListener("submit", (e) => {
  e.preventDefault();
  key = $("key").value.trim();
  sessionStorage.setItem("faas-key", key);
  connect();
});
$("hidewarm").addEventListener("change", drawFeeds);
setInterval(drawFeeds, 1000);
connect();
