// Coverage (巡查覆盖): the grids nobody walks. A fill layer of its own over the grids,
// coloured by days since each grid's last counted patrol (feature-state `coverage_days`
// on the "grids" source, beside map.js's `status`, so the compliance colours stay as they
// are underneath and come back when the layer is switched off), and the list of the grids
// in the user's area not visited for N days. Reads GET api/v1/coverage for the 7 days
// ending on the shown week's Sunday (or today, in the current week).

const LAYER = "coverage-fill";
const NEVER = -1;
const COLOURS = { fresh: "#2e7d32", mid: "#f9a825", stale: "#e65100", never: "#6a1b9a" };

const CSS = `
#coverage .cov-row { display: flex; gap: 6px; align-items: center; margin: 4px 0; flex-wrap: wrap; }
#coverage input, #coverage button { font: inherit; min-height: 32px; }
#coverage input[type=number] { width: 4.5em; }
#coverage .cov-legend span { display: inline-block; margin-right: 8px; font-size: 11px; }
#coverage .cov-legend i { display: inline-block; width: 10px; height: 10px; margin-right: 3px; vertical-align: -1px; }
#coverage .cov-summary { font-size: 12px; color: #334; margin: 4px 0; }
#coverage .cov-list { margin: 0; padding: 0; list-style: none; font-size: 12px; max-height: 14em; overflow-y: auto; }
#coverage .cov-list li { border-left: 4px solid ${COLOURS.stale}; padding: 3px 6px; margin: 2px 0; cursor: pointer; }
#coverage .cov-list li.never { border-left-color: ${COLOURS.never}; }
#coverage .cov-list li:hover { background: #eef3f8; }
`;

// Local days (YYYY-MM-DD) are Beijing time, UTC+8 without daylight saving.
function beijingToday() {
  return new Date(Date.now() + 8 * 3600_000).toISOString().slice(0, 10);
}

function mondayOf(week) {
  const [, year, number] = week.match(/^(\d{4})-W(\d{2})$/).map(Number);
  const jan4 = new Date(Date.UTC(year, 0, 4));
  const monday = new Date(jan4.getTime() - ((jan4.getUTCDay() + 6) % 7) * 86400_000);
  return new Date(monday.getTime() + (number - 1) * 7 * 86400_000);
}

function addDays(day, n) {
  return new Date(new Date(`${day}T00:00:00Z`).getTime() + n * 86400_000).toISOString().slice(0, 10);
}

// The period the panel shows: the week's seven days, cut at today for the current week.
export function periodOf(week, today = beijingToday()) {
  const sunday = new Date(mondayOf(week).getTime() + 6 * 86400_000).toISOString().slice(0, 10);
  const to = sunday < today ? sunday : today;
  return { from: addDays(to, -6), to };
}

export async function install(context) {
  const { map, getJson, escapeText, addSection, state, onWeekChange } = context;
  const style = document.createElement("style");
  style.textContent = CSS;
  document.head.append(style);

  const section = addSection("coverage", "巡查覆盖 Coverage");
  section.insertAdjacentHTML("beforeend", `
    <div class="cov-row">
      <label><input type="checkbox" id="coverage-toggle"> 显示覆盖图层 show on map</label>
    </div>
    <div class="cov-row">
      <label>未巡查天数 not visited for <input type="number" id="coverage-days" min="1" max="366" value="7"> 天 days</label>
    </div>
    <div class="cov-legend">
      <span><i style="background:${COLOURS.fresh}"></i>0–1 天 days</span>
      <span><i style="background:${COLOURS.mid}"></i>3</span>
      <span><i style="background:${COLOURS.stale}"></i>≥7</span>
      <span><i style="background:${COLOURS.never}"></i>从未 never</span>
    </div>
    <p class="cov-summary" id="coverage-summary">…</p>
    <ul class="cov-list" id="coverage-list"></ul>`);
  const toggle = section.querySelector("#coverage-toggle");
  const daysInput = section.querySelector("#coverage-days");
  const summary = section.querySelector("#coverage-summary");
  const list = section.querySelector("#coverage-list");

  const NO_DATA = -2; // no answer for the grid (outside the area, or not loaded yet)
  const days = ["coalesce", ["feature-state", "coverage_days"], NO_DATA];
  map.addLayer({
    id: LAYER, type: "fill", source: "grids", "source-layer": "grids",
    layout: { visibility: "none" },
    paint: {
      "fill-color": ["case",
        ["==", days, NO_DATA], "rgba(0,0,0,0)",
        ["<", days, 0], COLOURS.never,
        ["interpolate", ["linear"], days, 1, COLOURS.fresh, 3, COLOURS.mid, 7, COLOURS.stale]],
      "fill-opacity": ["case", ["==", days, NO_DATA], 0, 0.8],
    },
  }, map.getLayer("grids-line") ? "grids-line" : undefined);

  let grids = [];
  let codes = new Set();

  function applyStates() {
    for (const grid of grids) {
      const value = grid.days_since_last_visit ?? NEVER;
      map.setFeatureState({ source: "grids", sourceLayer: "grids", id: Number(grid.grid_code) },
        { coverage_days: value });
    }
  }

  function renderList() {
    const n = Math.max(1, Number(daysInput.value) || 7);
    const stale = grids
      .filter((g) => g.days_since_last_visit === null || g.days_since_last_visit >= n)
      .sort((a, b) => (b.days_since_last_visit ?? 1e9) - (a.days_since_last_visit ?? 1e9)
        || a.grid_code.localeCompare(b.grid_code));
    const never = stale.filter((g) => g.days_since_last_visit === null).length;
    summary.textContent = `${stale.length} / ${grids.length} 个网格 ${n} 天以上未巡查（${never} 从未） · `
      + `${stale.length} of ${grids.length} grids not visited for ${n}+ days (${never} never)`;
    list.innerHTML = stale.slice(0, 500).map((g) => {
      const when = g.days_since_last_visit === null
        ? "从未 never" : `${g.days_since_last_visit} 天 days · ${escapeText(g.last_visit.slice(0, 10))}`;
      const share = `${Math.round(g.covered_share * 100)}%`;
      return `<li data-grid="${escapeText(g.grid_code)}" class="${g.days_since_last_visit === null ? "never" : ""}"
        title="覆盖 covered ${share}">${escapeText(g.name || g.grid_code)} · ${when}</li>`;
    }).join("");
    document.body.dataset.coverageStale = String(stale.length);
  }

  async function load(week) {
    const { from, to } = periodOf(week);
    summary.textContent = "…";
    const answer = await getJson(`api/v1/coverage?${new URLSearchParams({ from, to, level: "grid" })}`);
    grids = answer.items;
    codes = new Set(grids.map((g) => g.grid_code));
    applyStates();
    renderList();
    document.body.dataset.coverageWeek = week;
  }

  toggle.addEventListener("change", () => {
    map.setLayoutProperty(LAYER, "visibility", toggle.checked ? "visible" : "none");
    document.body.dataset.coverageLayer = toggle.checked ? "on" : "off";
  });
  daysInput.addEventListener("input", renderList);
  list.addEventListener("click", (event) => {
    const item = event.target.closest("li[data-grid]");
    if (!item) return;
    const features = map.querySourceFeatures("grids", { sourceLayer: "grids", filter: ["==", ["id"], Number(item.dataset.grid)] });
    if (!features.length) return;
    const ring = features[0].geometry.type === "Polygon" ? features[0].geometry.coordinates[0]
      : features[0].geometry.coordinates[0][0];
    const lons = ring.map((c) => c[0]);
    const lats = ring.map((c) => c[1]);
    map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]],
      { padding: 160, maxZoom: 14 });
  });
  map.on("idle", () => {
    if (map.getLayoutProperty(LAYER, "visibility") !== "visible") return;
    const marked = map.queryRenderedFeatures({ layers: [LAYER] })
      .filter((f) => codes.has(String(f.id)) && (f.state.coverage_days ?? 0) < 0);
    document.body.dataset.coverageNeverRendered = [...new Set(marked.map((f) => String(f.id)))].sort().join(" ");
  });
  onWeekChange((week) => { load(week).catch((error) => console.error("coverage", error)); });
  load(state.week).catch((error) => console.error("coverage", error));
}
