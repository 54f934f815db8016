// Shield dashboard. No framework, no build step, no external requests.
// Every value from the daemon is put in the page with textContent, never as
// HTML: alert evidence lines are written by attackers.
"use strict";

const KEY = "shield.token";
const $ = (s) => document.querySelector(s);
let decisions = [];
let sourceRates = {};

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

async function api(path, opts = {}) {
  const token = sessionStorage.getItem(KEY);
  const r = await fetch(path, {
    ...opts,
    headers: { Authorization: "Bearer " + token, ...(opts.headers || {}) },
  });
  if (r.status === 401) {
    showLogin("That token was refused.");
    throw new Error("unauthorized");
  }
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).message || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.json();
}

function showLogin(err) {
  sessionStorage.removeItem(KEY);
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = err || "";
  $("#token").focus();
}

function toast(msg, bad) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "toast" + (bad ? " bad" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

function ago(s) {
  if (s == null) return "never";
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

function dur(s) {
  if (s <= 0) return "ended";
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  return m ? m + "m " + (s % 60) + "s" : s + "s";
}

const now = () => Math.floor(Date.now() / 1000);
const shortTarget = (t) => t.replace(/\/(32|128)$/, "");

function renderBans() {
  const q = $("#search").value.trim().toLowerCase();
  const type = $("#type-filter").value;
  const origin = $("#origin-filter").value;
  const rows = decisions.filter((d) =>
    (!q || d.target.toLowerCase().includes(q) || d.scenario.toLowerCase().includes(q)) &&
    (!type || d.type === type) &&
    (!origin || d.origin === origin || d.origin.startsWith(origin + ":")));
  const tb = $("#bans tbody");
  tb.replaceChildren(...rows.map((d) => {
    const btn = el("button", { class: "pardon", title: "End this decision now", "data-id": d.id, "data-target": d.target }, "Pardon");
    btn.addEventListener("click", () => pardon(d, btn));
    return el("tr", { "data-target": shortTarget(d.target), "data-id": d.id },
      el("td", { class: "mono" }, shortTarget(d.target)),
      el("td", {}, el("span", { class: "tag " + d.type }, d.type)),
      el("td", {}, d.scenario),
      el("td", { class: "muted" }, d.origin),
      el("td", { class: "muted" }, ago(now() - d.created)),
      el("td", {}, dur(d.expires - now())),
      el("td", {}, btn));
  }));
  $("#ban-count").textContent = rows.length === decisions.length ? decisions.length : rows.length + " / " + decisions.length;
  $("#bans-empty").hidden = rows.length > 0;
}

async function pardon(d, btn) {
  if (!confirm("Pardon " + shortTarget(d.target) + "? The decision ends now on every layer.")) return;
  btn.disabled = true;
  try {
    await api("/api/decisions?id=" + encodeURIComponent(d.id), { method: "DELETE" });
    decisions = decisions.filter((x) => x.id !== d.id);
    renderBans();
    toast("Pardoned " + shortTarget(d.target));
  } catch (e) {
    btn.disabled = false;
    toast("Pardon failed: " + e.message, true);
  }
}

function renderTop(sel, list) {
  const max = Math.max(1, ...list.map((t) => t.count));
  $(sel).replaceChildren(...(list.length ? list.map((t) => {
    const bar = el("span", { class: "bar" });
    bar.style.width = (100 * t.count / max).toFixed(1) + "%";
    return el("li", {}, bar, el("span", { class: "k mono" }, shortTarget(t.key)), el("span", { class: "v" }, t.count));
  }) : [el("li", { class: "muted" }, "nothing yet")]));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

function renderChart(tl) {
  const W = 900, H = 180, P = { l: 36, r: 8, t: 8, b: 22 };
  const n = tl.alerts.length;
  const max = Math.max(1, ...tl.alerts, ...tl.decisions);
  const bw = (W - P.l - P.r) / n;
  const y = (v) => H - P.b - (H - P.t - P.b) * v / max;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "alerts and decisions over time" });
  for (const f of [0, 0.5, 1]) {
    const v = Math.round(max * f);
    root.append(svg("line", { x1: P.l, x2: W - P.r, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: P.l - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, v));
  }
  tl.alerts.forEach((v, i) => {
    if (!v) return;
    const r = svg("rect", { x: P.l + i * bw + 1, y: y(v), width: Math.max(1, bw - 2), height: H - P.b - y(v), class: "alerts" });
    r.append(svg("title", {}, v + " alerts"));
    root.append(r);
  });
  const pts = tl.decisions.map((v, i) => `${(P.l + (i + 0.5) * bw).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  root.append(svg("polyline", { points: pts, class: "bans" }));
  tl.decisions.forEach((v, i) => {
    if (!v) return;
    const c = svg("circle", { cx: P.l + (i + 0.5) * bw, cy: y(v), r: 3, class: "bans" });
    c.append(svg("title", {}, v + " decisions"));
    root.append(c);
  });
  const fmt = (t) => {
    const d = new Date(t * 1000);
    return tl.bucket_s >= 3600 ? d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + d.getHours() + "h"
      : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  };
  for (const i of [0, Math.floor(n / 2), n - 1]) {
    root.append(svg("text", { x: P.l + (i + 0.5) * bw, y: H - 6, class: "axis", "text-anchor": "middle" }, fmt(tl.from + i * tl.bucket_s)));
  }
  $("#chart").replaceChildren(root);
}

function renderAlerts(list) {
  $("#alerts").replaceChildren(...(list.length ? list.map((a) => {
    const ev = el("pre", { class: "evidence" });
    ev.textContent = (a.evidence || []).join("\n");
    const det = el("details", {},
      el("summary", {},
        el("span", { class: "mono" }, shortTarget(a.target)), " ",
        el("span", { class: "tag" }, a.scenario), " ",
        el("span", { class: "muted" }, a.events + " events, " + ago(now() - a.time) + (a.decision_id ? " → decision #" + a.decision_id : " (no decision)"))),
      ev);
    return det;
  }) : [el("p", { class: "muted" }, "No alerts yet.")]));
}

function renderSources(list, t) {
  $("#sources tbody").replaceChildren(...list.map((s) => {
    const prev = sourceRates[s.name];
    const rate = prev && t > prev.t ? (s.lines - prev.lines) / (t - prev.t) : null;
    sourceRates[s.name] = { t, lines: s.lines };
    const name = el("td", {}, s.name);
    if (s.files && s.files.length) name.title = s.files.join("\n");
    if (s.error) name.append(el("div", { class: "error" }, s.error));
    return el("tr", {},
      name, el("td", { class: "muted" }, s.kind),
      el("td", { class: "num" }, s.lines.toLocaleString()),
      el("td", { class: "num" }, rate == null ? "…" : rate.toFixed(1)),
      el("td", { class: "num" }, s.matched.toLocaleString()),
      el("td", { class: "muted" }, s.last_line_at ? ago(t - s.last_line_at) : "never"));
  }));
}

function renderUnion(u) {
  const box = $("#union");
  if (!u) { box.replaceChildren(el("p", { class: "muted" }, "This host is not in a union.")); return; }
  const rows = (u.members || []).map((m) => {
    const h = typeof m.health === "string" ? m.health : JSON.stringify(m.health);
    return el("tr", {},
      el("td", {}, m.name), el("td", {}, el("span", { class: "dot " + h.toLowerCase() }), " " + h),
      el("td", { class: "muted" }, m.last_signal_age_s == null ? "no signal yet" : ago(m.last_signal_age_s)),
      el("td", { class: "num" }, m.signals));
  });
  const counters = Object.entries(u.counters || {}).filter(([, v]) => typeof v === "number")
    .map(([k, v]) => el("span", { class: "pill" }, k.replace(/_/g, " ") + ": " + v));
  box.replaceChildren(
    el("p", { class: "muted" }, (u.union || "") + " as " + (u.member || "")),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Member"), el("th", {}, "Health"), el("th", {}, "Last signal"), el("th", {}, "Signals"))), el("tbody", {}, ...rows)),
    el("div", { class: "pills" }, ...counters));
}

async function refresh() {
  try {
    const hours = $("#hours").value;
    const [ds, tl, ov, al] = await Promise.all([
      api("/api/decisions"), api("/api/timeline?hours=" + hours), api("/api/overview"), api("/api/alerts?limit=50"),
    ]);
    decisions = ds.sort((a, b) => b.created - a.created);
    renderBans();
    renderChart(tl);
    renderTop("#top-addresses", ov.top_addresses);
    renderTop("#top-ranges", ov.top_ranges);
    renderTop("#top-scenarios", ov.top_scenarios);
    renderAlerts(al);
    renderSources(ov.sources, ov.now);
    renderUnion(ov.union);
    const lines = ov.sources.reduce((s, x) => s + x.lines, 0);
    $("#summary").replaceChildren(
      el("span", {}, el("b", {}, ov.active_decisions), " active"),
      el("span", {}, el("b", {}, ov.sources.length), " sources"),
      el("span", {}, el("b", {}, lines.toLocaleString()), " lines"),
      el("span", {}, "layer ", el("b", {}, ov.firewall)));
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "1";
  } catch (e) {
    if (e.message !== "unauthorized") toast("Refresh failed: " + e.message, true);
  }
}

function start() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  refresh();
  clearInterval(start.timer);
  start.timer = setInterval(refresh, 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("#token").value);
    $("#token").value = "";
    start();
  });
  $("#logout").addEventListener("click", () => { clearInterval(start.timer); showLogin(""); });
  for (const s of ["#search", "#type-filter", "#origin-filter"]) $(s).addEventListener("input", renderBans);
  $("#hours").addEventListener("change", refresh);
  if (sessionStorage.getItem(KEY)) start(); else showLogin("");
});
