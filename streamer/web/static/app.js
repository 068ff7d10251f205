// bcdi-stream live page: state from /api/stream (server-sent events), drawn on plain canvases.
"use strict";

let state = { run: null, events: [], latest: {}, decisions: [] };
const $ = (id) => document.getElementById(id);
const PLANES = [["yx", "z fixed: y down, x across"], ["zx", "y fixed: z down, x across"], ["zy", "x fixed: z down, y across"]];
const PLANE_AXES = { yx: [1, 2], zx: [0, 2], zy: [0, 1] };
const QUANTITIES = ["amplitude", "phase", "strain"];
const ERRORS = ["amplitude_error", "phase_error"]; // spread of the averaged members, shown on request
const NAN_RGB = [40, 44, 52];
const SLICE_PX = 230; // the longest side of the particle's box, in screen pixels
const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v)) ? "-" : Number(v).toFixed(d);
const sci = (v) => (v === null || v === undefined) ? "-" : Number(v).toExponential(2);
const energyText = (s) => { // the strain energy with its error bar (energy_j_range's upper end less the energy)
  const hi = (s.energy_j_range || [])[1];
  return (typeof s.energy_j === "number" && typeof hi === "number") ? `${sci(s.energy_j)} ± ${sci(hi - s.energy_j)}` : sci(s.energy_j);
};
const energyTitle = (s) => [ // the noise's part of energy_j, and what energy_j leaves out (docs/events.md)
  (typeof s.noise_energy_j === "number") ? `noise: ${sci(s.noise_energy_j)} J of it, what the counting noise alone gives (in the error bar)` : "",
  (typeof s.odd_energy_j === "number") ? `odd part: ${sci(s.odd_energy_j)} J, left out of the energy (one reflection fixes it only at second order; a twin reverses it)` : "",
].filter(Boolean).join("\n");

function f32(packed) {
  const s = atob(packed.f32);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return { shape: packed.shape, data: new Float32Array(bytes.buffer) };
}

// -- colour maps ---------------------------------------------------------------------------
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function ramp(stops, t) {
  t = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
  return stops[i].map((a, k) => a + f * (stops[i + 1][k] - a));
}
function cyclic(t) { // phase: hue wheel, t in [0, 1)
  const h = ((t % 1) + 1) % 1 * 6, x = 1 - Math.abs((h % 2) - 1);
  const rgb = [[1, x, 0], [x, 1, 0], [0, 1, x], [0, x, 1], [x, 0, 1], [1, 0, x]][Math.floor(h) % 6];
  return rgb.map((v) => 40 + 200 * v);
}
function diverging(t) { // -1 blue .. 0 white .. +1 red
  t = Math.max(-1, Math.min(1, t));
  return t < 0 ? [255 * (1 + t), 255 * (1 + t), 255] : [255, 255 * (1 - t), 255 * (1 - t)];
}

function paintImage(canvas, img, colour) {
  const [rows, cols] = img.shape, ctx = canvas.getContext("2d");
  const off = document.createElement("canvas");
  off.width = cols; off.height = rows;
  const octx = off.getContext("2d"), pix = octx.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const v = img.data[i], rgb = Number.isFinite(v) ? colour(v) : NAN_RGB;
    pix.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * i);
  }
  octx.putImageData(pix, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
}

// -- reconstruction slices -----------------------------------------------------------------
function buildSlices() {
  const grid = $("slices");
  grid.innerHTML = "<div></div>" + PLANES.map(([p, d]) => `<div class="lab">${p} plane<br><span class="small">${d}</span></div>`).join("");
  for (const q of [...QUANTITIES, ...ERRORS]) {
    const hide = ERRORS.includes(q) ? ' data-error="1" style="display:none"' : "";
    grid.insertAdjacentHTML("beforeend", `<div class="lab" id="range-${q}"${hide}>${q}</div>`);
    for (const [p] of PLANES) grid.insertAdjacentHTML("beforeend", `<canvas id="slice-${q}-${p}" width="180" height="180"${hide}></canvas>`);
  }
}

function robustMax(arrays) {
  const vals = [];
  for (const a of arrays) for (const v of a.data) if (Number.isFinite(v)) vals.push(Math.abs(v));
  if (!vals.length) return 1;
  vals.sort((a, b) => a - b);
  return vals[Math.floor(0.99 * (vals.length - 1))] || 1;
}

function drawMarkers(canvas, plane, sl) {
  const ctx = canvas.getContext("2d"), [ar, ac] = PLANE_AXES[plane], origin = sl.origin || [0, 0, 0];
  const sy = canvas.height / sl.shape[ar], sx = canvas.width / sl.shape[ac];
  const px = (p) => [(p[ac] - origin[ac] + 0.5) * sx, (p[ar] - origin[ar] + 0.5) * sy];
  ctx.lineWidth = 2;
  for (const b of sl.domain_boundaries || []) { // the boundary plane's trace: through its centre, across its normal
    const [x0, y0] = px(b.position), nx = b.normal[ac], ny = b.normal[ar], n = Math.hypot(nx, ny);
    if (n < 0.3) continue;
    const tx = -ny / n, ty = nx / n, L = canvas.width + canvas.height;
    ctx.strokeStyle = "#ffd23f"; ctx.setLineDash([6, 4]);
    ctx.beginPath(); ctx.moveTo(x0 - L * tx, y0 - L * ty); ctx.lineTo(x0 + L * tx, y0 + L * ty); ctx.stroke();
    ctx.setLineDash([]);
  }
  for (const v of sl.vortices || []) {
    const colour = v.winding > 0 ? "#ff4040" : "#40b0ff", half = (v.length_voxels || 1) / 2;
    const a = v.position.map((c, k) => c - v.direction[k] * half), b = v.position.map((c, k) => c + v.direction[k] * half);
    const [x1, y1] = px(a), [x2, y2] = px(b), [xc, yc] = px(v.position);
    for (const [style, width] of [["#000", 4.5], [colour, 2]]) { // a dark halo keeps the mark visible on any colour
      ctx.strokeStyle = style; ctx.lineWidth = width;
      ctx.beginPath(); ctx.arc(xc, yc, 6, 0, 2 * Math.PI); ctx.stroke();
      if (Math.hypot(x2 - x1, y2 - y1) > 8) { ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke(); }
    }
  }
}

let selected = null, selectedPeak = null; // pictures of a scan the operator clicked on; null: follow the latest
async function select(scan) {
  const [r, p] = await Promise.all([fetch(`/api/slices?scan=${scan}`), fetch(`/api/peak_image?scan=${scan}`)]);
  if (!r.ok) { $("slices-title").textContent = `scan ${scan}: ${(await r.json()).error}`; return; }
  selected = await r.json();
  selectedPeak = p.ok ? await p.json() : null;
  renderSlices();
  renderPeak();
}

const view3d = BcdiView3D.create($("view3d"));
function renderView3d(sl) {
  view3d.setScene(sl && sl.scene ? sl.scene : null);
  $("view3d-title").textContent = !sl ? "none yet" : !sl.scene ? `scan ${sl.scan}: no 3D scene published`
    : `${selected ? "selected" : "latest:"} scan ${sl.scan}; ${(sl.scene.lines || []).length} vortex line(s), ` +
      `${(sl.scene.planes || []).length} boundary plane(s)`;
}

function renderSlices() {
  const sl = selected || state.latest.slices;
  $("follow").style.display = selected ? "" : "none";
  renderView3d(sl);
  if (!sl) return;
  const ev = state.events.find((e) => e.scan === sl.scan);
  $("slices-title").textContent = (selected ? "selected " : "latest: ") + `scan ${sl.scan}` + (ev ? ` at ${fmt(ev.voltage_v, 2)} V, ${fmt(ev.capacity_mah_g, 1)} mAh/g` : "") +
    `; ${(sl.vortices || []).length} vortex line(s), ${(sl.domain_boundaries || []).length} boundary(ies); cut through voxel [${sl.centre}]`;
  const showErrors = $("slice-errors").checked && ERRORS.every((q) => sl[q]);
  for (const el of document.querySelectorAll("[data-error]")) el.style.display = showErrors ? "" : "none";
  for (const q of showErrors ? [...QUANTITIES, ...ERRORS] : QUANTITIES) {
    const imgs = Object.fromEntries(PLANES.map(([p]) => [p, f32(sl[q][p])]));
    const m = robustMax(Object.values(imgs));
    const colour = q === "amplitude" ? (v) => ramp(VIRIDIS, v) : q === "phase" ? (v) => cyclic(v / (2 * Math.PI) + 0.5)
      : ERRORS.includes(q) ? (v) => ramp(VIRIDIS, v / m) : (v) => diverging(v / m);
    const range = q === "amplitude" ? "0..1" : q === "phase" ? "-pi..pi" : ERRORS.includes(q)
      ? "0.." + m.toPrecision(2) + (q === "phase_error" ? " rad" : " of max") : "+-" + m.toExponential(1);
    $(`range-${q}`).innerHTML = q.replace("_", " ") + `<br><span class="small">${range}</span>`;
    const scale = Math.max(1, Math.floor(SLICE_PX / Math.max(...sl.shape)));
    for (const [p] of PLANES) {
      const canvas = $(`slice-${q}-${p}`);
      [canvas.height, canvas.width] = imgs[p].shape.map((n) => n * scale); // voxels stay square
      paintImage(canvas, imgs[p], colour);
      drawMarkers(canvas, p, sl);
    }
  }
}

// -- projected peak --------------------------------------------------------------------------
function renderPeak() {
  const pk = (selected && selectedPeak) || state.latest.peak_image;
  if (!pk) return;
  const now = f32(pk.image), base = f32(pk.baseline);
  let top = 1e-9;
  for (const a of [now, base]) for (const v of a.data) top = Math.max(top, v);
  const colour = (v) => ramp(VIRIDIS, Math.log10(1 + Math.max(0, v)) / Math.log10(1 + top));
  paintImage($("peak-now"), now, colour);
  paintImage($("peak-base"), base, colour);
  $("peak-now-cap").textContent = `scan ${pk.scan}`;
  $("peak-base-cap").textContent = `baseline (mean of ${pk.baseline_scans} first scan(s))`;
}

// -- timelines -------------------------------------------------------------------------------
function chart(canvas, series, showErrors) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 52, R = 8, T = 8, B = 22;
  ctx.clearRect(0, 0, W, H);
  const pts = series.flatMap((s) => s.pts);
  canvas.dataset.points = String(series.length ? series[0].pts.length : 0);
  if (!pts.length) return;
  const xs = pts.map((p) => p.x), ys = pts.flatMap((p) => (showErrors && p.lo != null ? [p.y, p.lo, p.hi] : [p.y])).filter(Number.isFinite);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 0.5 * Math.abs(y0) || 1; y1 += 0.5 * Math.abs(y1) || 1; }
  const pad = 0.08 * (y1 - y0); y0 -= pad; y1 += pad;
  const X = (x) => L + (x - x0) / (x1 - x0) * (W - L - R), Y = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  ctx.strokeStyle = "#3a4554"; ctx.fillStyle = "#8a99aa"; ctx.font = "10px DejaVu Sans, sans-serif"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, H - B); ctx.lineTo(W - R, H - B); ctx.stroke();
  const label = (v) => (Math.abs(v) >= 1e-2 && Math.abs(v) < 1e4) || v === 0 ? v.toPrecision(3) : v.toExponential(1);
  ctx.textAlign = "right"; ctx.fillText(label(y1 - pad), L - 3, T + 8); ctx.fillText(label(y0 + pad), L - 3, H - B);
  ctx.textAlign = "center"; ctx.fillText(label(x0), L + 8, H - 6); ctx.fillText(label(x1) + " mAh/g", W - R - 30, H - 6);
  for (const p of series[0].pts.filter((p) => p.flagged)) { // flagged scans: a red line across the chart
    ctx.strokeStyle = "rgba(255,80,64,0.55)"; ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(X(p.x), T); ctx.lineTo(X(p.x), H - B); ctx.stroke(); ctx.setLineDash([]);
  }
  for (const s of series) {
    const good = s.pts.filter((p) => Number.isFinite(p.y));
    ctx.strokeStyle = s.colour; ctx.lineWidth = 1.5;
    ctx.beginPath(); good.forEach((p, i) => (i ? ctx.lineTo(X(p.x), Y(p.y)) : ctx.moveTo(X(p.x), Y(p.y)))); ctx.stroke();
    for (const p of good) {
      if (showErrors && p.lo != null && p.hi != null) {
        ctx.strokeStyle = s.colour; ctx.beginPath(); ctx.moveTo(X(p.x), Y(p.lo)); ctx.lineTo(X(p.x), Y(p.hi));
        ctx.moveTo(X(p.x) - 3, Y(p.lo)); ctx.lineTo(X(p.x) + 3, Y(p.lo)); ctx.moveTo(X(p.x) - 3, Y(p.hi)); ctx.lineTo(X(p.x) + 3, Y(p.hi)); ctx.stroke();
      }
      ctx.fillStyle = p.flagged ? "#ff5040" : s.colour;
      ctx.beginPath(); ctx.arc(X(p.x), Y(p.y), p.flagged ? 4.5 : 3, 0, 2 * Math.PI); ctx.fill();
    }
  }
}

function renderCharts() {
  const evs = state.events, showErrors = $("errorbars").checked;
  const x = (e) => (e.capacity_mah_g == null ? e.scan : e.capacity_mah_g);
  const pt = (e, y, lo, hi) => ({ x: x(e), y: y == null ? NaN : y, lo, hi, flagged: (e.flags || []).length > 0 });
  const strain = (e) => e.strain || {};
  chart($("chart-voltage"), [{ colour: "#3d8bd9", pts: evs.map((e) => pt(e, e.voltage_v)) }], showErrors);
  chart($("chart-widths"), [{ colour: "#3d8bd9", pts: evs.map((e) => pt(e, (e.peak || {}).width_parallel)) },
    { colour: "#e0a030", pts: evs.map((e) => pt(e, (e.peak || {}).width_perpendicular)) }], showErrors);
  chart($("chart-energy"), [{ colour: "#b070e0", pts: evs.map((e) => pt(e, strain(e).energy_j,
    (strain(e).energy_j_range || [])[0], (strain(e).energy_j_range || [])[1])) }], showErrors);
  chart($("chart-vortices"), [{ colour: "#50c070", pts: evs.filter((e) => (e.reconstruction || {}).status === "done")
    .map((e) => pt(e, (e.vortices || []).length)) }], showErrors);
}

// -- tables ----------------------------------------------------------------------------------
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
function evidence(f) { // numbers rounded, nested records counted rather than spelled out
  const show = (v) => typeof v === "number" ? String(Number(v.toPrecision(4)))
    : Array.isArray(v) ? (v.some((x) => x && typeof x === "object") ? `${v.length} item(s)` : `[${v.map(show).join(", ")}]`)
    : v && typeof v === "object" ? "{...}" : String(v);
  return Object.entries(f).filter(([k]) => k !== "kind").map(([k, v]) => `${k}=${show(v)}`).join("  ");
}

function renderTimeline() {
  const body = $("timeline").tBodies[0];
  body.innerHTML = state.events.map((e) => {
    const flags = (e.flags || []).map((f) => `<span class="flag">${esc(f.kind)}</span>`).join("");
    const rec = e.reconstruction || {};
    return `<tr data-scan="${e.scan}" class="${(e.flags || []).length ? "flagged" : ""}"><td>${e.scan}</td><td>${fmt(e.voltage_v, 3)}</td>` +
      `<td>${fmt(e.capacity_mah_g, 1)}</td><td>${fmt((e.peak || {}).width_parallel, 4)}</td><td>${fmt((e.peak || {}).width_perpendicular, 4)}</td>` +
      `<td title="${energyTitle(e.strain || {})}">${energyText(e.strain || {})}</td><td>${(e.vortices || []).length}</td><td>${esc(rec.status || "-")}</td>` +
      `<td>${fmt(e.latency_s, 2)} s</td><td class="flags">${flags || "-"}${e.error ? ` <span class="alert">${esc(e.error)}</span>` : ""}</td></tr>`;
  }).join("");
}

function sentencesOf(e) { // the server's words for a scan (streamer.analysis.labels.describe_event)
  if (Array.isArray(e.sentences)) return e.sentences;
  return (e.flags || []).map((f) => ({ kind: f.kind, severity: "alert", text: evidence(f), evidence: f }));
}

function renderFlags() {
  const body = $("flags").tBodies[0], flagged = state.events.filter((e) => sentencesOf(e).length).reverse();
  $("no-flags").style.display = flagged.length ? "none" : "";
  body.innerHTML = flagged.map((e) => {
    const items = sentencesOf(e).map((s) => `<div class="sentence ${esc(s.severity)}"><span class="flag">${esc(s.kind)}</span>` +
      `<span class="said">${esc(s.text)}</span><details><summary>evidence</summary>` +
      `<pre class="evidence">${esc(JSON.stringify(s.evidence, null, 1))}</pre></details></div>`).join("");
    const done = state.decisions.filter((d) => d.scan === e.scan && d.run === e.run).map((d) => `<div class="sent">sent: ${esc(d.action)}</div>`).join("");
    const buttons = [["remeasure", "re-measure"], ["continue", "continue"], ["acknowledge", "acknowledge"]]
      .map(([a, label]) => `<button class="${a}" data-run="${esc(e.run)}" data-scan="${e.scan}" data-action="${a}">${label}</button>`).join("");
    return `<tr data-scan="${e.scan}"><td>${e.scan}</td><td>${fmt(e.voltage_v, 3)}</td><td>${fmt(e.capacity_mah_g, 1)}</td>` +
      `<td>${items}</td><td>${buttons}<div class="status" id="status-${e.scan}">${done}</div></td></tr>`;
  }).join("");
}

// the server's per-page token, in the page it served: every decision carries it back (X-BCDI-Token)
const PAGE_TOKEN = (document.querySelector('meta[name="bcdi-page-token"]') || {}).content || "";
async function decide(button) {
  const { run, scan, action } = button.dataset, status = $(`status-${scan}`);
  status.innerHTML = `<span class="small">sending ${esc(action)}...</span>`;
  try {
    const r = await fetch("/api/decision", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-BCDI-Token": PAGE_TOKEN },
      body: JSON.stringify({ run, scan: Number(scan), action }) });
    const reply = await r.json();
    if (!r.ok) throw new Error(reply.error || r.statusText);
    status.innerHTML = `<span class="sent">sent: ${esc(action)}</span>`;
  } catch (err) {
    status.innerHTML = `<span class="failed">not sent: ${esc(err.message)}</span>`;
  }
}

// -- progress and health ---------------------------------------------------------------------
function renderProgress() {
  const p = state.latest.progress;
  if (!p) return;
  const frac = p.expected ? p.received / p.expected : 0;
  $("progress-text").textContent = `scan ${p.scan}: ${p.received} of ${p.expected ?? "?"} frames (${p.status})`;
  $("progress-bar").style.width = `${Math.round(100 * Math.min(1, frac))}%`;
  $("progress-detail").innerHTML = `${fmt(p.rate_hz, 2)} frames/s; ` +
    (p.gap_count ? `<span class="alert">${p.gap_count} gap(s): frames ${p.gaps.slice(0, 12).join(", ")}${p.gap_count > 12 ? ", ..." : ""}</span>` : "no gaps");
}

function renderHealth() {
  const h = state.latest.health;
  if (!h) return;
  const rejected = Object.values(h.rejected || {}).reduce((a, b) => a + b, 0);
  $("health-queue").textContent = h.queue_depth;
  $("health-skipped").textContent = h.skipped_reconstructions;
  $("health-rejected").textContent = rejected;
  $("health-rejected").className = rejected ? "alert" : "";
  $("health-detail").textContent = Object.entries(h.rejected || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
}

// -- state -----------------------------------------------------------------------------------
const RENDER = {
  event: [renderTimeline, renderFlags, renderCharts, renderSlices], progress: [renderProgress], health: [renderHealth],
  slices: [renderSlices], peak_image: [renderPeak], decision: [renderFlags], run_done: [],
};
function renderAll() {
  $("run").textContent = state.run ? `run ${state.run}` : "no run yet";
  for (const f of [renderTimeline, renderFlags, renderCharts, renderSlices, renderPeak, renderProgress, renderHealth]) f();
}

function apply(kind, body) {
  const run = (body.event || body).run;
  if (kind !== "decision" && run != null && run !== state.run) {
    selected = selectedPeak = null;
    state = { run, events: [], latest: { health: state.latest.health }, decisions: state.decisions };
    renderAll();
  }
  if (kind === "event") {
    state.events = state.events.filter((e) => e.scan !== body.event.scan).concat([body.event]).sort((a, b) => a.scan - b.scan);
  } else if (kind === "decision") {
    state.decisions.push(body);
  } else {
    state.latest[kind] = body;
  }
  (RENDER[kind] || []).forEach((f) => f());
  if (kind === "run_done") $("run").textContent = `run ${state.run} (done)`;
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.version = String(Number(document.body.dataset.version || 0) + 1);
}

function connect() {
  const es = new EventSource("/api/stream");
  es.addEventListener("open", () => { $("link").textContent = "live"; $("link").className = "badge on"; });
  es.addEventListener("error", () => { $("link").textContent = "reconnecting"; $("link").className = "badge off"; });
  es.addEventListener("snapshot", (m) => { state = JSON.parse(m.data); renderAll(); document.body.dataset.ready = "1"; });
  es.addEventListener("update", (m) => { const u = JSON.parse(m.data); apply(u.kind, u.body); });
}

buildSlices();
$("errorbars").addEventListener("change", renderCharts);
$("slice-errors").addEventListener("change", renderSlices);
$("flags").addEventListener("click", (e) => {
  if (e.target.tagName === "BUTTON") decide(e.target);
  else if (e.target.closest("details")) return; // opening the evidence is not choosing the scan
  else if (e.target.closest("tr[data-scan]")) select(e.target.closest("tr[data-scan]").dataset.scan);
});
for (const b of document.querySelectorAll("[data-look]")) b.addEventListener("click", () => view3d.look(b.dataset.look));
$("timeline").addEventListener("click", (e) => { const tr = e.target.closest("tr[data-scan]"); if (tr) select(tr.dataset.scan); });
$("follow").addEventListener("click", () => { selected = selectedPeak = null; renderSlices(); renderPeak(); });
connect();
