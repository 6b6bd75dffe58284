// The app's words in Chinese (the default) and English; the choice is kept on the phone.
const LANG_KEY = "wangge.app.lang";

const STRINGS = {
  zh: {
    online: "在线", offline: "离线",
    signin_title: "登录", signin_button: "登录",
    username: "用户名", password: "密码", one_time_password: "一次性密码",
    new_password: "新密码", new_password_again: "再次输入新密码",
    choose_password_help: "这是管理员给的一次性密码：请设置你自己的密码（至少 10 个字符，不能是常见密码，不能包含用户名）。",
    choose_password_button: "设置新密码并登录",
    token_way: "用令牌登录（定位器、测试）", token_button: "使用令牌",
    token_help: "粘贴令牌，或用手机相机扫描管理员给的二维码。只需一次，本机保存。",
    bad_token: "令牌无效或已停用，请重新粘贴。", not_worker: "这个账号不是网格员账号。",
    wrong_password: "用户名或密码错误。",
    locked_out: "连续输错次数过多，账号已锁定：请 {min} 分钟后再试，或请管理员重置密码。",
    rate_limited: "尝试过于频繁，请 {s} 秒后再试。",
    passwords_differ: "两次输入的新密码不一致。",
    weak_password: "新密码不符合要求（至少 10 个字符，不能是常见密码，不能包含用户名或与原密码相同）。",
    signin_offline: "没有网络，无法登录：联网后再试。待上传的记录仍保存在本机。",
    signin_failed: "登录失败（{code}）。",
    session_expired: "登录已过期，请重新登录。待上传的 {n} 项仍保存在本机，登录后自动上传。",
    signed_in_as: "已登录：{name}（{via}）", via_session: "密码", via_token: "令牌",
    sign_out_on_patrol: "请先结束巡查再退出登录。",
    signed_out_waiting: "已退出。{n} 项待上传记录仍保存在本机，下次登录后上传。",
    elapsed: "用时", distance: "距离", fixes: "定位点", accuracy: "精度",
    patrol_help: "巡查时每 30 秒或每走 25 米记录一个定位点，离线也会保存，联网后自动上传。",
    start_patrol: "开始巡查", end_patrol: "结束巡查",
    no_position: "尚未定位：请允许定位权限并到室外。",
    outside_grid: "你不在自己的网格内：这里的定位点不计入巡查。",
    this_week: "本周巡查", counted_of_required: "次（已计入 / 应巡）", walks: "本周巡查记录",
    rule_help: "每次巡查需至少 3 个定位点、持续 10 分钟以上，一天最多计 1 次；网格外或精度差于 100 米的定位点不计；模拟位置或不可能的速度会使该次巡查无效。",
    refresh: "刷新", as_of: "更新于 {time}", cached: "（离线，显示上次的数据）",
    no_walks: "本周还没有巡查记录。",
    status_met: "已达标", status_on_track: "进行中", status_at_risk: "有风险", status_missed: "未达标",
    warn_at_risk: "注意：本周还需巡查 {left} 次，只剩 {days} 天（每天最多计 1 次）。",
    warn_missed: "本周巡查未达标：已计入 {counted} 次，应巡 {required} 次。",
    reason_counted: "已计入", reason_too_short: "未计入：不足 10 分钟",
    reason_too_few: "未计入：定位点太少（少于 3 个）", reason_same_day: "未计入：当天已计入一次",
    reason_mocked: "未计入：定位来自模拟位置（虚拟定位）", reason_speed: "未计入：定位跳跃过快，不可能步行或驾车到达",
    reason_other: "未计入：{reason}",
    walk_line: "{day} {start}–{end} · {n} 个定位点",
    category: "类别", note: "描述", pin_help: "拖动红色标记到事件位置。",
    photos: "照片（最多 3 张）", send_report: "上报", too_many_photos: "最多 3 张照片。",
    need_position: "还没有位置：请等待定位或拖动标记。",
    report_queued: "已保存事件上报，将在联网时上传（{waiting} 项待上传）。",
    my_incidents: "我的事件", no_incidents: "没有分派给你的事件。",
    start_work: "开始处理", resolve: "办结", resolve_note: "办结说明", add_photo: "办结照片",
    needs_network: "此操作需要联网。", awaiting_dispatch: "等待派遣",
    status_reported: "已上报", status_dispatched: "已派遣", status_in_progress: "处理中",
    status_resolved: "已办结", status_closed: "已结案", status_escalated: "已上报上级", status_cancelled: "已取消",
    waiting: "待上传", sending: "上传中…", until_online: "联网后自动上传", retry_in: "{s} 秒后重试", refused: "{n} 项被拒收",
    tab_patrol: "巡查", tab_week: "本周", tab_report: "上报", tab_incidents: "事件",
    sign_out: "退出登录",
  },
  en: {
    online: "online", offline: "offline",
    signin_title: "Sign in", signin_button: "Sign in",
    username: "Name", password: "Password", one_time_password: "One-time password",
    new_password: "New password", new_password_again: "New password again",
    choose_password_help: "This is the one-time password an admin gave you: choose your own (10 characters or more, not a common one, not containing your name).",
    choose_password_button: "Set the password and sign in",
    token_way: "Sign in with a token (trackers, tests)", token_button: "Use the token",
    token_help: "Paste the token, or scan the admin's QR code with the phone's camera. Once only: this phone keeps it.",
    bad_token: "The token is invalid or revoked; paste it again.", not_worker: "This account is not a grid worker's.",
    wrong_password: "Wrong name or password.",
    locked_out: "Locked after repeated wrong passwords: try again in {min} min, or ask an admin to reset the password.",
    rate_limited: "Too many attempts: try again in {s} s.",
    passwords_differ: "The two new passwords differ.",
    weak_password: "The new password is refused (10 characters or more, not a common one, not containing your name, not the old one).",
    signin_offline: "No network, so no sign-in: try again once online. What waits to upload stays on this phone.",
    signin_failed: "Sign-in failed ({code}).",
    session_expired: "Your sign-in has expired: sign in again. The {n} waiting item(s) stay on this phone and upload after you sign in.",
    signed_in_as: "Signed in: {name} ({via})", via_session: "password", via_token: "token",
    sign_out_on_patrol: "End the patrol before signing out.",
    signed_out_waiting: "Signed out. {n} waiting item(s) stay on this phone and upload at the next sign-in.",
    elapsed: "Time", distance: "Distance", fixes: "Fixes", accuracy: "Accuracy",
    patrol_help: "On patrol the app keeps a fix every 30 s or 25 m, offline too, and uploads them when online.",
    start_patrol: "Start patrol", end_patrol: "End patrol",
    no_position: "No position yet: allow location and step outside.",
    outside_grid: "You are outside your grid: fixes here do not count.",
    this_week: "This week", counted_of_required: "counted of required", walks: "Walks this week",
    rule_help: "A patrol needs 3 fixes or more over 10 minutes or more; one counts per day; fixes outside your grid or less accurate than 100 m do not count; a mock location or an impossible speed voids the walk.",
    refresh: "Refresh", as_of: "as of {time}", cached: "(offline: last data shown)",
    no_walks: "No walks this week yet.",
    status_met: "met", status_on_track: "on track", status_at_risk: "at risk", status_missed: "missed",
    warn_at_risk: "At risk: {left} more patrol(s) needed with {days} day(s) left (one counts per day).",
    warn_missed: "Missed this week: {counted} counted of {required} required.",
    reason_counted: "counted", reason_too_short: "not counted: shorter than 10 minutes",
    reason_too_few: "not counted: too few fixes (under 3)", reason_same_day: "not counted: one already counted that day",
    reason_mocked: "not counted: a fix came from a mock location", reason_speed: "not counted: a fix jumped faster than anyone walks or drives",
    reason_other: "not counted: {reason}",
    walk_line: "{day} {start}–{end} · {n} fixes",
    category: "Category", note: "Note", pin_help: "Drag the red pin to where it is.",
    photos: "Photos (up to 3)", send_report: "Report", too_many_photos: "3 photos at most.",
    need_position: "No position yet: wait for a fix or drag the pin.",
    report_queued: "Report saved; it is sent when online ({waiting} waiting).",
    my_incidents: "My incidents", no_incidents: "No incidents assigned to you.",
    start_work: "Start", resolve: "Resolve", resolve_note: "What was done", add_photo: "Photo of the fix",
    needs_network: "This needs the network.", awaiting_dispatch: "awaiting dispatch",
    status_reported: "reported", status_dispatched: "dispatched", status_in_progress: "in progress",
    status_resolved: "resolved", status_closed: "closed", status_escalated: "escalated", status_cancelled: "cancelled",
    waiting: "Waiting to upload", sending: "sending…", until_online: "sent once online", retry_in: "retry in {s} s", refused: "{n} refused",
    tab_patrol: "Patrol", tab_week: "Week", tab_report: "Report", tab_incidents: "Incidents",
    sign_out: "Sign out",
  },
};

let current = localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh";

export function lang() { return current; }

export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS.zh[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

export function setLang(next) {
  current = next === "en" ? "en" : "zh";
  localStorage.setItem(LANG_KEY, current);
  translatePage();
}

export function translatePage() {
  document.documentElement.lang = current === "en" ? "en" : "zh-CN";
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
}
