// Journey overview: the lifecycle funnel coloured by owning department with
// its hand-off gaps (POST /analytics/journey), paths as a Sankey diagram
// (POST /analytics/paths) and a retention heat map (POST /analytics/retention).
import { set, api, h, problem, panel, fmt, deptColour, busy, announce } from "./core.js";

const DAY = 86400000;

function isoDay(d) { return d.toISOString().slice(0, 10); }

export function journeyPage(el) {
  const now = new Date();
  const from = h("input", { type: "date", id: "j-from", value: isoDay(new Date(now - 30 * DAY)) });
  const to = h("input", { type: "date", id: "j-to", value: isoDay(new Date(+now + DAY)) });
  const within = h("input", { id: "j-within", value: "14d", size: 6, "aria-describedby": "j-within-help" });
  const journeyOut = h("div", { id: "journey" });
  const range = () => ({
    from: new Date(from.value + "T00:00:00Z").toISOString(),
    to: new Date(to.value + "T00:00:00Z").toISOString(),
  });
  const form = h("form", { class: "inline", id: "range", onsubmit: (e) => { e.preventDefault(); loadAll(); } },
    h("label", {}, "From (UTC day)", from),
    h("label", {}, "To (UTC day, exclusive)", to),
    h("label", {}, "Hand-off within", within),
    h("button", { type: "submit" }, "Show"),
    h("span", { id: "j-within-help", class: "muted" }, "A profile is stuck at a hand-off when it has not reached the next stage within this time (e.g. 36h, 14d)."));

  const paths = pathsPanel(range);
  const retention = retentionPanel(range);
  el.append(h("h1", {}, "Journey overview"), form,
    panel("Lifecycle funnel", journeyOut), h("div", { class: "grid2" }, paths.el, retention.el));

  async function loadJourney() {
    busy(journeyOut, "the journey");
    try {
      const res = await api("POST", "/analytics/journey", { ...range(), within: within.value || undefined, sample: 10 });
      set(journeyOut, funnel(res));
      // For measurements (e2e.TestDashboardFirstPaint): when the
      // funnel was on the page.
      performance.mark("tandem:journey-shown");
      announce("Journey loaded");
    } catch (err) {
      set(journeyOut, problem(err, "The journey"));
    }
  }
  // The funnel first: the three queries would share the event store's
  // threads, and the funnel is what the page is for.
  async function loadAll() { await loadJourney(); paths.load(); retention.load(); }
  loadAll();
}

function funnel(res) {
  const stages = res.stages || [];
  if (!stages.length) return h("p", {}, "No lifecycle stages are configured.");
  const max = Math.max(1, ...stages.map((s) => s.profiles));
  const depts = [...new Set(stages.map((s) => s.department))];
  const handoffs = new Map((res.handoffs || []).map((x) => [x.from + "→" + x.to, x]));
  const rows = [];
  stages.forEach((s, i) => {
    if (i > 0) {
      const x = handoffs.get(stages[i - 1].name + "→" + s.name);
      if (x) rows.push(handoffRow(x));
    }
    const colour = deptColour(s.department);
    rows.push(h("div", { class: "stage", "data-stage": s.name },
      h("div", {}, h("strong", {}, s.name), h("br"), h("span", { class: "muted" }, s.department)),
      h("div", {},
        h("div", { class: "bar", role: "img", "aria-label": `${s.name}: ${s.profiles} profiles, owned by ${s.department}`,
          style: { width: (100 * s.profiles / max) + "%", background: colour } }),
        i > 0 ? h("span", { class: "muted" }, `median ${fmt.dur(s.medianSecondsFromPrevious)} from ${stages[i - 1].name}, p90 ${fmt.dur(s.p90SecondsFromPrevious)}`) : null),
      h("div", { class: "num" }, fmt.int(s.profiles), " profiles")));
  });
  // Gaps between departments: a boundary within one department
  // ("marketing→marketing") is a stage change, not a hand-off.
  const gaps = (res.gaps || []).filter((g) => g.stuck > 0 && new Set(String(g.boundary).split("→")).size > 1);
  return h("div", {},
    h("div", { class: "legend", "aria-label": "Departments" }, depts.map((d) =>
      h("span", {}, h("span", { class: "swatch", style: { background: deptColour(d) } }), d))),
    h("div", { class: "funnel" }, rows),
    h("h3", {}, "Hand-off gaps between departments"),
    gaps.length ? h("table", { id: "gaps" },
      h("thead", {}, h("tr", {}, h("th", {}, "Boundary"), h("th", { class: "num" }, "Stuck profiles"), h("th", {}, "Sample"))),
      h("tbody", {}, gaps.map((g) => h("tr", {},
        h("td", {}, g.boundary), h("td", { class: "num" }, fmt.int(g.stuck)),
        h("td", {}, (g.sample || []).map((id, k) => [k ? ", " : "", h("a", { href: "#/customer/" + encodeURIComponent(id) }, id)]))))))
      : h("p", { class: "muted" }, "No profile is stuck between departments in this range."));
}

// handoffRow is one hand-off between consecutive stages: a button that
// shows the stuck sample profiles, highlighted when it crosses departments
// and some profiles are stuck.
function handoffRow(x) {
  const cross = x.fromDepartment !== x.toDepartment;
  const list = h("ul", { hidden: true, class: "stuck" },
    (x.sample || []).map((id) => h("li", {}, h("a", { href: "#/customer/" + encodeURIComponent(id), class: "mono" }, id))));
  const label = `${x.from} → ${x.to}: ${fmt.int(x.stuck)} of ${fmt.int(x.reached)} stuck` + (cross ? ` (hand-off ${x.boundary})` : "");
  const btn = h("button", {
    type: "button", class: cross && x.stuck > 0 ? "gap" : null, "aria-expanded": "false",
    "data-handoff": x.from + "→" + x.to,
    disabled: x.stuck > 0 ? null : true,
    onclick: () => {
      const open = list.hidden;
      list.hidden = !open;
      btn.setAttribute("aria-expanded", String(open));
    },
  }, label, x.stuck > 0 ? " — show stuck profiles" : "");
  return h("div", { class: "handoff" }, btn, list);
}

function pathsPanel(range) {
  const start = h("input", { id: "p-start", value: "Product Viewed" });
  const dir = h("select", { id: "p-dir" }, h("option", { value: "next" }, "after it"), h("option", { value: "previous" }, "before it"));
  const steps = h("input", { id: "p-steps", type: "number", min: 1, max: 10, value: 3, size: 3 });
  const out = h("div", { class: "scroll" });
  async function load() {
    busy(out, "paths");
    try {
      const res = await api("POST", "/analytics/paths", { ...range(), start: { event: start.value }, direction: dir.value, steps: Number(steps.value), limit: 40 });
      set(out, sankey(res));
    } catch (err) {
      set(out, problem(err, "Paths"));
    }
  }
  const el = panel("Paths",
    h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); load(); } },
      h("label", {}, "Start event", start), h("label", {}, "Steps", dir), h("label", {}, "Depth", steps),
      h("button", { type: "submit" }, "Show paths")), out);
  return { el, load };
}

// sankey draws the paths' nodes in columns by depth (height by profiles)
// and their edges as bands; a table below gives the same numbers.
function sankey(res) {
  const nodes = res.nodes || [], edges = res.edges || [];
  if (!nodes.length) return h("p", { class: "muted" }, "No profile has the start event in this range.");
  const depths = [...new Set(nodes.map((n) => n.depth))].sort((a, b) => a - b);
  const W = 560, colW = 12, H = 300, gap = 8;
  const xOf = (d) => 10 + (depths.indexOf(d) * (W - 10 - colW - 10)) / Math.max(1, depths.length - 1);
  const total = Math.max(...depths.map((d) => nodes.filter((n) => n.depth === d).reduce((a, n) => a + n.profiles, 0)));
  const k = (H - gap * 8) / Math.max(1, total);
  const pos = new Map();
  for (const d of depths) {
    let y = 5;
    for (const n of nodes.filter((n) => n.depth === d).sort((a, b) => b.profiles - a.profiles)) {
      const hgt = Math.max(2, n.profiles * k);
      pos.set(n.id, { x: xOf(d), y, h: hgt, outY: y, inY: y, n });
      y += hgt + gap;
    }
  }
  const svgH = Math.max(H, ...[...pos.values()].map((p) => p.y + p.h + 5));
  const bands = [];
  for (const e of [...edges].sort((a, b) => b.profiles - a.profiles)) {
    const s = pos.get(e.source), t = pos.get(e.target);
    if (!s || !t) continue;
    const w = Math.max(1, e.profiles * k);
    const y1 = s.outY + w / 2, y2 = t.inY + w / 2;
    s.outY += w; t.inY += w;
    const x1 = s.x + colW, x2 = t.x, mx = (x1 + x2) / 2;
    bands.push(h("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, fill: "none", stroke: "#1d4ed8", "stroke-opacity": 0.28, "stroke-width": w },
      h("title", {}, `${s.n.name} → ${t.n.name}: ${e.profiles} profiles`)));
  }
  const rects = [...pos.values()].map((p) => h("g", {},
    h("rect", { x: p.x, y: p.y, width: colW, height: p.h, fill: "#1b2a3a" }, h("title", {}, `${p.n.name} (step ${p.n.depth}): ${p.n.profiles} profiles`)),
    p.n.depth === depths[depths.length - 1] && depths.length > 1
      ? h("text", { x: p.x - 4, y: p.y + Math.min(p.h / 2, 12) + 4, "font-size": 12, fill: "#1b1f24", "text-anchor": "end" }, `${p.n.name} (${p.n.profiles})`)
      : h("text", { x: p.x + colW + 4, y: p.y + Math.min(p.h / 2, 12) + 4, "font-size": 12, fill: "#1b1f24" }, `${p.n.name} (${p.n.profiles})`)));
  return h("div", {},
    h("svg", { viewBox: `0 0 ${W} ${svgH}`, width: "100%", role: "img", "aria-label": `Paths: ${nodes.length} steps, ${edges.length} transitions; the table below lists them` },
      h("title", {}, "Paths from the start event"), bands, rects),
    h("details", {}, h("summary", {}, "Transitions as a table"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "From"), h("th", {}, "To"), h("th", { class: "num" }, "Profiles"))),
        h("tbody", {}, edges.map((e) => h("tr", {}, h("td", {}, e.source), h("td", {}, e.target), h("td", { class: "num" }, fmt.int(e.profiles))))))));
}

function retentionPanel(range) {
  const start = h("input", { id: "r-start", value: "Signed Up" });
  const ret = h("input", { id: "r-return", value: "Order Completed" });
  const period = h("select", { id: "r-period" }, ["day", "week", "month"].map((p) => h("option", { value: p, selected: p === "week" ? true : null }, p)));
  const periods = h("input", { id: "r-periods", type: "number", min: 1, max: 24, value: 6, size: 3 });
  const out = h("div", { class: "scroll" });
  async function load() {
    busy(out, "retention");
    try {
      const res = await api("POST", "/analytics/retention", { ...range(), start: { event: start.value }, return: { event: ret.value }, period: period.value, periods: Number(periods.value) });
      set(out, heatmap(res, period.value));
    } catch (err) {
      set(out, problem(err, "Retention"));
    }
  }
  const el = panel("Retention",
    h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); load(); } },
      h("label", {}, "Cohort by", start), h("label", {}, "Returning with", ret), h("label", {}, "Period", period), h("label", {}, "Periods", periods),
      h("button", { type: "submit" }, "Show retention")), out);
  return { el, load };
}

function heatmap(res, period) {
  const cohorts = res.cohorts || [];
  if (!cohorts.length) return h("p", { class: "muted" }, "No cohort in this range.");
  const n = Math.max(...cohorts.map((c) => (c.share || []).length));
  const cell = (share, returned) => {
    const bg = blend(0.08 + 0.85 * (share || 0));
    return h("td", { class: "num", style: { background: `rgb(${bg.join(",")})`, color: textOn(bg) },
      title: `${returned} profiles returned` }, fmt.pct(share));
  };
  return h("table", { id: "retention" },
    h("caption", { class: "sr-only" }, "Share of each cohort returning in each later " + period),
    h("thead", {}, h("tr", {}, h("th", {}, "Cohort"), h("th", { class: "num" }, "Profiles"),
      Array.from({ length: n }, (_, k) => h("th", { class: "num" }, `${period} ${k + 1}`)))),
    h("tbody", {}, cohorts.map((c) => h("tr", {}, h("th", { scope: "row" }, String(c.start).slice(0, 10)), h("td", { class: "num" }, fmt.int(c.profiles)),
      Array.from({ length: n }, (_, k) => cell(c.share[k], c.returned[k]))))));
}

// blend is the heat map's blue at opacity a over white.
function blend(a) {
  return [29, 78, 216].map((c) => Math.round(255 - (255 - c) * a));
}

// textOn picks the text colour (white or near-black) with the greater
// contrast on the background rgb, by WCAG's relative luminance.
function textOn(rgb) {
  const lum = (c) => {
    const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const bg = lum(rgb), dark = lum([27, 31, 36]);
  const onWhite = 1.05 / (bg + 0.05), onDark = (bg + 0.05) / (dark + 0.05);
  return onWhite > onDark ? "#fff" : "#1b1f24";
}
