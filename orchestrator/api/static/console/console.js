// The operator's console: polls the public API (GET /sessions, GET /models) and drives
// sessions with its POST/DELETE endpoints. The API key lives in this page's memory only.
"use strict";
(() => {
  // "/console" -> "", "/api/console" -> "/api": the API is served beside the page.
  const API = location.pathname.replace(/\/console\/?$/, "");
  const POLL_MS = 1000;
  const LATENCY_WINDOW_S = 60;
  const $ = id => document.getElementById(id);

  const st = {
    key: "",
    rows: new Map(),      // session id -> <tr>
    history: new Map(),   // session id -> {lat: [[ms, p50, p99]], last: [ms, commands], rate}
    selected: null,
    models: [],
    lostSince: null,
    errorFrom: null,      // "poll" or "action": who showed the banner
    deleteArmed: null,    // session id whose delete button asks for confirmation
  };

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; this.detail = detail; }
  }
  class LostServer extends Error {}

  function detailText(body, status) {
    const d = body && body.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) {  // FastAPI validation errors
      return d.map(e => `${(e.loc || []).filter(p => p !== "body").join(".")}: ${e.msg}`)
              .join("; ");
    }
    return `HTTP ${status}`;
  }

  async function api(method, path, body) {
    const headers = {};
    if (st.key) headers["X-API-Key"] = st.key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res, text;
    try {
      res = await fetch(API + path, {
        method, headers, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      text = await res.text();
    } catch (e) {
      throw new LostServer(String(e));
    }
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = {detail: text}; }
    if (!res.ok) throw new ApiError(res.status, detailText(data, res.status));
    return data;
  }

  // ---- banner and connection ------------------------------------------------------------
  function showError(text, from) {
    $("error-text").textContent = text;
    $("error").hidden = false;
    st.errorFrom = from;
  }
  function clearError(from) {
    if (from === undefined || st.errorFrom === from) { $("error").hidden = true; st.errorFrom = null; }
  }
  function setConn(kind, text) {
    const el = $("conn");
    el.className = `conn ${kind}`;
    el.textContent = text;
    $("sessions").classList.toggle("stale", kind !== "ok");
  }
  function failed(e, from) {
    if (e instanceof LostServer) {
      st.lostSince = st.lostSince || new Date();
      const since = st.lostSince.toLocaleTimeString();
      setConn("lost", `server unreachable since ${since}: showing the last known state`);
      $("triton").className = "conn unknown";
      $("triton").textContent = "Triton: ?";
      if (from === "action") showError(`server unreachable: ${e.message}`, from);
      return;
    }
    if (e.status === 401 || e.status === 403) setConn("auth", `API key needed: ${e.detail}`);
    showError(e.detail || String(e), from);
  }

  // ---- sessions table -------------------------------------------------------------------
  const fmtMs = v => (v === null || v === undefined) ? "–" : `${Number(v).toFixed(1)} ms`;

  function cell(row, i) { return row.children[i]; }

  function newRow(id) {
    const tr = document.createElement("tr");
    tr.dataset.session = id;
    for (let i = 0; i < 10; i++) tr.appendChild(document.createElement("td"));
    [3, 4, 5, 6, 7].forEach(i => cell(tr, i).classList.add("num"));
    cell(tr, 8).classList.add("err");
    const actions = cell(tr, 9);
    actions.classList.add("actions");
    for (const action of ["start", "stop", "restart", "delete"]) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.action = action;
      b.textContent = action;
      b.addEventListener("click", ev => { ev.stopPropagation(); act(id, action, b); });
      actions.appendChild(b);
    }
    tr.addEventListener("click", () => select(id));
    $("sessions").tBodies[0].appendChild(tr);
    st.rows.set(id, tr);
    return tr;
  }

  function track(s) {
    const now = Date.now();
    const h = st.history.get(s.session_id) || {lat: [], last: null, rate: null};
    const stats = s.stats || {};
    if (h.last && now > h.last[0]) {
      const rate = (stats.commands_sent - h.last[1]) / ((now - h.last[0]) / 1000);
      h.rate = h.rate === null ? rate : 0.5 * h.rate + 0.5 * rate;
    }
    h.last = [now, stats.commands_sent || 0];
    const lat = stats.inference_latency_ms;
    if (lat && lat.samples > 0) h.lat.push([now, lat.p50, lat.p99]);
    while (h.lat.length && now - h.lat[0][0] > LATENCY_WINDOW_S * 1000) h.lat.shift();
    st.history.set(s.session_id, h);
    return h;
  }

  function fill(tr, s, h) {
    const stats = s.stats || {}, inf = s.inference_stats || {};
    const rateHz = inf.rate_hz;
    const sent = h.rate === null || s.status !== "running" ? "" : ` (${h.rate.toFixed(1)}/s sent)`;
    const lat = stats.inference_latency_ms || {};
    const queue = stats.actions_in_queue;
    const safety = Object.values((stats.safety || {}).by_kind || {}).reduce((a, b) => a + b, 0);
    const badge = document.createElement("span");
    badge.className = `state ${s.status}`;
    badge.textContent = s.status;
    cell(tr, 0).textContent = s.session_id;
    cell(tr, 1).replaceChildren(badge);
    cell(tr, 2).textContent = s.policy_path;
    cell(tr, 3).textContent = rateHz ? `${Number(rateHz).toFixed(1)} Hz${sent}` : "–";
    cell(tr, 4).textContent = fmtMs((stats.tick_jitter_ms || {}).p99);
    cell(tr, 5).textContent = lat.samples ? `${fmtMs(lat.p50)} / ${fmtMs(lat.p99)}` : "–";
    cell(tr, 6).textContent = queue === undefined ? "–" :
      `${queue} ticks` + (rateHz ? ` (${(queue / rateHz).toFixed(2)} s)` : "");
    cell(tr, 7).textContent = String(safety);
    const problem = s.error_message || (stats.reason && stats.reason !== "ok" ? stats.reason : "");
    cell(tr, 8).textContent = problem;
    tr.classList.toggle("selected", st.selected === s.session_id);
    tr.dataset.status = s.status;
    for (const b of tr.querySelectorAll("button")) {
      const a = b.dataset.action;
      b.disabled = (a === "start" && s.status === "running") ||
                   (a === "stop" && s.status !== "running");
      if (a === "delete") b.textContent = st.deleteArmed === s.session_id ? "confirm delete" : "delete";
    }
  }

  function render(list) {
    const seen = new Set();
    for (const s of list) {
      seen.add(s.session_id);
      const h = track(s);
      fill(st.rows.get(s.session_id) || newRow(s.session_id), s, h);
      if (s.session_id === st.selected) renderDetail(s, h);
    }
    for (const [id, tr] of st.rows) {
      if (!seen.has(id)) { tr.remove(); st.rows.delete(id); st.history.delete(id); }
    }
    if (st.selected && !seen.has(st.selected)) select(null);
    $("empty").hidden = list.length > 0;
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  // ---- detail ---------------------------------------------------------------------------
  function select(id) {
    st.selected = id;
    $("detail").hidden = id === null;
    $("detail-id").textContent = id || "";
    for (const [sid, tr] of st.rows) tr.classList.toggle("selected", sid === id);
    if (id !== null) refresh();
  }

  function renderDetail(s, h) {
    const rc = (s.stats || {}).recent_commands || {joints: [], samples: []};
    const series = rc.joints.map((joint, j) => ({
      name: joint, points: rc.samples.map(row => [-row[0], row[j + 1]]),
    }));
    ConsolePlot.lines($("plot-commands"), series,
                      {xmin: -5, xmax: 0, xlabel: "seconds ago", empty: "no commands sent"});
    const now = Date.now();
    const span = h.lat.length ? (now - h.lat[0][0]) / 1000 : LATENCY_WINDOW_S;
    ConsolePlot.lines($("plot-latency"), [
      {name: "p50", points: h.lat.map(r => [(r[0] - now) / 1000, r[1]])},
      {name: "p99", points: h.lat.map(r => [(r[0] - now) / 1000, r[2]])},
    ], {xmin: -Math.min(LATENCY_WINDOW_S, Math.max(10, span)), xmax: 0, xlabel: "seconds ago",
        empty: "no inference yet"});
    $("detail-json").textContent = JSON.stringify(s, null, 2);
  }

  // ---- actions --------------------------------------------------------------------------
  async function act(id, action, button) {
    if (action === "delete" && st.deleteArmed !== id) {  // a second click confirms
      st.deleteArmed = id;
      button.textContent = "confirm delete";
      setTimeout(() => { if (st.deleteArmed === id) { st.deleteArmed = null; refresh(); } }, 4000);
      return;
    }
    st.deleteArmed = null;
    button.disabled = true;
    try {
      if (action === "delete") await api("DELETE", `/sessions/${encodeURIComponent(id)}`);
      else await api("POST", `/sessions/${encodeURIComponent(id)}/${action}`);
      clearError();
    } catch (e) {
      failed(e, "action");
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  async function createSession(ev) {
    ev.preventDefault();
    const body = {
      session_id: $("f-session").value.trim(),
      policy_path: $("f-model").value,
      camera_names: $("f-cameras").value.split(",").map(c => c.trim()).filter(Boolean),
      arena_server_url: $("f-arena").value.trim(),
    };
    if ($("f-rate").value !== "") body.rate_hz = Number($("f-rate").value);
    $("f-submit").disabled = true;
    try {
      await api("POST", "/sessions", body);
      clearError();
      $("f-session").value = "";  // the rest stays for the next robot
      select(body.session_id);
    } catch (e) {
      failed(e, "action");  // the form keeps what was typed
    } finally {
      $("f-submit").disabled = false;
      refresh();
    }
  }

  // ---- models ---------------------------------------------------------------------------
  function onModelChange() {
    const name = $("f-model").value.split(":")[0];
    const m = st.models.find(x => x.name === name);
    if (m) $("f-cameras").value = m.cameras.join(", ");
  }

  async function loadModels() {
    const select = $("f-model"), keep = select.value;
    try {
      st.models = await api("GET", "/models");
    } catch (e) {
      $("models-info").textContent = e instanceof LostServer ? "models: server unreachable"
                                                              : `models unavailable: ${e.detail}`;
      return false;
    }
    const options = st.models.flatMap(m => [m.name, ...m.versions.map(v => `${m.name}:${v}`)]);
    select.replaceChildren(...options.map(o => {
      const opt = document.createElement("option");
      opt.value = opt.textContent = o;
      return opt;
    }));
    if (options.includes(keep)) select.value = keep;
    else onModelChange();
    $("models-info").textContent = st.models.length ?
      `${st.models.length} model(s) served by Triton` : "Triton serves no ACT model";
    return true;
  }

  // ---- polling --------------------------------------------------------------------------
  let timer = null, modelsLoaded = false;
  async function refresh() {
    clearTimeout(timer);
    try {
      const list = await api("GET", "/sessions");
      st.lostSince = null;
      setConn("ok", "connected");
      clearError("poll");
      render(list);
      if (!modelsLoaded) modelsLoaded = await loadModels();
      const health = await api("GET", "/health");
      $("triton").className = `conn ${health.triton_ready ? "ok" : "lost"}`;
      $("triton").textContent = `Triton: ${health.triton_ready ? "ready" : "not ready"}`;
    } catch (e) {
      failed(e, "poll");
    } finally {
      clearTimeout(timer);
      timer = setTimeout(refresh, POLL_MS);
    }
  }

  $("api-key").addEventListener("change", () => {
    st.key = $("api-key").value;
    modelsLoaded = false;
    refresh();
  });
  $("error-close").addEventListener("click", () => clearError());
  $("detail-close").addEventListener("click", () => select(null));
  $("create").addEventListener("submit", createSession);
  $("f-model").addEventListener("change", onModelChange);
  $("models-refresh").addEventListener("click", () => { loadModels(); });
  $("f-arena").value = `${location.protocol}//${location.hostname}:8000`;
  refresh();
})();
