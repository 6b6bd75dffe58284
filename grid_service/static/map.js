// The supervisors' live map: our vector tiles, grids coloured by this week's compliance,
// live check-ins, and the area's open incidents by status, kept current by the status
// changes of GET /api/v1/stream. Everything from this origin.
import { Map as MapLibreMap, NavigationControl, Popup } from "./vendor/maplibre-gl/maplibre-gl.mjs";
import { callState, callWorker, download, incidentCard } from "./map_act.js";

const TOKEN_KEY = "wangge.token";
const STATUSES = ["met", "on_track", "at_risk", "missed"];
const COLOURS = { met: "#2e7d32", on_track: "#1e88e5", at_risk: "#f9a825", missed: "#d32f2f" };
const CHECKIN_FADE_MS = 90_000;
const INCIDENT_FADE_MS = 600_000;
const COMPLIANCE_REFRESH_MS = 300_000;
const LIST_LIMIT = 200;
const INCIDENT_COLOURS = {
  reported: "#ff3d00", dispatched: "#fb8c00", in_progress: "#fdd835", resolved: "#43a047",
  escalated: "#8e24aa", closed: "#78909c", cancelled: "#78909c",
};
const INCIDENT_NAMES = {
  reported: "待派遣 reported", dispatched: "已派遣 dispatched", in_progress: "处置中 in progress",
  resolved: "待核查 resolved", escalated: "已吹哨 escalated", closed: "已结案 closed",
  cancelled: "已作废 cancelled",
};
const OPEN_INCIDENTS = "reported,dispatched,in_progress,resolved,escalated";
const INCIDENT_PAGE = 1000; // the listing's largest page

const $ = (id) => document.getElementById(id);
const body = document.body;

// ------------------------------------------------------------------ sign-in

// People sign in with a name and a password: the answer sets an HttpOnly session cookie,
// which every fetch of this page then carries by itself (same origin), and no script can
// read. A bearer token may still be pasted (machines, wall screens): kept in this tab only.
// Every request says X-Requested-With, which the server asks of cookie-authenticated
// writes (a page of another site cannot set it).
const FETCH_HEADERS = { "X-Requested-With": "wangge" };
// Set while this browser holds a session (the cookie itself is out of a script's reach),
// so that a page nobody signed in to asks nothing and logs no 401.
const SIGNED_IN_KEY = "wangge.signedIn";

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function authorized(headers = {}) {
  const bearer = token();
  return bearer ? { ...FETCH_HEADERS, ...headers, Authorization: `Bearer ${bearer}` } : { ...FETCH_HEADERS, ...headers };
}

async function postJson(url, payload) {
  const response = await fetch(url, {
    method: "POST", headers: { ...FETCH_HEADERS, "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(payload), cache: "no-store",
  });
  return { response, body: await response.json().catch(() => ({})) };
}

// Who this tab is signed in as (a session or a pasted token), or null.
async function whoAmI() {
  if (!token() && !localStorage.getItem(SIGNED_IN_KEY)) return null;
  const response = await fetch("api/v1/session", { headers: authorized({ Accept: "application/json" }), cache: "no-store" });
  if (response.ok) return response.json();
  if (token()) sessionStorage.removeItem(TOKEN_KEY); // a revoked or mistyped token
  else localStorage.removeItem(SIGNED_IN_KEY); // the session ended or expired
  return null;
}

function showSignedIn(me) {
  $("who").textContent = me.worker_name || me.area_name ? `${me.name} · ${me.worker_name || me.area_name}` : me.name;
  $("who").title = `${me.role}${me.area_prefix ? ` ${me.area_prefix}` : ""} · ${me.via === "session" ? "password" : "token"}`;
  $("change-password").hidden = me.via !== "session";
  $("logout").hidden = false;
  body.dataset.signedIn = me.name;
}

function loginMode(mode) {
  // "sign-in": name and password; "change": the current password and a new one, twice.
  const changing = mode === "change";
  $("login-form").dataset.mode = mode;
  $("new-password-fields").hidden = !changing;
  $("new-password").required = changing;
  $("new-password-again").required = changing;
  $("login-submit").textContent = changing ? "设置新密码并登录 Set the password and sign in" : "登录 Sign in";
}

function askSignIn(message, mode = "sign-in") {
  $("login-error").textContent = message || "";
  loginMode(mode);
  if (!$("login").open) $("login").showModal();
  return new Promise((resolve) => {
    const form = $("login-form");
    const submitted = async (event) => {
      event.preventDefault();
      const done = await submitSignIn();
      if (done) {
        form.removeEventListener("submit", submitted);
        resolve();
      }
    };
    form.addEventListener("submit", submitted);
  });
}

// One press of the form's button: true once signed in (or a token is kept).
async function submitSignIn() {
  const error = $("login-error");
  const pasted = $("token").value.trim();
  if (pasted) {
    sessionStorage.setItem(TOKEN_KEY, pasted);
    $("token").value = "";
    return true;
  }
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    error.textContent = "请输入用户名和密码 · enter your name and password";
    return false;
  }
  let answer;
  if ($("login-form").dataset.mode === "change") {
    const fresh = $("new-password").value;
    if (fresh !== $("new-password-again").value) {
      error.textContent = "两次输入的新密码不一致 · the new passwords differ";
      return false;
    }
    answer = await postJson("api/v1/session/password", { username, password, new_password: fresh });
  } else {
    answer = await postJson("api/v1/session", { username, password });
  }
  const { response, body: reply } = answer;
  if (response.ok) {
    localStorage.setItem(SIGNED_IN_KEY, "1");
    for (const id of ["password", "new-password", "new-password-again"]) $(id).value = "";
    loginMode("sign-in");
    return true;
  }
  if (reply.code === "password_change_required") {
    loginMode("change");
    error.textContent = "这是一次性密码，请设置自己的密码 · a one-time password: choose your own (10 characters or more)";
    $("new-password").focus();
    return false;
  }
  const retry = response.headers.get("Retry-After");
  error.textContent = {
    invalid_credentials: "用户名或密码错误 · wrong name or password",
    account_locked: `失败次数过多，已锁定 · locked after repeated failures; try again in ${Math.ceil(Number(retry || 60) / 60)} min`,
    rate_limited: `尝试过于频繁 · too many attempts; wait ${retry || "a few"} s`,
  }[reply.code] || `${reply.code || response.status}: ${reply.detail || ""}`;
  return false;
}

async function endSession() {
  localStorage.removeItem(SIGNED_IN_KEY);
  await fetch("api/v1/session", { method: "DELETE", headers: FETCH_HEADERS }).catch(() => {});
}

async function signOut() {
  if (token()) sessionStorage.removeItem(TOKEN_KEY);
  else await endSession();
  location.reload();
}

async function changePassword() {
  $("username").value = body.dataset.signedIn || "";
  await askSignIn("输入当前密码和新密码 · your current password and a new one", "change");
  $("login").close();
  showSignedIn(await whoAmI());
}

class Unauthorized extends Error {}

async function getJson(url) {
  const response = await fetch(url, { headers: authorized({ Accept: "application/json" }) });
  if (response.status === 401 || response.status === 403) {
    const error = await response.json().catch(() => ({}));
    throw new Unauthorized(`${error.code || response.status}: ${error.detail || ""}`);
  }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

// ------------------------------------------------------------------ week

function isoWeek(date) {
  // The ISO week of the local day in Beijing time (UTC+8, no daylight saving).
  const local = new Date(date.getTime() + 8 * 3600_000);
  const day = new Date(Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), local.getUTCDate()));
  const weekday = day.getUTCDay() || 7;
  day.setUTCDate(day.getUTCDate() + 4 - weekday);
  const yearStart = new Date(Date.UTC(day.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((day - yearStart) / 86400_000 + 1) / 7);
  return `${day.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
}

// ------------------------------------------------------------------ state

// "As of": the whole page's compliance (colours, counters, lists) as it stood at a moment,
// from ?as_of= (RFC 3339) or the header's control; null: now, and live.
const PAGE_QUERY = new URLSearchParams(location.search);

function parseAsOf(text) {
  if (!text) return null;
  const moment = new Date(text);
  return Number.isNaN(moment.getTime()) ? null : text;
}

const INITIAL_AS_OF = parseAsOf(PAGE_QUERY.get("as_of"));

const state = {
  week: PAGE_QUERY.get("week") || isoWeek(INITIAL_AS_OF ? new Date(INITIAL_AS_OF) : new Date()),
  asOf: INITIAL_AS_OF,
  area: null, // the code prefix compliance was read for (null: the whole city)
  grids: new Map(), // grid code -> { name, workers: Map(worker id -> worker) }
  live: [], // live features: { kind, at, feature }
  // incident id -> { id, status, version, category, grid, assignee, lon, lat, at, endedAt }
  incidents: new Map(),
  counts: { checkins: 0, incidents: 0, changes: 0, statuses: 0 },
};

function gridStatus(grid) {
  const statuses = [...grid.workers.values()].map((w) => w.status);
  if (statuses.length === 0) return null;
  if (statuses.includes("missed")) return "missed";
  if (statuses.includes("at_risk")) return "at_risk";
  if (statuses.every((s) => s === "met")) return "met";
  return "on_track";
}

// ------------------------------------------------------------------ map

const map = new MapLibreMap({
  container: "map",
  center: [107.15, 34.37],
  zoom: 10,
  attributionControl: false,
  // No basemap: nothing may come from outside this server. The token is never sent with
  // tiles: the layers drawn are public, and so stay cacheable.
  style: { version: 8, sources: {}, layers: [{ id: "bg", type: "background", paint: { "background-color": "#e8ecef" } }] },
});
window.wanggeMap = map; // for the browser test and for debugging in the console
map.addControl(new NavigationControl({ showCompass: false }), "top-left");

function tilejson(layer) { return new URL(`tiles/${layer}.json`, location.href).href; }

function addLayers() {
  for (const layer of ["districts", "streets", "communities", "grids"]) {
    map.addSource(layer, { type: "vector", url: tilejson(layer) });
  }
  const status = ["feature-state", "status"];
  map.addLayer({ id: "districts-fill", type: "fill", source: "districts", "source-layer": "districts",
    paint: { "fill-color": "#d5dde3", "fill-opacity": ["interpolate", ["linear"], ["zoom"], 9, 0.8, 12, 0.2] } });
  map.addLayer({ id: "grids-fill", type: "fill", source: "grids", "source-layer": "grids",
    paint: {
      "fill-color": ["match", ["coalesce", status, "none"],
        "met", COLOURS.met, "on_track", COLOURS.on_track, "at_risk", COLOURS.at_risk,
        "missed", COLOURS.missed, "#b0bec5"],
      "fill-opacity": ["case", ["boolean", ["feature-state", "selected"], false], 0.85, 0.5],
    } });
  map.addLayer({ id: "grids-line", type: "line", source: "grids", "source-layer": "grids", minzoom: 13,
    paint: { "line-color": "#ffffff", "line-width": 0.6 } });
  map.addLayer({ id: "communities-line", type: "line", source: "communities", "source-layer": "communities",
    paint: { "line-color": "#546e7a", "line-width": ["interpolate", ["linear"], ["zoom"], 10, 0.4, 15, 1.5],
      "line-dasharray": [3, 2] } });
  map.addLayer({ id: "streets-line", type: "line", source: "streets", "source-layer": "streets",
    paint: { "line-color": "#37474f", "line-width": ["interpolate", ["linear"], ["zoom"], 9, 0.8, 15, 2.5] } });
  map.addLayer({ id: "districts-line", type: "line", source: "districts", "source-layer": "districts",
    paint: { "line-color": "#12304d", "line-width": ["interpolate", ["linear"], ["zoom"], 5, 1.5, 15, 4] } });
  map.addSource("live", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  map.addLayer({ id: "live-checkins", type: "circle", source: "live", filter: ["==", ["get", "kind"], "checkin"],
    paint: { "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 3, 16, 7],
      "circle-color": ["case", ["==", ["get", "in_assigned_grid"], false], "#8e24aa", "#00b8d4"],
      "circle-opacity": ["get", "fade"], "circle-stroke-color": "#ffffff",
      "circle-stroke-width": 1, "circle-stroke-opacity": ["get", "fade"] } });
  map.addSource("incidents", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  const incidentColour = ["match", ["get", "status"]];
  for (const [status, colour] of Object.entries(INCIDENT_COLOURS)) incidentColour.push(status, colour);
  incidentColour.push("#ff3d00");
  map.addLayer({ id: "incidents-points", type: "circle", source: "incidents",
    paint: { "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 5, 16, 11],
      "circle-color": incidentColour, "circle-opacity": ["get", "fade"],
      // Overdue (督办): a thick red ring.
      "circle-stroke-color": ["case", ["get", "overdue"], "#d50000", "#212121"],
      "circle-stroke-width": ["case", ["get", "overdue"], 4, 2], "circle-stroke-opacity": ["get", "fade"] } });
}

function applyGridStates() {
  for (const [code, grid] of state.grids) {
    map.setFeatureState({ source: "grids", sourceLayer: "grids", id: Number(code) },
      { status: gridStatus(grid) });
  }
}

// What is drawn, as data attributes: the view's counts, and a hook for the browser test.
function renderedFeatures(layer) {
  return map.getLayer(layer) ? map.queryRenderedFeatures({ layers: [layer] }) : [];
}

map.on("idle", () => {
  const grids = renderedFeatures("grids-fill");
  body.dataset.gridsRendered = String(new Set(grids.map((f) => f.id)).size);
  body.dataset.liveRendered = String(renderedFeatures("live-checkins").length + renderedFeatures("incidents-points").length);
  renderViewCounts(grids);
});

// ------------------------------------------------------------------ compliance

async function loadCompliance() {
  const query = new URLSearchParams({ level: "grid", week: state.week });
  if (state.asOf) query.set("as_of", state.asOf);
  const report = await getJson(`api/v1/compliance?${query}`);
  state.area = report.code;
  body.dataset.asOf = state.asOf ? report.as_of : "";
  state.grids = new Map(report.items.map((g) => [g.grid_code, {
    name: g.name,
    workers: new Map(g.workers.map((w) => [w.worker_id, {
      id: w.worker_id, name: w.name, status: w.status, counted: w.counted, required: w.required,
    }])),
  }]));
  $("area").textContent = report.code ? `辖区 area ${report.code}` : "全市 whole city";
  applyGridStates();
  renderCounts();
}

function renderCounts() {
  const byStatus = { met: 0, on_track: 0, at_risk: 0, missed: 0 };
  const attention = [];
  for (const [code, grid] of state.grids) {
    for (const worker of grid.workers.values()) {
      byStatus[worker.status] += 1;
      if (worker.status === "at_risk" || worker.status === "missed") attention.push({ ...worker, code, grid: grid.name });
    }
  }
  const total = Object.values(byStatus).reduce((a, b) => a + b, 0);
  $("met").textContent = byStatus.met;
  $("total").textContent = total;
  for (const s of STATUSES) $(`n-${s}`).textContent = byStatus[s];
  attention.sort((a, b) => (a.status === b.status ? a.counted - b.counted : a.status === "missed" ? -1 : 1));
  $("n-attention").textContent = attention.length;
  $("attention").replaceChildren(...attention.slice(0, LIST_LIMIT).map(attentionItem));
}

// A worker of the at-risk or missed list: their walk (the walk panel follows
// `wangge:walk`) and a call (POST .../notify, then its delivery followed).
function attentionItem(w) {
  const item = document.createElement("li");
  item.className = w.status;
  item.dataset.workerId = w.id;
  const label = document.createElement("span");
  label.textContent = `${w.name} ${w.id} · ${w.grid || w.code} · ${w.counted}/${w.required}`;
  label.title = `${w.status}: grid ${w.code}`;
  const walk = document.createElement("button");
  walk.type = "button";
  walk.className = "walk";
  walk.textContent = "轨迹 walk";
  walk.title = "show this worker's walk of the week";
  walk.addEventListener("click", () => {
    window.dispatchEvent(new CustomEvent("wangge:walk", { detail: { worker_id: w.id, week: state.week } }));
  });
  const call = document.createElement("button");
  call.type = "button";
  call.className = "notify";
  call.textContent = "通知 notify";
  call.title = "call this worker (the city's notify webhook)";
  const result = document.createElement("span");
  result.className = "call-state muted";
  call.addEventListener("click", async () => {
    call.disabled = true;
    const sent = await callWorker(w, { authorized, week: () => state.week });
    result.textContent = sent.text;
    item.dataset.call = sent.ok ? "pending" : "refused";
    if (sent.ok) followCall(w.id, sent.call.delivery_id, item, result);
    else call.disabled = false;
  });
  item.append(label, " ", walk, " ", call, " ", result);
  return item;
}

// Polls a call until delivered or failed (a few minutes at most), showing its state.
async function followCall(workerId, deliveryId, item, result) {
  for (let i = 0; i < 120; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, i < 20 ? 500 : 3000));
    const call = await callState(workerId, deliveryId, getJson).catch(() => null);
    if (!call) continue;
    item.dataset.call = call.state;
    result.textContent = {
      delivered: "已送达 · delivered",
      failed: `发送失败 · failed (${call.last_error || ""})`,
      pending: call.attempts ? `重试中 · retrying (${call.attempts})` : "发送中 · sending",
    }[call.state];
    if (call.state !== "pending") return;
  }
}

function renderViewCounts(rendered) {
  let met = 0;
  let total = 0;
  for (const code of new Set(rendered.map((f) => String(f.properties.code)))) {
    const grid = state.grids.get(code);
    if (!grid) continue;
    for (const worker of grid.workers.values()) {
      total += 1;
      if (worker.status === "met") met += 1;
    }
  }
  $("view-met").textContent = met;
  $("view-total").textContent = total;
}

// ------------------------------------------------------------------ live events

function addLive(kind, message) {
  state.live.push({ kind, at: performance.now(), feature: {
    type: "Feature", geometry: { type: "Point", coordinates: [message.lon, message.lat] },
    properties: { kind, fade: 1, in_assigned_grid: message.in_assigned_grid ?? null,
      grid_code: message.grid_code, label: message.worker_id || message.category },
  } });
  refreshLive();
}

function refreshLive() {
  const now = performance.now();
  state.live = state.live.filter((item) => {
    item.feature.properties.fade = Math.max(0, 1 - (now - item.at) / CHECKIN_FADE_MS);
    return item.feature.properties.fade > 0.02;
  });
  const source = map.getSource("live");
  if (source) source.setData({ type: "FeatureCollection", features: state.live.map((i) => i.feature) });
  // A closed or cancelled incident fades out; an open one stays until it is.
  let ended = false;
  for (const [id, incident] of state.incidents) {
    if (incident.endedAt !== null && now - incident.endedAt > INCIDENT_FADE_MS) {
      state.incidents.delete(id);
      ended = true;
    }
  }
  if (ended) renderIncidents();
  else if ([...state.incidents.values()].some((i) => i.endedAt !== null)) drawIncidents();
}

// ------------------------------------------------------------------ incidents

// One incident's state as the newest version seen says: the listing, the report's
// assignment and each status change may arrive in any order, and an older one never
// overwrites a newer.
function upsertIncident(update) {
  const known = state.incidents.get(update.id);
  if (known && known.version > update.version) return;
  const ended = update.status === "closed" || update.status === "cancelled";
  state.incidents.set(update.id, { ...known, ...update,
    endedAt: ended ? (known?.endedAt ?? performance.now()) : null });
  renderIncidents();
}

// The incidents shown, on the map and in the list: the category and statuses chosen.
const incidentFilter = { category: "", statuses: new Set(Object.keys(INCIDENT_NAMES)) };

function shown(incident) {
  return incidentFilter.statuses.has(incident.status)
    && (!incidentFilter.category || incident.category === incidentFilter.category
      || incident.category?.startsWith(`${incidentFilter.category}.`));
}

function renderCategoryChoices() {
  const select = $("incident-category");
  const categories = new Set([...state.incidents.values()].map((i) => i.category).filter(Boolean));
  const classes = new Set([...categories].map((c) => c.split(".")[0]));
  const wanted = [...classes, ...categories].sort();
  const have = [...select.options].slice(1).map((o) => o.value);
  if (wanted.join() === have.join()) return;
  select.replaceChildren(select.options[0], ...wanted.map((code) => {
    const option = document.createElement("option");
    option.value = code;
    option.textContent = code.includes(".") ? `  ${code}` : `${code} (全部 all)`;
    return option;
  }));
  select.value = wanted.includes(incidentFilter.category) ? incidentFilter.category : "";
}

function drawIncidents() {
  const source = map.getSource("incidents");
  if (!source) return;
  const now = performance.now();
  const features = [...state.incidents.values()].filter(shown).map((i) => ({
    type: "Feature", id: i.id, geometry: { type: "Point", coordinates: [i.lon, i.lat] },
    properties: { id: i.id, status: i.status, category: i.category, assignee: i.assignee,
      overdue: Boolean(i.overdue),
      fade: i.endedAt === null ? 1 : Math.max(0.05, 1 - (now - i.endedAt) / INCIDENT_FADE_MS) },
  }));
  source.setData({ type: "FeatureCollection", features });
}

function renderIncidents() {
  drawIncidents();
  // Latest activity first; the times come with different offsets, so compare instants.
  const all = [...state.incidents.values()].sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
  const open = all.filter((i) => i.endedAt === null).length;
  $("n-open").textContent = open;
  body.dataset.incidentsOpen = String(open);
  renderCategoryChoices();
  const incidents = all.filter(shown);
  body.dataset.incidentsShown = String(incidents.length);
  $("incident-list").replaceChildren(...incidents.slice(0, LIST_LIMIT).map((i) => {
    const item = document.createElement("li");
    item.className = `incident ${i.status}${i.overdue ? " overdue" : ""}`;
    item.dataset.incidentId = i.id;
    item.dataset.overdue = String(Boolean(i.overdue));
    item.dataset.status = i.status;
    item.dataset.version = String(i.version);
    item.textContent = (i.overdue ? "超期 overdue · " : "")
      + `${INCIDENT_NAMES[i.status] || i.status} · ${i.category} · ${i.grid || "–"}`
      + (i.assignee ? ` · ${i.assignee}` : "");
    item.title = `${i.id} v${i.version}` + (i.due ? ` · due ${i.due}` : "");
    item.tabIndex = 0;
    item.addEventListener("click", () => showIncident(i.id));
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") showIncident(i.id); });
    return item;
  }));
}

async function loadIncidents() {
  const query = new URLSearchParams({ status: OPEN_INCIDENTS, limit: String(INCIDENT_PAGE) });
  const page = await getJson(`api/v1/incidents?${query}`);
  for (const feature of page.features) {
    const p = feature.properties;
    const [lon, lat] = feature.geometry.coordinates;
    upsertIncident({ id: p.incident_id, status: p.status, version: p.version, category: p.category,
      grid: p.grid_code, assignee: p.assignee, lon, lat, at: p.reported_at,
      overdue: p.overdue, due: p.due_at });
  }
}

function onIncidentStatus(change) {
  bump("statuses");
  upsertIncident({ id: change.incident_id, status: change.to_status, version: change.version,
    category: change.category, grid: change.grid_code, assignee: change.assignee,
    lon: change.lon, lat: change.lat, at: change.at,
    overdue: change.overdue, due: change.due_at });
}

function bump(counter) {
  state.counts[counter] += 1;
  $(counter).textContent = state.counts[counter];
  body.dataset[counter] = String(state.counts[counter]);
  $("last").textContent = `最新 last event ${new Date().toLocaleTimeString("zh-CN", { hour12: false })}`;
}

function onCompliance(change) {
  bump("changes");
  if (state.asOf) return; // a moment of the past: the live changes are not part of it
  if (change.week !== state.week) {
    const notice = $("other-week");
    notice.hidden = false;
    notice.textContent = `收到 ${change.week} 的变化 · changes arrive for ${change.week}; enter it above to follow`;
    return;
  }
  let grid = state.grids.get(change.grid_code);
  if (!grid) {
    grid = { name: null, workers: new Map() };
    state.grids.set(change.grid_code, grid);
  }
  const worker = grid.workers.get(change.worker_id) || { id: change.worker_id, name: change.worker_id };
  grid.workers.set(change.worker_id, { ...worker, status: change.new_status,
    counted: change.counted_patrols, required: change.required_patrols });
  map.setFeatureState({ source: "grids", sourceLayer: "grids", id: Number(change.grid_code) },
    { status: gridStatus(grid) });
  renderCounts();
}

const handlers = {
  checkin: (m) => { bump("checkins"); addLive("checkin", m); },
  incident: (m) => {
    bump("incidents");
    upsertIncident({ id: m.incident_id, status: "reported", version: 1, category: m.category,
      grid: m.grid_code, assignee: null, lon: m.lon, lat: m.lat, at: m.reported_at });
  },
  incident_status: onIncidentStatus,
  compliance: onCompliance,
  status: (s) => setLive(s.live, s.detail),
  dropped: (d) => setLive(false, d.detail),
};

function setLive(live, detail) {
  body.dataset.live = String(live);
  $("live").className = `live ${live ? "on" : "off"}`;
  $("live").textContent = live ? "● 实时 live" : `● 离线 offline (${detail})`;
}

// Panels (below) may follow the stream too: event type -> their functions.
const listeners = new Map();

function dispatch(event) {
  const handler = handlers[event.type];
  const followers = listeners.get(event.type) || [];
  if (!handler && followers.length === 0) return;
  let message;
  try { message = JSON.parse(event.data); } catch (error) { console.warn("bad event", event, error); return; }
  for (const follow of handler ? [handler, ...followers] : followers) {
    try { follow(message); } catch (error) { console.warn("event not handled", event.type, error); }
  }
}

// EventSource cannot send an Authorization header, and a token in the URL would end up in
// access logs: read the stream with fetch() and parse server-sent events here.
async function readStream(signal) {
  const response = await fetch("api/v1/stream", {
    headers: authorized({ Accept: "text/event-stream" }), cache: "no-store", signal,
  });
  if (response.status === 401 || response.status === 403) throw new Unauthorized(`stream: HTTP ${response.status}`);
  if (!response.ok || !response.body) throw new Error(`stream: HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { type: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // A lone CR at the end may be the first half of CRLF: keep it for the next chunk.
    const cut = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
    const lines = buffer.slice(0, cut).split(/\r\n|\r|\n/);
    buffer = lines.pop() + buffer.slice(cut);
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) dispatch({ type: event.type, data: event.data.join("\n") });
        event = { type: "message", data: [] };
      } else if (line.startsWith(":")) {
        continue; // a ping
      } else {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const data = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.type = data;
        else if (field === "data") event.data.push(data);
      }
    }
  }
}

async function followStream() {
  for (;;) {
    try {
      await readStream();
      setLive(false, "stream ended; reconnecting");
    } catch (error) {
      if (error instanceof Unauthorized) throw error;
      setLive(false, "reconnecting");
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

// ------------------------------------------------------------------ grid details

function escapeText(text) {
  const span = document.createElement("span");
  span.textContent = text ?? "";
  return span.innerHTML;
}

map.on("click", "grids-fill", async (e) => {
  const feature = e.features[0];
  const code = String(feature.properties.code);
  const panel = $("grid-info");
  panel.hidden = false;
  panel.textContent = `${code} …`;
  try {
    const grid = (await getJson(`api/v1/grids/${code}`)).properties;
    const compliance = state.grids.get(code);
    const staff = grid.staff.map((w) => {
      const status = compliance?.workers.get(w.worker_id)?.status || "–";
      return `<li>${escapeText(w.name)} ${escapeText(w.worker_id)} · ${escapeText(status)}</li>`;
    }).join("");
    panel.innerHTML = `<h2>${escapeText(grid.name)} <span class="en">${escapeText(code)}</span></h2>
      <dl><dt>区 district</dt><dd>${escapeText(grid.district_name)}</dd>
      <dt>街道 street</dt><dd>${escapeText(grid.street_name)}</dd>
      <dt>社区 community</dt><dd>${escapeText(grid.community_name)}</dd>
      <dt>户数 households</dt><dd>${escapeText(String(grid.households ?? "–"))}</dd></dl>
      <p>网格员 staff:</p><ul>${staff || "<li>–</li>"}</ul>`;
    new Popup({ closeButton: false }).setLngLat(e.lngLat).setText(grid.name).addTo(map);
  } catch (error) {
    panel.textContent = `${code}: ${error.message}`;
  }
});
map.on("click", "incidents-points", (e) => {
  const p = e.features[0].properties;
  const text = `${INCIDENT_NAMES[p.status] || p.status} · ${p.category}` + (p.assignee ? ` · ${p.assignee}` : "");
  new Popup({ closeButton: false }).setLngLat(e.lngLat).setText(text).addTo(map);
  showIncident(p.id);
});
map.on("mouseenter", "incidents-points", () => { map.getCanvas().style.cursor = "pointer"; });
map.on("mouseleave", "incidents-points", () => { map.getCanvas().style.cursor = ""; });

// ------------------------------------------------------------------ acting on an incident

let card = null; // made once signed in (it needs `me`)

function showIncident(id) {
  if (card) card.show(id).catch((error) => console.warn("incident", error));
}

// The card read or moved an incident: the map and the list follow its newest version.
function followIncident(feature) {
  const p = feature.properties;
  const [lon, lat] = feature.geometry.coordinates;
  upsertIncident({ id: p.incident_id, status: p.status, version: p.version, category: p.category,
    grid: p.grid_code, assignee: p.assignee, lon, lat, at: p.updated_at, overdue: p.overdue, due: p.due_at });
}

function setupIncidentFilters() {
  $("incident-category").addEventListener("change", () => {
    incidentFilter.category = $("incident-category").value;
    renderIncidents();
  });
  for (const box of document.querySelectorAll("#incident-statuses input")) {
    box.addEventListener("change", () => {
      if (box.checked) incidentFilter.statuses.add(box.value);
      else incidentFilter.statuses.delete(box.value);
      renderIncidents();
    });
  }
}

// ------------------------------------------------------------------ as of, export

const asOfFollowers = [];

// "2020-09-11T18:00:00+08:00" <-> the datetime-local control's "2020-09-11T18:00", in Beijing time.
function asOfControlValue(asOf) {
  if (!asOf) return "";
  const local = new Date(new Date(asOf).getTime() + 8 * 3600_000);
  return local.toISOString().slice(0, 16);
}

function setAsOf(asOf) {
  state.asOf = asOf;
  $("as-of").value = asOfControlValue(asOf);
  $("as-of-now").hidden = !asOf;
  body.dataset.asOfSet = String(Boolean(asOf));
  const url = new URL(location.href);
  if (asOf) url.searchParams.set("as_of", asOf); else url.searchParams.delete("as_of");
  history.replaceState(null, "", url);
  loadCompliance().catch((error) => console.warn(error));
  window.dispatchEvent(new CustomEvent("wangge:as-of", { detail: { as_of: asOf } }));
  for (const follow of asOfFollowers) follow(asOf);
}

function setupAsOfAndExport() {
  $("as-of").value = asOfControlValue(state.asOf);
  $("as-of-now").hidden = !state.asOf;
  body.dataset.asOfSet = String(Boolean(state.asOf));
  $("as-of").addEventListener("change", () => {
    const value = $("as-of").value;
    setAsOf(value ? `${value}:00+08:00` : null);
  });
  $("as-of-now").addEventListener("click", () => setAsOf(null));
  for (const format of ["csv", "xlsx"]) {
    $(`export-${format}`).addEventListener("click", () => {
      const query = new URLSearchParams({ format, week: state.week });
      if (state.asOf) query.set("as_of", state.asOf);
      download(`api/v1/compliance/export?${query}`, authorized)
        .catch((error) => { $("last").textContent = `导出失败 export failed: ${error.message}`; });
    });
  }
}
map.on("mouseenter", "grids-fill", () => { map.getCanvas().style.cursor = "pointer"; });
map.on("mouseleave", "grids-fill", () => { map.getCanvas().style.cursor = ""; });

// ------------------------------------------------------------------ panels

// A feature of the workbench (a basemap, a worker's walk, coverage, evaluation…) is one ES
// module in static/panels/ exporting `install(context)`; the server lists them at
// map/panels.json, and each is installed once the user is signed in. One failing panel
// is logged and the others still load.
const weekFollowers = [];

function addSection(id, heading) {
  const section = document.createElement("section");
  section.id = id;
  if (heading) {
    const title = document.createElement("h2");
    title.innerHTML = heading; // the panel's own constant text, never data
    section.append(title);
  }
  $("panel").insertBefore(section, $("panel").querySelector("section.grow"));
  return section;
}

async function loadPanels(me) {
  const { panels } = await (await fetch("map/panels.json", { cache: "no-cache" })).json();
  const context = {
    map, me, state, getJson, authorized, escapeText, addSection, Popup, Unauthorized,
    colours: COLOURS,
    // fn(message) for each stream event of that type: checkin, incident, incident_status, compliance
    on(type, follow) { listeners.set(type, [...(listeners.get(type) || []), follow]); },
    onWeekChange(follow) { weekFollowers.push(follow); },
    // The page's "as of" (RFC 3339, or null for now), and fn(asOf) when it changes; the
    // same as the window's `wangge:as-of` event.
    asOf: () => state.asOf,
    onAsOfChange(follow) { asOfFollowers.push(follow); },
    showIncident,
  };
  for (const name of panels) {
    try {
      const panel = await import(`./panels/${name}`);
      await panel.install(context);
      body.dataset.panels = `${body.dataset.panels ? `${body.dataset.panels} ` : ""}${name}`;
    } catch (error) {
      console.error(`panel ${name} failed`, error);
    }
  }
}

// ------------------------------------------------------------------ start

async function fitArea(code) {
  await fitBoundsOf(code);
  // Grids come from zoom 11 (their tiles' minzoom): a wall map of a district shows them.
  const grids = map.getSource("grids");
  const minzoom = grids && grids.minzoom ? grids.minzoom : 11;
  if (code && map.getZoom() < minzoom) map.setZoom(minzoom);
}

async function fitBoundsOf(code) {
  const collection = { 6: "districts", 9: "streets", 12: "communities" }[code?.length];
  try {
    if (!collection) {
      const tj = await (await fetch(tilejson("districts"))).json();
      map.fitBounds(tj.bounds, { padding: 20, duration: 0 });
      return;
    }
    const feature = await getJson(`ogc/collections/${collection}/items/${code}`);
    const coordinates = JSON.stringify(feature.geometry.coordinates).match(/-?\d+(\.\d+)?,-?\d+(\.\d+)?/g)
      .map((pair) => pair.split(",").map(Number));
    const lons = coordinates.map((c) => c[0]);
    const lats = coordinates.map((c) => c[1]);
    map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]],
      { padding: 20, duration: 0 });
  } catch (error) {
    console.warn("could not fit the area", error);
  }
}

async function start() {
  $("week").value = state.week;
  $("week").addEventListener("change", () => {
    state.week = $("week").value.trim();
    $("other-week").hidden = true;
    loadCompliance().catch((error) => console.warn(error));
    for (const follow of weekFollowers) follow(state.week);
  });
  $("logout").addEventListener("click", signOut);
  setupIncidentFilters();
  setupAsOfAndExport();
  $("change-password").addEventListener("click", () => changePassword().catch((error) => console.warn(error)));
  await new Promise((resolve) => (map.loaded() ? resolve() : map.once("load", resolve)));
  addLayers();
  let message = "";
  let me;
  let fitted;
  for (;;) {
    me = await whoAmI();
    if (!me) {
      await askSignIn(message);
      me = await whoAmI();
      if (!me) continue;
    }
    showSignedIn(me);
    // Move to the account's area now (compliance answers for the same code: a supervisor's
    // area, the whole city for an admin), so the grids' tiles load while compliance and the
    // panels do: the grids start at zoom 11, deeper than the opening view.
    fitted = fitArea(me.area_prefix || null);
    try {
      await loadCompliance();
      break;
    } catch (error) {
      if (!(error instanceof Unauthorized)) throw error;
      // Signed in, but not as a supervisor or an admin: leave that account, ask again.
      if (token()) sessionStorage.removeItem(TOKEN_KEY);
      else await endSession();
      message = `此账号无权查看地图 · this account may not read the map (${error.message})`;
    }
  }
  $("login").close();
  card = incidentCard({ section: $("incident-detail"), me, getJson, authorized, escapeText,
    week: () => state.week, onMoved: followIncident });
  await loadPanels(me).catch((error) => console.error("could not list the panels", error));
  loadIncidents().catch((error) => console.warn("could not list the open incidents", error));
  await fitted;
  setInterval(() => {
    loadCompliance().catch((error) => console.warn(error));
    loadIncidents().catch((error) => console.warn(error));
  }, COMPLIANCE_REFRESH_MS);
  setInterval(refreshLive, 1000);
  followStream().catch(() => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
}

start().catch((error) => {
  console.error(error);
  setLive(false, error.message);
});
