// A worker's walk (巡查轨迹): pick a worker (search by name or id) and a day or a week;
// their check-ins are drawn as a line, each patrol highlighted with its start, end,
// duration and whether it counted and why, flagged fixes drawn apart, and a time slider
// replays the walk. Reads GET api/v1/workers/search, .../{id}/track (all its pages) and
// .../{id}/patrols (docs/INTERFACES.md, A worker's walk). Also opens on the window event
// `wangge:walk` ({worker_id, week}) that the at-risk and missed lists fire.

const SOURCE = "walk";
const HEAD = "walk-head";
const MAX_PAGES = 20; // 20 × 1,000 fixes: far beyond a month of walks
const COUNTED = "#2e7d32";
const NOT_COUNTED = "#ef6c00";
const FLAGGED = "#d50000";

const REASONS = {
  counted: "计入 counted",
  already_counted_today: "当日已计 already counted today",
  "invalid:too_few_checkins": "打卡过少 too few check-ins",
  "invalid:too_short": "时长不足 too short",
};
const FLAGS = {
  low_accuracy: "精度差 poor accuracy",
  implausible_speed: "速度异常 impossible speed",
  mocked: "模拟定位 mocked",
  outside_assigned_grid: "网格外 outside grid",
};

const CSS = `
#walk .walk-row { display: flex; gap: 4px; margin: 4px 0; flex-wrap: wrap; }
#walk input, #walk select, #walk button { font: inherit; min-height: 32px; }
#walk input[type=search] { flex: 1; min-width: 8em; }
#walk .walk-matches { margin: 0; padding: 0; list-style: none; max-height: 8em; overflow-y: auto; }
#walk .walk-matches button { width: 100%; text-align: left; background: none; border: none; padding: 4px; cursor: pointer; }
#walk .walk-matches button:hover { background: #eef3f8; }
#walk .walk-summary { font-size: 12px; color: #334; margin: 4px 0; }
#walk .walk-patrols { margin: 0; padding: 0; list-style: none; font-size: 12px; max-height: 12em; overflow-y: auto; }
#walk .walk-patrols li { border-left: 4px solid ${COUNTED}; padding: 2px 6px; margin: 2px 0; cursor: pointer; }
#walk .walk-patrols li.not-counted { border-left-color: ${NOT_COUNTED}; }
#walk .walk-patrols li.chosen { background: #eef3f8; }
#walk .walk-legend span { display: inline-block; margin-right: 8px; font-size: 11px; }
#walk .walk-legend i { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 3px; vertical-align: -1px; }
#walk input[type=range] { width: 100%; }
#walk .walk-clock { font-variant-numeric: tabular-nums; font-size: 12px; }
`;

// ISO week name ("2020-W37") of a calendar day given as YYYY-MM-DD.
function weekOfDay(day) {
  const date = new Date(`${day}T00:00:00Z`);
  const weekday = (date.getUTCDay() + 6) % 7; // Monday 0
  const thursday = new Date(date.getTime() + (3 - weekday) * 86400000);
  const year = thursday.getUTCFullYear();
  const firstThursday = new Date(Date.UTC(year, 0, 4));
  const week = 1 + Math.round((thursday - firstThursday) / 86400000 / 7
    - ((firstThursday.getUTCDay() + 6) % 7 - 3) / 7);
  return `${year}-W${String(week).padStart(2, "0")}`;
}

// Monday (YYYY-MM-DD) of an ISO week name.
function mondayOf(week) {
  const [, year, number] = week.match(/^(\d{4})-W(\d{2})$/).map(Number);
  const jan4 = new Date(Date.UTC(year, 0, 4));
  const monday = new Date(jan4.getTime() - ((jan4.getUTCDay() + 6) % 7) * 86400000
    + (number - 1) * 7 * 86400000);
  return monday.toISOString().slice(0, 10);
}

function addDays(day, n) {
  return new Date(new Date(`${day}T00:00:00Z`).getTime() + n * 86400000).toISOString().slice(0, 10);
}

// Days and weeks are local to the city (Asia/Shanghai, no daylight saving): +08:00.
const local = (day) => `${day}T00:00:00+08:00`;
const clock = (iso) => iso.slice(11, 16);
// The fixes cut where the phone was silent longer than a patrol's gap (30 minutes): the
// line never jumps across the hours between two walks.
const GAP_MS = 30 * 60000;
function walks(fixes) {
  const runs = [];
  let previous = null;
  for (const fix of fixes) {
    const at = Date.parse(fix.properties.recorded_at);
    if (previous === null || at - previous > GAP_MS) runs.push([]);
    runs[runs.length - 1].push(fix.geometry.coordinates);
    previous = at;
  }
  return runs;
}
const minutesBetween = (a, b) => Math.round((Date.parse(b) - Date.parse(a)) / 60000);

export async function install(context) {
  const { map, getJson, escapeText, addSection, state } = context;
  const style = document.createElement("style");
  style.textContent = CSS;
  document.head.append(style);

  const section = addSection("walk", "巡查轨迹 Walk");
  section.insertAdjacentHTML("beforeend", `
    <div class="walk-row">
      <input type="search" id="walk-query" placeholder="姓名或编号 name or id" aria-label="worker">
    </div>
    <ul class="walk-matches" id="walk-matches"></ul>
    <div class="walk-row">
      <select id="walk-span" aria-label="period">
        <option value="week">一周 week</option><option value="day">一天 day</option>
      </select>
      <input type="week" id="walk-week" aria-label="week">
      <input type="date" id="walk-day" aria-label="day" hidden>
      <button type="button" id="walk-show">显示 Show</button>
      <button type="button" id="walk-clear" title="清除 clear">✕</button>
    </div>
    <div class="walk-summary" id="walk-summary"></div>
    <div class="walk-legend" id="walk-legend" hidden>
      <span><i style="background:${COUNTED}"></i>计入巡查 counted patrol</span>
      <span><i style="background:${NOT_COUNTED}"></i>未计入 not counted</span>
      <span><i style="background:#fff;border:2px solid ${FLAGGED}"></i>存疑定位 flagged fix</span>
    </div>
    <ul class="walk-patrols" id="walk-patrols"></ul>
    <div id="walk-replay" hidden>
      <div class="walk-row">
        <button type="button" id="walk-play">▶ 回放 Replay</button>
        <span class="walk-clock" id="walk-clock"></span>
      </div>
      <input type="range" id="walk-slider" min="0" value="0" aria-label="time">
    </div>`);
  const $ = (id) => section.querySelector(`#${id}`);
  $("walk-week").value = state.week || "";
  $("walk-day").value = state.week ? mondayOf(state.week) : "";

  const chosen = { worker: null, fixes: [], timer: null };

  // ---------------------------------------------------------------- map layers
  function ensureLayers() {
    if (map.getSource(SOURCE)) return;
    const empty = { type: "FeatureCollection", features: [] };
    map.addSource(SOURCE, { type: "geojson", data: empty });
    map.addSource(HEAD, { type: "geojson", data: empty });
    map.addLayer({ id: "walk-line", type: "line", source: SOURCE, filter: ["==", ["get", "kind"], "line"],
      paint: { "line-color": "#607d8b", "line-width": 2, "line-dasharray": [2, 1] } });
    // What the replay has walked so far, under the patrols so their colours stay seen.
    map.addLayer({ id: "walk-played", type: "line", source: HEAD, filter: ["==", ["get", "kind"], "played"],
      paint: { "line-color": "#90caf9", "line-width": 8, "line-opacity": 0.8 } });
    map.addLayer({ id: "walk-patrols", type: "line", source: SOURCE, filter: ["==", ["get", "kind"], "patrol"],
      paint: { "line-color": ["case", ["get", "counted"], COUNTED, NOT_COUNTED],
        "line-width": ["case", ["get", "chosen"], 7, 4], "line-opacity": 0.85 } });
    map.addLayer({ id: "walk-fixes", type: "circle", source: SOURCE, filter: ["==", ["get", "kind"], "fix"],
      paint: { "circle-radius": ["case", ["get", "flagged"], 6, 2.5],
        "circle-color": ["case", ["get", "flagged"], "#ffffff", "#37474f"],
        "circle-stroke-color": FLAGGED, "circle-stroke-width": ["case", ["get", "flagged"], 2.5, 0] } });
    map.addLayer({ id: "walk-head", type: "circle", source: HEAD, filter: ["==", ["get", "kind"], "head"],
      paint: { "circle-radius": 8, "circle-color": "#1565c0", "circle-stroke-color": "#fff", "circle-stroke-width": 2 } });
    map.on("click", "walk-fixes", (event) => {
      const p = event.features[0].properties;
      const flags = JSON.parse(p.flags || "[]").map((f) => FLAGS[f] || f).join("<br>");
      new context.Popup().setLngLat(event.lngLat).setHTML(
        `<b>${escapeText(p.recorded_at.slice(0, 16).replace("T", " "))}</b><br>`
        + `精度 accuracy ${p.accuracy_m === "null" || p.accuracy_m == null ? "—" : `${Math.round(p.accuracy_m)} m`}`
        + (flags ? `<br>${flags}` : "")).addTo(map);
    });
  }

  function draw(fixes, patrols, chosenStart) {
    ensureLayers();
    const features = [];
    const runs = walks(fixes).filter((run) => run.length > 1);
    if (runs.length) {
      features.push({ type: "Feature", properties: { kind: "line" },
        geometry: { type: "MultiLineString", coordinates: runs } });
    }
    for (const patrol of patrols) {
      const members = fixes.filter((f) => f.properties.patrol
        && f.properties.patrol.grid_code === patrol.grid_code
        && Date.parse(f.properties.patrol.started_at) === Date.parse(patrol.started_at));
      if (members.length < 1) continue;
      const coordinates = members.map((f) => f.geometry.coordinates);
      features.push({ type: "Feature",
        properties: { kind: "patrol", counted: patrol.counted, chosen: patrol.started_at === chosenStart },
        geometry: coordinates.length > 1 ? { type: "LineString", coordinates }
          : { type: "LineString", coordinates: [coordinates[0], coordinates[0]] } });
    }
    for (const fix of fixes) {
      features.push({ type: "Feature", geometry: fix.geometry,
        properties: { kind: "fix", flagged: fix.properties.flags.length > 0, flags: JSON.stringify(fix.properties.flags),
          recorded_at: fix.properties.recorded_at, accuracy_m: fix.properties.accuracy_m } });
    }
    map.getSource(SOURCE).setData({ type: "FeatureCollection", features });
  }

  function fit(fixes) {
    if (!fixes.length) return;
    const xs = fixes.map((f) => f.geometry.coordinates[0]);
    const ys = fixes.map((f) => f.geometry.coordinates[1]);
    map.fitBounds([[Math.min(...xs), Math.min(...ys)], [Math.max(...xs), Math.max(...ys)]],
      { padding: 60, maxZoom: 17, duration: 0 });
  }

  // ---------------------------------------------------------------- replay
  function replayTo(index) {
    const fixes = chosen.fixes;
    if (!fixes.length) return;
    const at = Math.max(0, Math.min(index, fixes.length - 1));
    const fix = fixes[at];
    const played = walks(fixes.slice(0, at + 1)).filter((run) => run.length > 1);
    const features = [{ type: "Feature", properties: { kind: "head" }, geometry: fix.geometry }];
    if (played.length) {
      features.push({ type: "Feature", properties: { kind: "played" }, geometry: { type: "MultiLineString", coordinates: played } });
    }
    map.getSource(HEAD).setData({ type: "FeatureCollection", features });
    $("walk-clock").textContent = `${fix.properties.recorded_at.slice(0, 16).replace("T", " ")}`
      + ` · ${at + 1}/${fixes.length}`;
    section.dataset.replayAt = fix.properties.recorded_at;
  }

  function stop() {
    if (chosen.timer) clearInterval(chosen.timer);
    chosen.timer = null;
    $("walk-play").textContent = "▶ 回放 Replay";
  }

  $("walk-slider").addEventListener("input", () => { stop(); replayTo(Number($("walk-slider").value)); });
  $("walk-play").addEventListener("click", () => {
    if (chosen.timer) { stop(); return; }
    const slider = $("walk-slider");
    if (Number(slider.value) >= chosen.fixes.length - 1) slider.value = "0";
    $("walk-play").textContent = "⏸ 暂停 Pause";
    chosen.timer = setInterval(() => {
      const next = Number(slider.value) + 1;
      if (next >= chosen.fixes.length) { stop(); return; }
      slider.value = String(next);
      replayTo(next);
    }, 80);
  });

  // ---------------------------------------------------------------- reading
  async function readTrack(workerId, from, to) {
    let url = `api/v1/workers/${encodeURIComponent(workerId)}/track?${new URLSearchParams({ from, to })}`;
    const fixes = [];
    let header = null;
    for (let page = 0; url && page < MAX_PAGES; page += 1) {
      const body = await getJson(url);
      header = header || body;
      // A fix names its patrol by its index in the page's list: put the patrol itself there.
      for (const fix of body.features) {
        const index = fix.properties.patrol;
        fix.properties.patrol = index === null ? null : body.patrols[index];
      }
      fixes.push(...body.features);
      url = body.next ? body.next.replace(/^\//, "") : null;
    }
    return { name: header ? header.name : workerId, fixes };
  }

  function patrolItem(patrol, fixes) {
    const minutes = minutesBetween(patrol.started_at, patrol.ended_at);
    const members = fixes.filter((f) => f.properties.patrol
      && Date.parse(f.properties.patrol.started_at) === Date.parse(patrol.started_at)
      && f.properties.patrol.grid_code === patrol.grid_code).length;
    const li = document.createElement("li");
    li.className = patrol.counted ? "counted" : "not-counted";
    Object.assign(li.dataset, { startedAt: patrol.started_at, endedAt: patrol.ended_at,
      counted: String(patrol.counted), reason: patrol.reason, checkins: String(patrol.checkin_count),
      drawn: String(members), grid: patrol.grid_code });
    li.innerHTML = `<b>${escapeText(patrol.local_day)}</b> ${escapeText(clock(patrol.started_at))}–${escapeText(clock(patrol.ended_at))}`
      + ` · ${minutes} 分钟 min · ${escapeText(String(patrol.checkin_count))} 次打卡 fixes<br>`
      + `${escapeText(REASONS[patrol.reason] || patrol.reason)} · ${escapeText(patrol.grid_code)}`;
    return li;
  }

  async function show(workerId, span, value) {
    stop();
    const day = span === "day" ? value : mondayOf(value);
    const week = span === "day" ? weekOfDay(value) : value;
    const [from, to] = [local(day), local(addDays(day, span === "day" ? 1 : 7))];
    section.dataset.state = "loading";
    $("walk-summary").textContent = "读取中 loading…";
    try {
      const [track, patrols] = await Promise.all([
        readTrack(workerId, from, to),
        getJson(`api/v1/workers/${encodeURIComponent(workerId)}/patrols?week=${encodeURIComponent(week)}`),
      ]);
      const all = patrols.grids.flatMap((g) => g.patrols.map((p) => ({ ...p, grid_code: g.grid_code })))
        .filter((p) => span === "week" || p.local_day === day)
        .sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
      chosen.worker = workerId;
      chosen.fixes = track.fixes;
      const flagged = track.fixes.filter((f) => f.properties.flags.length).length;
      const counted = all.filter((p) => p.counted).length;
      $("walk-summary").innerHTML = `<b>${escapeText(track.name)}</b> ${escapeText(workerId)} · `
        + `${escapeText(span === "day" ? day : week)}<br>${track.fixes.length} 次打卡 fixes · `
        + `${flagged} 存疑 flagged · ${all.length} 次巡查 patrols, ${counted} 计入 counted`;
      const list = $("walk-patrols");
      list.replaceChildren(...all.map((p) => patrolItem(p, track.fixes)));
      for (const li of list.children) {
        li.addEventListener("click", () => {
          for (const other of list.children) other.classList.toggle("chosen", other === li);
          draw(track.fixes, all, li.dataset.startedAt);
          fit(track.fixes.filter((f) => f.properties.patrol
            && Date.parse(f.properties.patrol.started_at) === Date.parse(li.dataset.startedAt)));
        });
      }
      draw(track.fixes, all, null);
      fit(track.fixes);
      $("walk-legend").hidden = false;
      $("walk-replay").hidden = track.fixes.length === 0;
      $("walk-slider").max = String(Math.max(track.fixes.length - 1, 0));
      $("walk-slider").value = String(Math.max(track.fixes.length - 1, 0));
      if (track.fixes.length) replayTo(track.fixes.length - 1);
      Object.assign(section.dataset, { state: "ready", worker: workerId, fixes: String(track.fixes.length),
        flagged: String(flagged), patrols: String(all.length) });
    } catch (error) {
      section.dataset.state = "error";
      $("walk-summary").textContent = `无法读取 could not read: ${error.message}`;
    }
  }

  function current() {
    const span = $("walk-span").value;
    return [span, span === "day" ? $("walk-day").value : $("walk-week").value];
  }

  // ---------------------------------------------------------------- search
  let searchTimer = null;
  $("walk-query").addEventListener("input", () => {
    clearTimeout(searchTimer);
    const q = $("walk-query").value.trim();
    if (!q) { $("walk-matches").replaceChildren(); return; }
    searchTimer = setTimeout(async () => {
      try {
        const { items } = await getJson(`api/v1/workers/search?${new URLSearchParams({ q, limit: "10" })}`);
        $("walk-matches").replaceChildren(...items.map((w) => {
          const li = document.createElement("li");
          const button = document.createElement("button");
          button.type = "button";
          button.dataset.worker = w.worker_id;
          button.textContent = `${w.name} ${w.worker_id} · ${w.grid_codes.join(", ")}`;
          button.addEventListener("click", () => {
            $("walk-query").value = `${w.name} ${w.worker_id}`;
            $("walk-matches").replaceChildren();
            chosen.worker = w.worker_id;
            show(w.worker_id, ...current());
          });
          li.append(button);
          return li;
        }));
        if (!items.length) $("walk-matches").innerHTML = "<li>无结果 no match</li>";
      } catch (error) {
        $("walk-matches").textContent = error.message;
      }
    }, 200);
  });

  $("walk-span").addEventListener("change", () => {
    const day = $("walk-span").value === "day";
    $("walk-day").hidden = !day;
    $("walk-week").hidden = day;
  });
  $("walk-show").addEventListener("click", () => { if (chosen.worker) show(chosen.worker, ...current()); });
  $("walk-clear").addEventListener("click", () => {
    stop();
    chosen.worker = null;
    chosen.fixes = [];
    const empty = { type: "FeatureCollection", features: [] };
    if (map.getSource(SOURCE)) { map.getSource(SOURCE).setData(empty); map.getSource(HEAD).setData(empty); }
    $("walk-patrols").replaceChildren();
    $("walk-summary").textContent = "";
    $("walk-legend").hidden = true;
    $("walk-replay").hidden = true;
    delete section.dataset.state;
  });
  context.onWeekChange((week) => { if (!chosen.worker) $("walk-week").value = week; });

  window.addEventListener("wangge:walk", (event) => {
    const { worker_id: workerId, week } = event.detail || {};
    if (!workerId) return;
    const chosenWeek = week || state.week;
    $("walk-span").value = "week";
    $("walk-span").dispatchEvent(new Event("change"));
    $("walk-week").value = chosenWeek;
    $("walk-query").value = workerId;
    section.scrollIntoView({ block: "nearest" });
    show(workerId, "week", chosenWeek);
  });
}
