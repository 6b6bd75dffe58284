// Evaluation (综合评价): the signed-in user's area for a chosen month: cases reported,
// closed, on-time closure and rework rates, overdue, escalations, mean time per stage, and
// one line per unit of the area (districts for the city, streets for a district, ...),
// from GET api/v1/evaluation; the same figures as a CSV file (format=csv). Definitions:
// docs/EVALUATION.md. Months are local (Asia/Shanghai).

const CSS = `
#evaluation .ev-row { display: flex; gap: 6px; align-items: center; margin: 4px 0; flex-wrap: wrap; }
#evaluation input, #evaluation a.ev-csv { font: inherit; min-height: 28px; }
#evaluation .ev-figures { display: grid; grid-template-columns: repeat(3, 1fr); gap: 4px; margin: 6px 0; }
#evaluation .ev-figure { background: #f3f6f9; border-radius: 4px; padding: 4px 6px; }
#evaluation .ev-figure b { display: block; font-size: 16px; color: #123; }
#evaluation .ev-figure span { font-size: 11px; color: #456; }
#evaluation table { width: 100%; border-collapse: collapse; font-size: 11px; }
#evaluation th, #evaluation td { padding: 2px 4px; border-bottom: 1px solid #e3e8ee; text-align: right; }
#evaluation th:first-child, #evaluation td:first-child { text-align: left; }
#evaluation .ev-units { max-height: 16em; overflow-y: auto; }
#evaluation .ev-note { font-size: 11px; color: #567; }
#evaluation .ev-low { color: #b71c1c; font-weight: 600; }
`;

function beijingMonth() {
  return new Date(Date.now() + 8 * 3600_000).toISOString().slice(0, 7);
}

// The month's first and last local day (YYYY-MM-DD).
export function monthPeriod(month) {
  const [year, number] = month.split("-").map(Number);
  const last = new Date(Date.UTC(year, number, 0)).toISOString().slice(0, 10);
  return { from: `${month}-01`, to: last };
}

const percent = (value) => (value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`);
const hours = (stage) => (stage && stage.mean_s !== null ? (stage.mean_s / 3600).toFixed(1) : "–");

export async function install(context) {
  const { getJson, escapeText, addSection, authorized, onWeekChange } = context;
  const style = document.createElement("style");
  style.textContent = CSS;
  document.head.append(style);

  const section = addSection("evaluation", "综合评价 Evaluation");
  section.insertAdjacentHTML("beforeend", `
    <div class="ev-row">
      <label>月份 month <input type="month" id="evaluation-month"></label>
      <a class="ev-csv" id="evaluation-csv" href="#" download>下载 CSV download</a>
    </div>
    <div class="ev-note" id="evaluation-scope"></div>
    <div class="ev-figures" id="evaluation-figures"></div>
    <div class="ev-units"><table id="evaluation-units"></table></div>
    <div class="ev-note">按期：从未超期结案；返工：结案前曾被退回。 On time: closed never past a due time; rework: reopened before closing. Stage hours are means.</div>
  `);
  const monthInput = section.querySelector("#evaluation-month");
  const csvLink = section.querySelector("#evaluation-csv");
  const figuresBox = section.querySelector("#evaluation-figures");
  const unitsTable = section.querySelector("#evaluation-units");
  const scopeLine = section.querySelector("#evaluation-scope");
  monthInput.value = beijingMonth();

  const query = (extra = {}) => {
    const { from, to } = monthPeriod(monthInput.value || beijingMonth());
    return `api/v1/evaluation?${new URLSearchParams({ from, to, ...extra })}`;
  };

  function showTotal(total) {
    const tiles = [
      [total.reported, "上报 reported"],
      [total.dispatched, "派遣 dispatched"],
      [total.closed, "结案 closed"],
      [percent(total.on_time_rate), "按期结案率 on time"],
      [total.overdue, "超期 overdue"],
      [percent(total.reopen_rate), "返工率 rework"],
      [total.escalations, "吹哨 escalations"],
      [hours(total.stages.handle), "处置 handle h"],
      [hours(total.stages.total), "结案 to close h"],
    ];
    figuresBox.innerHTML = tiles
      .map(([value, label]) => `<div class="ev-figure"><b>${escapeText(String(value))}</b><span>${label}</span></div>`)
      .join("");
  }

  function showUnits(items) {
    const rows = items.map((item) => {
      const low = item.on_time_rate !== null && item.on_time_rate < 0.8 ? " class=\"ev-low\"" : "";
      return `<tr title="${escapeText(item.code)}"><td>${escapeText(item.name || item.code)}</td>`
        + `<td>${item.reported}</td><td>${item.closed}</td><td${low}>${percent(item.on_time_rate)}</td>`
        + `<td>${item.overdue}</td><td>${percent(item.reopen_rate)}</td></tr>`;
    });
    unitsTable.innerHTML = "<tr><th>单位 unit</th><th>上报</th><th>结案</th><th>按期</th><th>超期</th><th>返工</th></tr>"
      + rows.join("");
  }

  async function refresh() {
    scopeLine.textContent = "…";
    csvLink.href = query({ format: "csv" });
    try {
      const body = await getJson(query());
      const where = body.total.name || (body.code ? body.code : "全市 whole city");
      scopeLine.textContent = `${where} · ${body.from} – ${body.to} · 按 ${body.level}`;
      showTotal(body.total);
      showUnits(body.items);
      document.body.dataset.evaluation = `${body.from}/${body.to}`;
    } catch (error) {
      scopeLine.textContent = `无法读取评价 evaluation unavailable: ${error.message}`;
    }
  }

  // The file is asked for with the page's credentials (a session or a token), then saved.
  csvLink.addEventListener("click", async (event) => {
    event.preventDefault();
    const response = await fetch(query({ format: "csv" }), { headers: authorized({}) });
    if (!response.ok) {
      scopeLine.textContent = `CSV: HTTP ${response.status}`;
      return;
    }
    const { from, to } = monthPeriod(monthInput.value || beijingMonth());
    const url = URL.createObjectURL(await response.blob());
    const save = document.createElement("a");
    save.href = url;
    save.download = `evaluation-${from}-${to}.csv`;
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  });

  monthInput.addEventListener("change", refresh);
  // Entering a week elsewhere on the page moves the panel to that week's month.
  onWeekChange((week) => {
    const match = /^(\d{4})-W(\d{2})$/.exec(week || "");
    if (!match) return;
    const jan4 = new Date(Date.UTC(Number(match[1]), 0, 4));
    const monday = new Date(jan4.getTime() - ((jan4.getUTCDay() + 6) % 7) * 86400_000 + (Number(match[2]) - 1) * 7 * 86400_000);
    const month = monday.toISOString().slice(0, 7);
    if (month !== monthInput.value) {
      monthInput.value = month;
      refresh();
    }
  });
  refresh();
}
