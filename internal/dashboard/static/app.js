// mixopt dashboard: reads the JSON API next to this file and draws tables and inline SVG
// charts. No dependencies, no build step. Data is only ever inserted as text
// (textContent, SVG attributes), never as HTML, so study names cannot become markup.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const REFRESH_MS = 15000;
const PALETTE = ["#2f6fdb", "#e07b39", "#2e8b57", "#8e44ad", "#c0392b", "#16a2b8", "#b5a300", "#7f8c8d"];
const STATE_COLOR = { succeeded: "#2f6fdb", running: "#e07b39", stopped: "#9aa3b5", failed: "#c0392b", lost: "#c0392b", pending: "#c98a00" };

let selected = 0; // study id shown in detail
let uid = 0; // unique ids for SVG clip paths

// ---- small DOM helpers --------------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, String(v));
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

function stateBadge(s) { return el("span", { class: "state " + s, text: s }); }

function fmtFlops(x) {
  if (!x) return "0";
  const units = [[1e21, "ZFLOP"], [1e18, "EFLOP"], [1e15, "PFLOP"], [1e12, "TFLOP"], [1e9, "GFLOP"]];
  for (const [u, n] of units) if (Math.abs(x) >= u) return (x / u).toPrecision(3) + " " + n;
  return x.toPrecision(3) + " FLOP";
}
function fmtVal(v) { return v == null ? "<none>" : Number(v).toFixed(4); }
function fmtSteps(n) { return n >= 1000 ? (n / 1000).toFixed(n % 1000 ? 1 : 0) + "k" : String(n); }
function fmtAgo(ms) {
  if (!ms) return "<none>";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return s + "s ago";
  if (s < 7200) return Math.round(s / 60) + "m ago";
  return Math.round(s / 3600) + "h ago";
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()).trim());
  return r.json();
}

function showError(msg) {
  const e = document.getElementById("error");
  e.textContent = msg;
  e.hidden = !msg;
}

// ---- charts ------------------------------------------------------------------------

// niceTicks returns about n round numbers spanning [lo, hi].
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

// lineChart draws series ({points: [[x, y]], color, cls, step, title}) in an SVG with
// axes. opts: width, height, xLabel, yLabel, xFmt, yFmt, yDomain, band ({lo, hi, mid,
// color, label}), id.
function lineChart(series, opts) {
  const W = opts.width || 420, H = opts.height || 240;
  const m = { l: 56, r: 12, t: 10, b: 36 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const xs = [], ys = [];
  for (const s of series) for (const [x, y] of s.points) { xs.push(x); ys.push(y); }
  if (opts.band) ys.push(opts.band.lo, opts.band.hi);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  let [y0, y1] = opts.yDomain || [Math.min(...ys), Math.max(...ys)];
  if (opts.xFromZero) x0 = Math.min(0, x0);
  if (!(x1 > x0)) x1 = x0 + 1;
  if (!(y1 > y0)) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const X = (x) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const Y = (y) => m.t + (1 - (y - y0) / (y1 - y0)) * ph;

  const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
  if (opts.id) root.setAttribute("data-chart", opts.id);
  const clip = "clip" + (++uid);
  root.append(svg("defs", {}, svg("clipPath", { id: clip }, svg("rect", { x: m.l, y: m.t, width: pw, height: ph }))));

  const grid = svg("g", { class: "grid" }), axis = svg("g", { class: "axis" });
  for (const t of niceTicks(y0, y1, 5)) {
    grid.append(svg("line", { x1: m.l, x2: m.l + pw, y1: Y(t), y2: Y(t) }));
    axis.append(svg("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end", text: (opts.yFmt || String)(t) }));
  }
  for (const t of niceTicks(x0, x1, 5)) {
    grid.append(svg("line", { x1: X(t), x2: X(t), y1: m.t, y2: m.t + ph }));
    axis.append(svg("text", { x: X(t), y: m.t + ph + 14, "text-anchor": "middle", text: (opts.xFmt || String)(t) }));
  }
  axis.append(svg("path", { d: `M${m.l},${m.t}V${m.t + ph}H${m.l + pw}`, fill: "none" }));
  if (opts.xLabel) axis.append(svg("text", { x: m.l + pw / 2, y: H - 4, "text-anchor": "middle", text: opts.xLabel }));
  if (opts.yLabel) axis.append(svg("text", { x: 12, y: m.t + ph / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${m.t + ph / 2})`, text: opts.yLabel }));
  root.append(grid, axis);

  const plot = svg("g", { "clip-path": `url(#${clip})` });
  if (opts.band) {
    const b = opts.band;
    plot.append(svg("rect", { class: "band", x: m.l, width: pw, y: Y(b.hi), height: Math.max(1, Y(b.lo) - Y(b.hi)), fill: b.color }));
    plot.append(svg("line", { class: "band-mid", x1: m.l, x2: m.l + pw, y1: Y(b.mid), y2: Y(b.mid), stroke: b.color, "stroke-dasharray": "5 4" }));
  }
  for (const s of series) {
    if (!s.points.length) continue;
    let d = "";
    s.points.forEach(([x, y], i) => {
      if (i === 0) d += `M${X(x).toFixed(1)},${Y(y).toFixed(1)}`;
      else if (s.step) d += `H${X(x).toFixed(1)}V${Y(y).toFixed(1)}`;
      else d += `L${X(x).toFixed(1)},${Y(y).toFixed(1)}`;
    });
    if (s.extendTo != null) d += `H${X(s.extendTo).toFixed(1)}`;
    const p = svg("path", { class: s.cls, d, stroke: s.color });
    if (s.width != null) p.setAttribute("stroke-width", s.width);
    if (s.trialId != null) p.setAttribute("data-trial-id", s.trialId);
    if (s.title) p.append(svg("title", { text: s.title }));
    plot.append(p);
    if (s.dots) for (const [x, y] of s.points) plot.append(svg("circle", { cx: X(x), cy: Y(y), r: 2.5, fill: s.color }));
  }
  root.append(plot);
  return root;
}

function legend(items) {
  const l = el("div", { class: "legend" });
  for (const [label, color] of items) {
    const sw = svg("svg", { width: 10, height: 10, class: "sw" }, svg("rect", { width: 10, height: 10, rx: 2, fill: color }));
    l.append(el("span", {}, sw, document.createTextNode(label)));
  }
  return l;
}

function quantile(sorted, q) {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))];
}

// ---- sections ----------------------------------------------------------------------

function renderStudies(studies) {
  const tb = document.querySelector("#studies tbody");
  tb.replaceChildren();
  if (!studies.length) {
    tb.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "no studies yet: mixctl study create -f spec.yaml" })));
  }
  for (const s of studies) {
    const n = Object.values(s.trialsByState).reduce((a, b) => a + b, 0);
    const tr = el("tr", { "data-study-id": s.id },
      el("td", { text: s.id }), el("td", { text: s.name || "<none>" }), el("td", {}, stateBadge(s.state)),
      el("td", { text: s.policy }), el("td", { class: "num", text: n }),
      el("td", { text: `${fmtFlops(s.spentFlops)} of ${fmtFlops(s.budgetFlops)}` }),
      el("td", { title: s.recommendation ? s.recommendation.label : "", text: s.recommendation ? recShort(s.recommendation) : "<none>" }));
    if (s.id === selected) tr.classList.add("selected");
    tr.addEventListener("click", () => { location.hash = "study=" + s.id; });
    tb.append(tr);
  }
}

function renderFacts(s) {
  document.getElementById("study-title").textContent = `Study ${s.id}: ${s.name || "(unnamed)"}`;
  const dl = document.getElementById("study-facts");
  dl.replaceChildren();
  const counts = Object.entries(s.trialsByState).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(", ");
  const facts = [
    ["state", s.state + (s.endReason ? ` (${s.endReason})` : "")],
    ["policy", s.policy],
    ["objective", `${s.maximize ? "maximise" : "minimise"} ${s.metric}`],
    ["target", `${s.targetScale} × ${fmtSteps(s.targetSteps)} steps`],
    ["scales", s.scales.map((c) => c.name).join(", ")],
    ["trials", counts || "none"],
  ];
  const pools = s.scales.filter((c) => c.poolSize > 0).map((c) => `${c.name}: ${c.poolSize}`).join(", ");
  const prior = s.scales.filter((c) => c.priorRuns > 0).map((c) => `${c.name}: ${c.priorRuns}`).join(", ");
  if (pools) facts.push(["candidate pools", pools]);
  if (prior) facts.push(["prior runs (free)", prior]);
  for (const [k, v] of facts) dl.append(el("dt", { text: k }), el("dd", { text: v }));

  // Budget bar: spent, then committed to running trials, out of the budget.
  const b = document.getElementById("budget");
  const W = 600, frac = (x) => Math.max(0, Math.min(1, s.budgetFlops ? x / s.budgetFlops : 0));
  const spent = frac(s.spentFlops), committed = frac(s.spentFlops + s.committedFlops);
  b.replaceChildren(svg("svg", { viewBox: `0 0 ${W} 34`, preserveAspectRatio: "none", "data-chart": "budget" },
    svg("rect", { x: 0, y: 4, width: W, height: 12, rx: 3, fill: "#eceff4" }),
    svg("rect", { x: 0, y: 4, width: W * committed, height: 12, rx: 3, fill: "#bcd0f5" }),
    svg("rect", { x: 0, y: 4, width: W * spent, height: 12, rx: 3, fill: "#2f6fdb" }),
    svg("text", { x: 0, y: 30, "font-size": 11, fill: "#6b7385",
      text: `spent ${fmtFlops(s.spentFlops)} (${(spent * 100).toFixed(1)}%) · committed ${fmtFlops(s.committedFlops)} · budget ${fmtFlops(s.budgetFlops)}` })));
}

// renderSpend lists under the budget bar what each scale's trials spent: where the
// compute went.
function renderSpend(d) {
  const parts = d.spendByScale.filter((x) => x.trials > 0)
    .map((x) => `${x.scale} ${fmtFlops(x.flops)} (${x.trials} trial${x.trials === 1 ? "" : "s"})`);
  document.getElementById("budget").append(
    el("p", { class: "muted", "data-spend": "1", text: "spend by scale: " + (parts.join(" · ") || "none yet") }));
}

// recShort is a recommendation's value with what it rests on, in a few words: observed at a
// fidelity, or extrapolated while no target run has finished (the label says it in full).
function recShort(r) {
  let v = fmtVal(r.value);
  if (r.valueObserved) v += ` observed at ${r.observedScale}/${fmtSteps(r.observedSteps)}`;
  else if (!r.targetObserved) v += " extrapolated";
  return v;
}

function renderRec(s) {
  const box = document.getElementById("rec");
  box.replaceChildren();
  const r = s.recommendation;
  if (!r) {
    box.append(el("p", { class: "muted", text: "No recommendation yet: the policy needs observations first." }));
    return;
  }
  const head = el("div", {}, el("span", { id: "rec-value", class: "value", text: fmtVal(r.value) }));
  // An interval only where a model gives one: an observed value has none.
  if (r.hasInterval) {
    head.append(el("span", { id: "rec-interval", class: "interval", text: `90% interval [${fmtVal(r.lower)}, ${fmtVal(r.upper)}]` }));
  }
  box.append(head);
  box.append(el("p", { id: "rec-label", class: r.targetObserved ? "muted" : "warn", text: r.label || r.basis }));
  box.append(el("p", { class: "muted", text: `${s.metric} · ${r.basis} · from ${r.trials} trials` }));
  const rowH = 22, W = 460, labelW = 120, barW = W - labelW - 60;
  const g = svg("svg", { viewBox: `0 0 ${W} ${rowH * s.domains.length + 4}`, "data-chart": "rec-mixture" });
  s.domains.forEach((d, i) => {
    const w = r.mixture[i] || 0, y = i * rowH + 2;
    g.append(svg("text", { x: labelW - 8, y: y + 14, "text-anchor": "end", "font-size": 12, fill: "#1d2330", text: d }));
    g.append(svg("rect", { x: labelW, y: y + 3, width: barW, height: 14, fill: "#eceff4", rx: 2 }));
    g.append(svg("rect", { class: "rec-bar", "data-domain": d, x: labelW, y: y + 3, width: Math.max(0.5, barW * w), height: 14, fill: PALETTE[i % PALETTE.length], rx: 2 }));
    g.append(svg("text", { x: labelW + barW + 6, y: y + 14, "font-size": 12, fill: "#1d2330", text: (w * 100).toFixed(1) + "%" }));
  });
  box.append(g);
}

function scaleColor(s, name) {
  const i = s.scales.findIndex((c) => c.name === name);
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}

function renderProgress(d) {
  const s = d.study, box = document.getElementById("progress");
  box.replaceChildren();
  if (!d.progress.length) {
    box.append(el("p", { class: "muted", text: "No finished trials yet." }));
    return;
  }
  const maxX = d.progress[d.progress.length - 1].computeFlops;
  const series = s.scales.map((c) => ({
    cls: "series", step: true, dots: true, color: scaleColor(s, c.name), extendTo: maxX,
    points: d.progress.filter((p) => p.scale === c.name).map((p) => [p.computeFlops, p.best]),
    title: `best ${s.metric} at ${c.name}`,
  })).filter((x) => x.points.length);
  const r = s.recommendation;
  const band = r && r.hasInterval ? { lo: Math.min(r.lower, r.upper), hi: Math.max(r.lower, r.upper), mid: r.value, color: scaleColor(s, s.targetScale) } : null;
  box.append(lineChart(series, {
    id: "progress", width: 900, height: 260, xFromZero: true, band,
    xLabel: "compute spent", yLabel: `best ${s.metric} so far`, xFmt: fmtFlops, yFmt: (v) => v.toFixed(2),
  }));
  const items = series.map((x) => [x.title.replace(`best ${s.metric} at `, ""), x.color]);
  if (band) items.push(["recommendation at target (90% interval)", band.color]);
  box.append(legend(items));
}

function renderCurves(d) {
  const s = d.study, box = document.getElementById("curves");
  box.replaceChildren();
  if (!d.curves.length) {
    box.append(el("p", { class: "muted", text: "No curve points yet." }));
    return;
  }
  for (const c of s.scales) {
    const curves = d.curves.filter((x) => x.scale === c.name);
    if (!curves.length) continue;
    // Losses fall steeply at first; scale y to the bulk of the values so the differences
    // between mixtures late in training are visible.
    const ys = curves.flatMap((x) => x.points.map((p) => p[1])).sort((a, b) => a - b);
    const lo = ys[0], hi = quantile(ys, s.maximize ? 1 : 0.9);
    const ends = curves.map((x) => x.points[x.points.length - 1][1]);
    const bestEnd = s.maximize ? Math.max(...ends) : Math.min(...ends);
    const series = curves.map((x) => {
      const end = x.points[x.points.length - 1][1];
      return {
        cls: "curve", trialId: x.trialId, color: STATE_COLOR[x.state] || "#7f8c8d",
        width: end === bestEnd ? 2.6 : null, points: x.points,
        title: `trial ${x.trialId} (${x.state}): ${fmtVal(end)} at step ${x.points[x.points.length - 1][0]}`,
      };
    });
    const fig = el("div", { class: "curve-chart", "data-scale": c.name },
      el("div", { class: "chart-title", text: `${c.name} · ${curves.length} trials · ${(c.params / 1e6).toFixed(0)}M params` }),
      lineChart(series, { id: "curves-" + c.name, yDomain: [lo, hi], xLabel: "step", yLabel: s.metric, xFmt: fmtSteps, yFmt: (v) => v.toFixed(2) }));
    box.append(fig);
  }
  const states = [...new Set(d.curves.map((x) => x.state))];
  box.append(legend(states.map((st) => [st, STATE_COLOR[st] || "#7f8c8d"]).concat([["thick: best at its scale", "#1d2330"]])));
}

function mixtureBar(mix, domains) {
  const W = 120, g = svg("svg", { width: W, height: 10, class: "mix" });
  let x = 0;
  mix.forEach((w, i) => {
    const r = svg("rect", { x: x * W, y: 0, width: Math.max(0, w * W), height: 10, fill: PALETTE[i % PALETTE.length] });
    r.append(svg("title", { text: `${domains[i] || i}: ${(w * 100).toFixed(1)}%` }));
    g.append(r);
    x += w;
  });
  return g;
}

function renderTrials(d) {
  const tb = document.querySelector("#trials tbody");
  tb.replaceChildren();
  if (!d.trials.length) {
    tb.append(el("tr", {}, el("td", { colspan: 9, class: "muted", text: "no trials yet" })));
  }
  // Newest first: the running ones are what an operator looks for.
  for (const t of [...d.trials].reverse()) {
    const note = t.failureReason || (t.sourceRun ? "replayed " + t.sourceRun : "");
    tb.append(el("tr", { "data-trial-id": t.id },
      el("td", { text: t.id }), el("td", { text: t.scale }), el("td", {}, stateBadge(t.state)),
      el("td", { class: "num", text: `${fmtSteps(t.stepsDone)} / ${fmtSteps(t.steps)}` }),
      el("td", { class: "num", text: fmtVal(t.value) }),
      el("td", {}, mixtureBar(t.mixture, d.study.domains)),
      el("td", { text: t.workerId ? String(t.workerId) : "<none>" }),
      el("td", { class: "num", text: fmtFlops(t.computeFlops) }),
      el("td", { class: "note", text: note })));
  }
}

function renderWorkers(ws) {
  const tb = document.querySelector("#workers tbody");
  tb.replaceChildren();
  if (!ws.length) tb.append(el("tr", {}, el("td", { colspan: 6, class: "muted", text: "no workers registered" })));
  for (const w of ws) {
    let gpus = w.gpus.length ? `${w.gpus.length} × ${w.gpus[0]}` : (w.simulatedCapacity ? `${w.simulatedCapacity} slots` : "CPU");
    gpus = `${w.kind}${w.simSource ? " (" + w.simSource + ")" : ""} · ${gpus}`;
    tb.append(el("tr", { "data-worker-id": w.id },
      el("td", { text: w.id }), el("td", { text: w.hostname }), el("td", {}, stateBadge(w.state)),
      el("td", { text: gpus }), el("td", { text: w.runningTrials.join(", ") || "<none>" }),
      el("td", { text: fmtAgo(w.lastHeartbeatMs) })));
  }
}

// ---- main loop ---------------------------------------------------------------------

async function refresh() {
  try {
    const [studies, workers] = await Promise.all([getJSON("api/studies"), getJSON("api/workers")]);
    const m = /study=(\d+)/.exec(location.hash);
    selected = m ? Number(m[1]) : (studies.length ? studies[studies.length - 1].id : 0);
    renderStudies(studies);
    renderWorkers(workers);
    const box = document.getElementById("study");
    if (selected) {
      const d = await getJSON("api/studies/" + selected);
      renderFacts(d.study);
      renderSpend(d);
      renderRec(d.study);
      renderProgress(d);
      renderCurves(d);
      renderTrials(d);
      box.hidden = false;
    } else {
      box.hidden = true;
    }
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    showError("");
    document.body.setAttribute("data-ready", "1");
  } catch (e) {
    showError("dashboard: " + e.message);
  }
}

async function loop() {
  await refresh();
  setTimeout(loop, REFRESH_MS);
}

window.addEventListener("error", (e) => showError("dashboard: " + e.message));
window.addEventListener("hashchange", refresh);
loop();
