// Acting from the map: an incident's card (its history, photos and the actions the signed-in
// account may take, with the version handled for the user), the calls to workers of the
// at-risk and missed lists, and the compliance export. map.js gives it the page's helpers.

export const ACTION_NAMES = {
  dispatch: "派遣 Dispatch", start: "开始处置 Start", resolve: "办结 Resolve", close: "结案 Close",
  reopen: "退回重办 Reopen", escalate: "吹哨上报 Escalate", cancel: "作废 Cancel",
  confirm_duplicate: "确认重复 Confirm duplicate", split: "不是重复 Not a duplicate",
  overdue: "超期 overdue",
};
const OPEN_BEFORE_RESOLVED = ["reported", "dispatched", "in_progress", "escalated"];
// Which action may start from which status (geodata/incidents.py's rule table), and who
// makes it: "supervisor" (a supervisor of the area, or an admin) or "assignee" (the worker
// holding it, or an admin). The server decides; the page only offers what may succeed.
const RULES = {
  dispatch: [OPEN_BEFORE_RESOLVED, "supervisor"],
  start: [["dispatched"], "assignee"],
  resolve: [["in_progress"], "assignee"],
  close: [["resolved"], "supervisor"],
  reopen: [["resolved"], "supervisor"],
  escalate: [OPEN_BEFORE_RESOLVED, "supervisor"],
  cancel: [[...OPEN_BEFORE_RESOLVED, "resolved"], "supervisor"],
  confirm_duplicate: [OPEN_BEFORE_RESOLVED, "supervisor", "duplicate"],
  split: [OPEN_BEFORE_RESOLVED, "supervisor", "duplicate"],
};
const NEEDS_NOTE = new Set(["resolve", "reopen", "escalate", "cancel"]);
const ERRORS = {
  stale_version: "已被他人修改，已重新载入 · changed meanwhile; reloaded, look again",
  illegal_transition: "此状态下不可操作，已重新载入 · not possible from its status now; reloaded",
  note_required: "请填写说明 · a note is needed",
  invalid_assignee: "该网格员不负责此处 · that worker has no grid here",
  outside_area: "不在您的辖区 · outside your area",
  forbidden: "您的角色不可操作 · your role may not do this",
  worker_mismatch: "只有承办人可操作 · only the assignee may do this",
  rate_limited: "操作过于频繁，请稍候 · too many requests; wait a moment",
};

function localTime(text) {
  return text ? new Date(text).toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" }) : "–";
}

// ------------------------------------------------------------------ the incident card

export function actionsFor(me, incident) {
  const p = incident.properties;
  return Object.entries(RULES).filter(([, [from, who, needs]]) => {
    if (!from.includes(p.status)) return false;
    if (needs === "duplicate" && !p.probable_duplicate_of) return false;
    if (me.role === "admin") return true;
    if (who === "supervisor") return me.role === "supervisor";
    return me.role === "worker" && me.worker_id === p.assignee;
  }).map(([action]) => action);
}

export function incidentCard({ section, me, getJson, authorized, escapeText, week, onMoved }) {
  let current = null; // the incident shown, as last read (its version is the ETag)

  async function show(id, notice = "") {
    section.hidden = false;
    section.dataset.incidentId = id;
    section.dataset.version = "";
    section.innerHTML = `<p class="muted">${escapeText(id)} …</p>`;
    try {
      current = await getJson(`api/v1/incidents/${id}`);
    } catch (error) {
      section.textContent = `${id}: ${error.message}`;
      return;
    }
    render(notice);
    section.scrollIntoView({ block: "start" });
    onMoved(current);
    loadPhotos(id).catch((error) => console.warn("photos", error));
  }

  function render(notice) {
    const p = current.properties;
    section.dataset.version = String(p.version);
    section.dataset.status = p.status;
    const history = p.history.map((h) => `<li data-action="${escapeText(h.action)}">
        <b>${escapeText(ACTION_NAMES[h.action] || h.action)}</b>
        ${escapeText(h.from_status)} → ${escapeText(h.to_status)}
        <span class="muted">· ${escapeText(h.actor)} (${escapeText(h.actor_role)}) · ${escapeText(localTime(h.at))}</span>
        ${h.assignee ? `<span>· ${escapeText(h.assignee)}</span>` : ""}
        ${h.note ? `<q>${escapeText(h.note)}</q>` : ""}</li>`).join("");
    const actions = actionsFor(me, current);
    section.innerHTML = `<h2>事件 <span class="en">incident</span> <button type="button" class="close-card" title="close">×</button></h2>
      <p id="card-notice" class="notice" role="status" ${notice ? "" : "hidden"}>${escapeText(notice)}</p>
      <dl><dt>类别 category</dt><dd>${escapeText(p.category)}</dd>
        <dt>状态 status</dt><dd class="card-status">${escapeText(p.status)}${p.overdue ? " · <b class=\"overdue\">超期 overdue</b>" : ""}</dd>
        <dt>网格 grid</dt><dd>${escapeText(p.grid_code || "–")}</dd>
        <dt>承办 assignee</dt><dd>${escapeText(p.assignee || "–")}</dd>
        <dt>上报 reported</dt><dd>${escapeText(localTime(p.reported_at))}</dd>
        <dt>时限 due</dt><dd>${escapeText(localTime(p.due_at))}</dd>
        ${p.escalated_to ? `<dt>吹哨至 escalated</dt><dd>${escapeText(p.escalated_to)}</dd>` : ""}
        ${p.probable_duplicate_of ? `<dt>疑似重复 duplicate of</dt><dd>${escapeText(p.probable_duplicate_of)}</dd>` : ""}
        <dt>描述 text</dt><dd>${escapeText(p.description || "–")}</dd></dl>
      <h3>照片 <span class="en">photos</span></h3><div class="photos muted">…</div>
      <h3>经过 <span class="en">history</span></h3><ol class="history">${history || "<li class=\"muted\">–</li>"}</ol>
      <div class="actions">${actions.map((a) => `<button type="button" data-act="${a}">${ACTION_NAMES[a]}</button>`).join("") || "<span class=\"muted\">无可用操作 · nothing you may do now</span>"}</div>
      <form class="act-form" hidden></form>`;
    section.querySelector(".close-card").addEventListener("click", () => { section.hidden = true; });
    for (const button of section.querySelectorAll("[data-act]")) {
      button.addEventListener("click", () => openForm(button.dataset.act).catch((e) => say(e.message)));
    }
  }

  function say(text) {
    const notice = section.querySelector("#card-notice");
    if (!notice) return;
    notice.hidden = !text;
    notice.textContent = text;
  }

  async function loadPhotos(id) {
    const photos = await getJson(`api/v1/incidents/${id}/attachments`);
    const box = section.querySelector(".photos");
    if (!box || section.dataset.incidentId !== id) return;
    if (photos.length === 0) { box.textContent = "无 none"; return; }
    box.replaceChildren();
    for (const photo of photos) {
      // Fetched with this page's credentials (a pasted token is a header, not a cookie).
      const response = await fetch(photo.href.replace(/^\//, ""), { headers: authorized() });
      if (!response.ok) continue;
      const img = document.createElement("img");
      img.src = URL.createObjectURL(await response.blob());
      img.alt = `${photo.purpose} ${photo.content_id.slice(0, 8)}`;
      img.title = `${photo.purpose === "resolution" ? "办结 resolution" : "上报 report"} · ${photo.added_by || ""} · ${localTime(photo.added_at)}`;
      box.append(img);
    }
  }

  async function workersHere() {
    // Who may be dispatched: the workers of the incident's community (after a whistle, of
    // the street or district it went to), as this week's compliance lists them.
    const p = current.properties;
    const code = p.escalated_to && p.escalated_to.length < 12 ? p.escalated_to : p.community_code || p.grid_code;
    const query = new URLSearchParams({ level: "worker", week: week(), code });
    const report = await getJson(`api/v1/compliance?${query}`);
    const seen = new Map();
    for (const w of report.items) if (!seen.has(w.worker_id)) seen.set(w.worker_id, w);
    return [...seen.values()].sort((a, b) => (a.grid_code === p.grid_code ? -1 : 0) - (b.grid_code === p.grid_code ? -1 : 0));
  }

  async function openForm(action) {
    const form = section.querySelector(".act-form");
    const needsNote = NEEDS_NOTE.has(action);
    let fields = "";
    if (action === "dispatch") {
      const workers = await workersHere();
      fields += `<label>派给 To <select name="assignee" required>${workers.map((w) =>
        `<option value="${escapeText(w.worker_id)}">${escapeText(w.name)} ${escapeText(w.worker_id)} · ${escapeText(w.grid_code)}</option>`).join("")}</select></label>`;
    }
    if (action === "escalate") {
      fields += `<label>上报至 To <select name="level"><option value="">上一级 next level</option>
        <option value="street">街道 street</option><option value="district">区 district</option></select></label>`;
    }
    if (needsNote || action !== "dispatch") {
      fields += `<label>说明 Note <textarea name="note" rows="2" maxlength="2000" ${needsNote ? "required" : ""}></textarea></label>`;
    }
    form.innerHTML = `${fields}<button type="submit">${ACTION_NAMES[action]}</button> <button type="button" class="cancel-form">取消 Back</button>`;
    form.hidden = false;
    form.querySelector(".cancel-form").addEventListener("click", () => { form.hidden = true; });
    form.onsubmit = (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const body = { action };
      for (const key of ["assignee", "level", "note"]) {
        const value = (data.get(key) || "").toString().trim();
        if (value) body[key] = value;
      }
      act(body).catch((error) => say(error.message));
    };
  }

  async function act(body) {
    const id = current.id;
    const response = await fetch(`api/v1/incidents/${id}`, {
      method: "PATCH",
      headers: authorized({ "Content-Type": "application/json", Accept: "application/json",
        "If-Match": `"${current.properties.version}"` }),
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.ok) {
      current = answer;
      render(`已${ACTION_NAMES[body.action]} · done`);
      section.scrollIntoView({ block: "start" });
      onMoved(current);
      loadPhotos(id).catch((error) => console.warn("photos", error));
      return;
    }
    const message = ERRORS[answer.code] || `${answer.code || response.status}: ${answer.detail || ""}`;
    if (response.status === 412 || response.status === 409) {
      // Never the raw 412: read the incident as it now stands and say why.
      await show(id, message);
      section.dataset.stale = String(response.status === 412);
    } else {
      say(message);
    }
  }

  return { show, get current() { return current; } };
}

// ------------------------------------------------------------------ calls and the export

export async function callWorker(worker, { authorized, week }) {
  const response = await fetch(`api/v1/workers/${worker.id}/notify`, {
    method: "POST",
    headers: authorized({ "Content-Type": "application/json", Accept: "application/json" }),
    body: JSON.stringify({ week: week(), status: worker.status }),
  });
  const answer = await response.json().catch(() => ({}));
  if (response.ok) return { ok: true, text: "已发送 · sent", call: answer };
  const text = {
    notify_unavailable: "未配置通知 · calling is off (no webhook)",
    outside_area: "不在您的辖区 · outside your area",
    rate_limited: "操作过于频繁 · too many requests",
  }[answer.code] || `${answer.code || response.status}`;
  return { ok: false, text };
}

export async function callState(workerId, deliveryId, getJson) {
  const { calls } = await getJson(`api/v1/workers/${workerId}/notify`);
  return calls.find((c) => c.delivery_id === deliveryId) || null;
}

export async function download(url, authorized) {
  const response = await fetch(url, { headers: authorized() });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || "export";
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}
