// The grid workers' app: sign in with a name and a password (or a token, once), patrol
// with the phone's GPS, see the week against the rule, report incidents with photos, work
// the incidents assigned. Everything from this origin; fixes and reports wait in IndexedDB
// until they are sent.
import { t, lang, setLang, translatePage } from "./i18n.js";
import { HttpError, Outbox, isRefusal } from "./outbox.js";
import { SmallMap, contains, metresBetween } from "./smallmap.js";

const TOKEN_KEY = "wangge.app.token";
// Set (to the account's name) while this phone holds a password session: the session
// cookie itself is HttpOnly, out of a script's reach, and rides on every fetch by itself.
const SESSION_KEY = "wangge.app.session";
const LAST_NAME_KEY = "wangge.app.lastName";
// Every request says X-Requested-With: the API asks it of cookie-authenticated writes (a
// page of another site cannot set it); without it a queued post would be refused.
const FETCH_HEADERS = { "X-Requested-With": "wangge" };
const ME_KEY = "wangge.app.me";
const WEEK_KEY = "wangge.app.patrols";
const PATROL_KEY = "wangge.app.patrol";
const KEEP_EVERY_MS = 30_000; // the issue's rule: one fix every 30 s ...
const KEEP_EVERY_M = 25; // ... or every 25 m walked
const FRESH_FIX_MS = 120_000; // an older position is not taken as where the worker is now
const PATROL_UPLOAD_MS = 60_000; // a patrol's fixes go up in batches, at most a minute late
const WEEK_REFRESH_MS = 30_000;
const LOCAL_OFFSET_MS = 8 * 3600_000; // days and weeks are Beijing time (no daylight saving)
const MAX_PHOTOS = 3;
const PHOTO_EDGE = 1600;

const API = new URL("../api/v1/", location.href);
const $ = (id) => document.getElementById(id);
const body = document.body;

const state = {
  me: null,
  position: null, // { lon, lat, accuracy, at }
  patrol: JSON.parse(localStorage.getItem(PATROL_KEY) || "null"),
  categories: [],
  photos: [],
  online: navigator.onLine,
};

// ------------------------------------------------------------------ API

function token() { return localStorage.getItem(TOKEN_KEY); }

function signedIn() { return Boolean(token() || localStorage.getItem(SESSION_KEY)); }

async function api(path, { method = "GET", json, blob, headers = {} } = {}) {
  // no-store: an answer for a signed-in worker stays out of the browser's HTTP cache.
  const init = { method, headers: { ...FETCH_HEADERS, ...headers }, cache: "no-store" };
  if (token()) init.headers.Authorization = `Bearer ${token()}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (blob !== undefined) {
    init.headers["Content-Type"] = blob.type || "image/jpeg";
    init.body = blob;
  }
  const response = await fetch(new URL(path, API), init);
  if (!response.ok) {
    const error = new HttpError(response.status, await response.json().catch(() => ({})));
    error.retryAfter = response.headers.get("Retry-After");
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

// ------------------------------------------------------------------ the outbox

async function send(items, update) {
  if (items[0].kind === "checkin") {
    await api("checkins", { method: "POST", json: { checkins: items.map((item) => item.event) } });
    return items.length;
  }
  const item = items[0];
  // Photos first, each kept as done, so that a retry uploads only what is missing.
  item.uploaded = item.uploaded || [];
  item.photos_done = item.photos_done || 0;
  for (const photo of (item.photos || []).slice(item.photos_done)) {
    try {
      const stored = await api("attachments", { method: "POST", blob: photo });
      item.uploaded.push(stored.content_id);
    } catch (error) {
      // A photo the API refuses for itself goes; the report still matters without it.
      if (!(error instanceof HttpError && isRefusal(error.status))) throw error;
    }
    item.photos_done += 1;
    await update(item);
  }
  const event = { ...item.event };
  if (item.uploaded.length) event.attachments = item.uploaded;
  await api("incidents", { method: "POST", json: event });
  return 1;
}

const outbox = new Outbox({ send, onChange: showQueue, onUnauthorized: () => authLost() });

async function showQueue() {
  const [waiting, refused] = await Promise.all([outbox.count(), outbox.refusedCount()]);
  $("waiting").textContent = waiting;
  body.dataset.waiting = String(waiting);
  const notes = [];
  if (waiting && !navigator.onLine) notes.push(t("until_online"));
  else if (outbox.draining) notes.push(t("sending"));
  else if (waiting && outbox.failures && outbox.retryAt) notes.push(t("retry_in", { s: Math.max(1, Math.round((outbox.retryAt - Date.now()) / 1000)) }));
  if (refused) notes.push(t("refused", { n: refused }));
  $("queue-state").textContent = notes.join(" · ");
}

function drain() { return outbox.drainNow(); }

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ------------------------------------------------------------------ time

function localDate(ms) { return new Date(ms + LOCAL_OFFSET_MS); } // read with getUTC*

function isoWeek(ms) {
  const local = localDate(ms);
  const day = new Date(Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), local.getUTCDate()));
  const weekday = day.getUTCDay() || 7;
  day.setUTCDate(day.getUTCDate() + 4 - weekday);
  const yearStart = new Date(Date.UTC(day.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((day - yearStart) / 86400_000 + 1) / 7);
  return `${day.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
}

function clock(iso) {
  const local = localDate(Date.parse(iso));
  return `${local.getUTCHours()}:${String(local.getUTCMinutes()).padStart(2, "0")}`;
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? h + ":" : ""}${mm}:${String(s % 60).padStart(2, "0")}`;
}

// ------------------------------------------------------------------ sign-in and "me"

function signIn(message) {
  $("signin").hidden = false;
  $("main").hidden = true;
  $("footer").hidden = true;
  $("signin-error").textContent = message || "";
  body.dataset.signedIn = "";
  if (!$("username").value) $("username").value = localStorage.getItem(LAST_NAME_KEY) || "";
  ($("username").value ? $("password") : $("username")).focus();
}

function signInMode(mode) {
  // "sign-in": a name and a password; "change": a one-time password and one's own, twice.
  const changing = mode === "change";
  $("signin-form").dataset.mode = mode;
  body.dataset.signinMode = mode;
  $("new-password-fields").hidden = !changing;
  $("new-password").required = changing;
  $("new-password-again").required = changing;
  $("password-label").dataset.i18n = changing ? "one_time_password" : "password";
  $("signin-submit").dataset.i18n = changing ? "choose_password_button" : "signin_button";
  translatePage();
}

/** The answer's refusal in the worker's words. */
function signInRefusal(status, reply, retryAfter) {
  const wait = Number(retryAfter || 60);
  if (reply.code === "invalid_credentials") return t("wrong_password");
  if (reply.code === "account_locked") return t("locked_out", { min: Math.max(1, Math.ceil(wait / 60)) });
  if (reply.code === "rate_limited") return t("rate_limited", { s: Math.max(1, Math.ceil(wait)) });
  if (reply.code === "weak_password") return t("weak_password");
  return t("signin_failed", { code: reply.code || status });
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("signin-error");
  const changing = $("signin-form").dataset.mode === "change";
  const payload = { username: $("username").value.trim(), password: $("password").value };
  if (changing) {
    if ($("new-password").value !== $("new-password-again").value) { error.textContent = t("passwords_differ"); return; }
    payload.new_password = $("new-password").value;
  }
  $("signin-submit").disabled = true;
  let response;
  try {
    response = await fetch(new URL(changing ? "session/password" : "session", API), {
      method: "POST",
      headers: { ...FETCH_HEADERS, "Content-Type": "application/json" },
      body: JSON.stringify(payload),
      cache: "no-store",
    });
  } catch {
    error.textContent = t("signin_offline");
    return;
  } finally {
    $("signin-submit").disabled = false;
  }
  const reply = await response.json().catch(() => ({}));
  if (response.ok) {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.setItem(SESSION_KEY, reply.name);
    localStorage.setItem(LAST_NAME_KEY, reply.name);
    for (const id of ["password", "new-password", "new-password-again"]) $(id).value = "";
    signInMode("sign-in");
    await start();
    return;
  }
  if (reply.code === "password_change_required") {
    signInMode("change");
    error.textContent = "";
    $("new-password").focus();
    return;
  }
  error.textContent = signInRefusal(response.status, reply, response.headers.get("Retry-After"));
});

$("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  useToken($("token").value.trim());
  $("token").value = "";
  $("token-way").open = false;
  await start();
});

function useToken(value) {
  localStorage.setItem(TOKEN_KEY, value);
  localStorage.removeItem(SESSION_KEY);
}

// A scanned QR code opens /app/#token=wg_...: the fragment never reaches a server (nor a
// log); the token is kept like a pasted one and the address forgets it at once.
function takeScannedToken() {
  const scanned = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!scanned) return;
  useToken(scanned.trim());
  history.replaceState(null, "", location.pathname + location.search);
}

/** The API said 401: the session expired (or the token was revoked). The queue stays. */
async function authLost() {
  const byToken = Boolean(token());
  localStorage.removeItem(byToken ? TOKEN_KEY : SESSION_KEY);
  outbox.pause();
  const waiting = await outbox.count();
  signIn(byToken ? t("bad_token") : t("session_expired", { n: waiting }));
}

async function signOut() {
  if (state.patrol) {
    $("sign-out-note").hidden = false;
    $("sign-out-note").textContent = t("sign_out_on_patrol");
    return;
  }
  outbox.pause();
  if (token()) localStorage.removeItem(TOKEN_KEY);
  else {
    localStorage.removeItem(SESSION_KEY);
    await fetch(new URL("session", API), { method: "DELETE", headers: FETCH_HEADERS, cache: "no-store" })
      .catch(() => {}); // offline: the cookie ends with the session on the server
  }
  // What the next person to hold the phone must not read; the queue stays (it is sent
  // at the next sign-in).
  for (const key of [ME_KEY, WEEK_KEY]) localStorage.removeItem(key);
  state.me = null;
  $("sign-out-note").hidden = true;
  $("patrols").replaceChildren();
  $("incidents").replaceChildren();
  showTab("patrol");
  const waiting = await outbox.count();
  signIn(waiting ? t("signed_out_waiting", { n: waiting }) : "");
  showQueue();
}

$("sign-out").addEventListener("click", signOut);

async function loadMe() {
  try {
    const me = await api(`workers/me?week=${isoWeek(Date.now())}`);
    if (!signedIn()) return false; // signed out while it was on its way
    state.me = me;
    localStorage.setItem(ME_KEY, JSON.stringify(me));
    return true;
  } catch (error) {
    if (error instanceof HttpError && error.status === 401) { await authLost(); return false; }
    if (error instanceof HttpError && error.status === 403) {
      // Signed in, but not as a worker: end that session rather than keep it here.
      if (!token()) await fetch(new URL("session", API), { method: "DELETE", headers: FETCH_HEADERS }).catch(() => {});
      localStorage.removeItem(token() ? TOKEN_KEY : SESSION_KEY);
      signIn(t("not_worker"));
      return false;
    }
    // Offline (or the API away): the last answer, if any.
    state.me = JSON.parse(localStorage.getItem(ME_KEY) || "null");
    if (state.me === null) signIn(t("signin_offline"));
    return state.me !== null;
  }
}

// ------------------------------------------------------------------ map and position

const map = new SmallMap($("map"));
const pinMap = new SmallMap($("pin-map"));

function myGeometries() { return (state.me?.grids || []).map((grid) => grid.geometry); }

function drawMe() {
  const me = state.me;
  $("worker-name").textContent = `${me.name} ${me.worker_id}`;
  const via = t(token() ? "via_token" : "via_session");
  $("account-name").textContent = t("signed_in_as", { name: localStorage.getItem(SESSION_KEY) || me.name, via });
  body.dataset.signedIn = me.worker_id;
  $("grid-name").textContent = me.grids.map((g) => `${g.community_name} · ${g.name}`).join("；");
  map.setGrids(myGeometries());
  pinMap.setGrids(myGeometries());
  map.setTrack(state.patrol?.track || []);
  body.dataset.map = String(me.grids.length);
  // The first map drawn: what `wangge bench app` times the first load to.
  if (me.grids.length && !performance.getEntriesByName("wangge-map").length) performance.mark("wangge-map");
}

function inMyGrid(point) { return myGeometries().some((geometry) => contains(geometry, point)); }

function onFix(position) {
  const fix = {
    lon: position.coords.longitude,
    lat: position.coords.latitude,
    accuracy: position.coords.accuracy,
    at: Date.now(),
  };
  const first = state.position === null;
  state.position = fix;
  map.setPosition([fix.lon, fix.lat], fix.accuracy);
  if (first) map.fit();
  $("accuracy").textContent = `${Math.round(fix.accuracy)} m`;
  const outside = state.me && state.me.grids.length && !inMyGrid([fix.lon, fix.lat]);
  $("where").hidden = !outside;
  $("where").textContent = outside ? t("outside_grid") : "";
  if (!state.report_pin_moved) pinMap.setPin([fix.lon, fix.lat], movePin);
  if (state.patrol) considerFix(false);
}

function onGeoError() {
  if (!state.position) { $("where").hidden = false; $("where").textContent = t("no_position"); }
}

function watchPosition() {
  if (state.watching) return; // signed in again: the first watch still runs
  if (!("geolocation" in navigator)) return onGeoError();
  state.watching = true;
  navigator.geolocation.watchPosition(onFix, onGeoError, {
    enableHighAccuracy: true, maximumAge: 0, timeout: 60_000,
  });
}

// ------------------------------------------------------------------ patrol

function savePatrol() {
  if (state.patrol) localStorage.setItem(PATROL_KEY, JSON.stringify(state.patrol));
  else localStorage.removeItem(PATROL_KEY);
}

/** Keep the current position as a fix when the rule says so (or always, when `force`). */
function considerFix(force) {
  const patrol = state.patrol;
  const fix = state.position;
  if (!patrol || !fix || Date.now() - fix.at > FRESH_FIX_MS) return;
  const last = patrol.last;
  const moved = last ? metresBetween([last.lon, last.lat], [fix.lon, fix.lat]) : Infinity;
  const waited = last ? Date.now() - last.kept_at : Infinity;
  if (!(force ? moved > 0 || waited >= KEEP_EVERY_MS : moved >= KEEP_EVERY_M || waited >= KEEP_EVERY_MS)) return;
  const event = {
    event_id: uuid(),
    worker_id: state.me.worker_id,
    lon: Number(fix.lon.toFixed(7)),
    lat: Number(fix.lat.toFixed(7)),
    // The phone's clock when the fix is kept (maximumAge 0: a fix of this moment).
    recorded_at: new Date(Date.now()).toISOString(),
    accuracy_m: Math.round(fix.accuracy * 10) / 10,
  };
  if (last) patrol.distance_m += metresBetween([last.lon, last.lat], [fix.lon, fix.lat]);
  patrol.last = { lon: fix.lon, lat: fix.lat, kept_at: Date.now() };
  patrol.track.push([event.lon, event.lat]);
  patrol.kept += 1;
  savePatrol();
  map.setTrack(patrol.track);
  showPatrol();
  outbox.add({ kind: "checkin", event }).then(() => outbox.drainSoon(PATROL_UPLOAD_MS));
}

function showPatrol() {
  const patrol = state.patrol;
  body.dataset.patrol = patrol ? "on" : "off";
  body.dataset.kept = String(patrol ? patrol.kept : 0);
  $("patrol-button").textContent = t(patrol ? "end_patrol" : "start_patrol");
  $("elapsed").textContent = patrol ? duration(Date.now() - patrol.started_at) : "0:00";
  $("distance").textContent = patrol ? `${Math.round(patrol.distance_m)} m` : "0 m";
  $("fixes").textContent = patrol ? String(patrol.kept) : "0";
}

$("patrol-button").addEventListener("click", () => {
  if (state.patrol) {
    considerFix(true);
    state.patrol = null;
    savePatrol();
    showPatrol();
    drain().then(() => setTimeout(refreshWeek, 3000));
  } else {
    state.patrol = { started_at: Date.now(), track: [], kept: 0, distance_m: 0, last: null };
    savePatrol();
    map.setTrack([]);
    showPatrol();
    if (!state.position) onGeoError();
    considerFix(true);
  }
});

setInterval(() => {
  if (!state.patrol) return;
  considerFix(false); // a worker standing still keeps one fix every 30 s
  showPatrol();
}, 1000);

// ------------------------------------------------------------------ this week

function reasonText(reason) {
  if (reason === "counted") return t("reason_counted");
  if (reason === "invalid:too_short") return t("reason_too_short");
  if (reason === "invalid:too_few_checkins") return t("reason_too_few");
  if (reason === "already_counted_today") return t("reason_same_day");
  if (reason === "invalid:mocked_location") return t("reason_mocked");
  if (reason === "invalid:implausible_speed") return t("reason_speed");
  return t("reason_other", { reason });
}

async function refreshWeek() {
  if (!signedIn()) return;
  const online = await loadMe();
  if (!state.me) return;
  drawMe();
  let patrols = null;
  try {
    patrols = await api(`workers/${state.me.worker_id}/patrols?week=${state.me.week}`);
    if (signedIn()) localStorage.setItem(WEEK_KEY, JSON.stringify(patrols));
  } catch {
    patrols = JSON.parse(localStorage.getItem(WEEK_KEY) || "null");
  }
  if (!state.me) return; // signed out meanwhile
  showWeek(patrols, online && navigator.onLine);
}

function showWeek(patrols, fresh) {
  const me = state.me;
  const weeks = me.grids.map((grid) => grid.week).filter(Boolean);
  const required = weeks.length ? weeks.reduce((n, w) => n + w.required, 0) : me.weekly_required;
  const counted = weeks.reduce((n, w) => n + w.counted, 0);
  const worst = ["missed", "at_risk", "on_track", "met"].find((s) => weeks.some((w) => w.status === s));
  $("week-name").textContent = me.week;
  const count = $("week-count");
  count.textContent = `${counted} / ${required}`;
  count.dataset.counted = String(counted);
  count.dataset.required = String(required);
  const status = $("week-status");
  status.className = `status ${worst || ""}`;
  status.textContent = worst ? t(`status_${worst}`) : "";
  body.dataset.weekStatus = worst || "";
  const warning = $("week-warning");
  const weekday = localDate(Date.now()).getUTCDay() || 7;
  if (worst === "at_risk") {
    warning.textContent = t("warn_at_risk", { left: required - counted, days: 8 - weekday });
  } else if (worst === "missed") {
    warning.textContent = t("warn_missed", { counted, required });
  }
  warning.hidden = worst !== "at_risk" && worst !== "missed";
  const list = $("patrols");
  list.replaceChildren();
  const all = (patrols?.grids || []).flatMap((grid) => grid.patrols);
  for (const patrol of all) {
    const item = document.createElement("li");
    item.className = patrol.counted ? "counted" : "not-counted";
    item.textContent = t("walk_line", {
      day: patrol.local_day.slice(5), start: clock(patrol.started_at), end: clock(patrol.ended_at), n: patrol.checkin_count,
    });
    const why = document.createElement("span");
    why.className = "why";
    why.textContent = reasonText(patrol.reason);
    item.append(why);
    list.append(item);
  }
  if (all.length === 0) {
    const item = document.createElement("li");
    item.textContent = t("no_walks");
    list.append(item);
  }
  $("week-as-of").textContent = t("as_of", { time: clock(me.as_of) }) + (fresh ? "" : " " + t("cached"));
}

$("week-refresh").addEventListener("click", refreshWeek);
setInterval(() => { if (body.dataset.view === "week" && navigator.onLine) refreshWeek(); }, WEEK_REFRESH_MS);

// ------------------------------------------------------------------ report an incident

function movePin(lonLat) {
  state.report_pin_moved = true;
  state.pin = lonLat;
}

async function loadCategories() {
  const response = await fetch("categories.json");
  state.categories = await response.json();
  const select = $("category");
  select.replaceChildren();
  const groups = new Map();
  for (const category of state.categories) {
    const group = category.code.split(".")[0];
    if (!groups.has(group)) {
      const optgroup = document.createElement("optgroup");
      optgroup.label = group;
      groups.set(group, optgroup);
      select.append(optgroup);
    }
    const option = document.createElement("option");
    option.value = category.code;
    option.textContent = lang() === "en" ? category.en : category.zh;
    groups.get(group).append(option);
  }
}

async function resized(file) {
  // Drawn upright (createImageBitmap applies the EXIF orientation) at 1600 px at most, and
  // encoded as JPEG: the upload is small, and carries no EXIF (no GPS) from the camera.
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, PHOTO_EDGE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
}

$("photos").addEventListener("change", async () => {
  const files = [...$("photos").files];
  $("report-error").textContent = files.length > MAX_PHOTOS ? t("too_many_photos") : "";
  state.photos = await Promise.all(files.slice(0, MAX_PHOTOS).map(resized));
  const previews = $("previews");
  previews.replaceChildren(...state.photos.map((blob) => {
    const image = document.createElement("img");
    image.src = URL.createObjectURL(blob);
    return image;
  }));
  body.dataset.photos = String(state.photos.length);
});

$("report-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const at = state.report_pin_moved ? state.pin : state.position && [state.position.lon, state.position.lat];
  if (!at) { $("report-error").textContent = t("need_position"); return; }
  const id = uuid();
  const report = {
    event_id: id,
    incident_id: id,
    category: $("category").value,
    description: $("note").value.trim() || null,
    lon: Number(at[0].toFixed(7)),
    lat: Number(at[1].toFixed(7)),
    reported_at: new Date(Date.now()).toISOString(),
    source: "worker",
    reporter_id: state.me.worker_id,
  };
  await outbox.add({ kind: "report", event: report, photos: state.photos });
  $("report-form").reset();
  $("previews").replaceChildren();
  state.photos = [];
  state.report_pin_moved = false;
  body.dataset.photos = "0";
  $("report-done").hidden = false;
  $("report-done").textContent = t("report_queued", { waiting: await outbox.count() });
  body.dataset.reports = String(Number(body.dataset.reports || 0) + 1);
  drain();
});

// ------------------------------------------------------------------ my incidents

async function refreshIncidents() {
  const list = $("incidents");
  if (!navigator.onLine) { $("incidents-note").textContent = t("needs_network"); return; }
  let page;
  try {
    page = await api("incidents?limit=100");
  } catch (error) {
    $("incidents-note").textContent = String(error.message);
    return;
  }
  if (!state.me) return; // signed out meanwhile
  const mine = page.features.filter((f) => f.properties.assignee === state.me.worker_id
    && !["closed", "cancelled"].includes(f.properties.status));
  $("incidents-note").textContent = mine.length ? "" : t("no_incidents");
  list.replaceChildren(...mine.map(incidentItem));
}

function incidentItem(feature) {
  const p = feature.properties;
  const item = document.createElement("li");
  const category = state.categories.find((c) => c.code === p.category);
  const title = document.createElement("strong");
  title.textContent = category ? (lang() === "en" ? category.en : category.zh) : p.category;
  const status = document.createElement("span");
  status.className = "muted";
  status.textContent = ` · ${t(`status_${p.status}`)} · ${p.reported_at.slice(5, 16).replace("T", " ")}`;
  const note = document.createElement("div");
  note.textContent = p.description || "";
  const actions = document.createElement("div");
  actions.className = "actions";
  item.append(title, status, note, actions);
  const version = `"${p.version}"`;
  const move = (json) => api(`incidents/${feature.id}`, { method: "PATCH", json, headers: { "If-Match": version } });
  if (p.status === "dispatched") {
    const button = document.createElement("button");
    button.className = "secondary";
    button.textContent = t("start_work");
    button.addEventListener("click", () => move({ action: "start" }).then(refreshIncidents, alertError));
    actions.append(button);
  } else if (p.status === "in_progress") {
    const text = document.createElement("input");
    text.type = "text";
    text.placeholder = t("resolve_note");
    const photo = document.createElement("input");
    photo.type = "file";
    photo.accept = "image/*";
    photo.capture = "environment";
    photo.title = t("add_photo");
    const button = document.createElement("button");
    button.className = "secondary";
    button.textContent = t("resolve");
    button.addEventListener("click", async () => {
      try {
        if (photo.files.length) {
          const stored = await api("attachments", { method: "POST", blob: await resized(photo.files[0]) });
          await api(`incidents/${feature.id}/attachments`, {
            method: "POST", json: { content_id: stored.content_id, purpose: "resolution" },
          });
        }
        await move({ action: "resolve", note: text.value.trim() || t("resolve") });
        refreshIncidents();
      } catch (error) { alertError(error); }
    });
    actions.append(text, photo, button);
  } else if (p.status === "reported") {
    actions.textContent = t("awaiting_dispatch");
  }
  return item;
}

function alertError(error) { $("incidents-note").textContent = String(error.message || error); }

$("incidents-refresh").addEventListener("click", refreshIncidents);

// ------------------------------------------------------------------ frame

function showTab(name) {
  body.dataset.view = name;
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  for (const button of document.querySelectorAll("nav button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  if (name === "week") refreshWeek();
  if (name === "incidents") refreshIncidents();
  if (name === "report") pinMap.fit();
  if (name === "patrol") map.fit();
}

for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => showTab(button.dataset.tab));
}

function showNetwork() {
  state.online = navigator.onLine;
  $("net").textContent = t(state.online ? "online" : "offline");
  $("net").classList.toggle("off", !state.online);
  body.dataset.online = String(state.online);
}
window.addEventListener("online", showNetwork);
window.addEventListener("offline", () => { showNetwork(); showQueue(); });

$("lang").addEventListener("click", () => {
  setLang(lang() === "en" ? "zh" : "en");
  $("lang").textContent = lang() === "en" ? "中" : "EN";
  showNetwork();
  showPatrol();
  loadCategories().catch(() => {});
  if (state.me) refreshWeek();
});

async function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  await navigator.serviceWorker.register("sw.js", { scope: "./" });
  await navigator.serviceWorker.ready;
  const mark = () => { body.dataset.sw = navigator.serviceWorker.controller ? "controlled" : "ready"; };
  navigator.serviceWorker.addEventListener("controllerchange", mark);
  mark();
}

async function start() {
  if (!signedIn()) { signIn(); return; }
  if (!(await loadMe())) return;
  $("signin").hidden = true;
  $("main").hidden = false;
  $("footer").hidden = false;
  drawMe();
  showPatrol();
  watchPosition();
  showQueue();
  loadCategories().catch(() => {});
  drain();
}

$("lang").textContent = lang() === "en" ? "中" : "EN";
takeScannedToken();
translatePage();
showNetwork();
// The service worker after the first screen: on a slow phone it would compete with it.
start().finally(() => registerServiceWorker().catch((error) => console.warn("service worker:", error)));
