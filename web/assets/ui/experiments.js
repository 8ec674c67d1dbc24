// Experiments: the list (GET /experiments) and one experiment's results
// (GET /experiments/{id}/results, see docs/experiments.md): the sample
// ratio mismatch check, and per metric each variation's difference from
// control with its 95 % interval (and the always-valid sequential one)
// as a chart and a table.
import { set, api, h, problem, panel, fmt, busy, announce } from "./core.js";
import { chart, axis, BLUE, ORANGE, MUTED, INK, RED } from "./charts.js";

export function experimentsPage(el, args) {
  const id = args[0];
  if (id) return resultsPage(el, id);
  const out = h("div", { id: "experiments" });
  el.append(h("h1", {}, "Experiments"), panel("Experiments", out));
  list(out);
}

async function list(out) {
  busy(out, "the experiments");
  const items = [];
  try {
    let next = "";
    do {
      const res = await api("GET", "/experiments?limit=200" + (next ? "&cursor=" + encodeURIComponent(next) : ""));
      items.push(...(res.items || []));
      next = res.next || "";
    } while (next && items.length < 2000);
  } catch (err) {
    set(out, problem(err, "The experiments"));
    return;
  }
  if (!items.length) {
    set(out, h("p", { class: "muted" }, "No experiment is defined (POST /api/v1/experiments, see docs/experiments.md)."));
    return;
  }
  set(out, h("table", { id: "experiments-table" },
    h("thead", {}, h("tr", {}, ["Experiment", "Key", "Variations", "Metrics", "From", "To"].map((c) => h("th", {}, c)))),
    h("tbody", {}, items.map((e) => h("tr", { "data-experiment": e.key },
      h("td", {}, h("a", { href: "#/experiments/" + encodeURIComponent(e.id) }, e.name || e.key)),
      h("td", { class: "mono" }, e.key),
      h("td", {}, (e.variations || []).map((v) => `${v.key} (${v.weight})`).join(", ")),
      h("td", {}, (e.metrics || []).map((m) => m.name + (m.guardrail ? " (guardrail)" : "")).join(", ")),
      h("td", {}, fmt.time(e.from)), h("td", {}, e.to ? fmt.time(e.to) : "running"))))));
}

function resultsPage(el, id) {
  const head = h("div", { id: "experiment-head" });
  const srm = h("div", { id: "srm" });
  const metrics = h("div", { id: "metrics" });
  el.append(h("p", {}, h("a", { href: "#/experiments" }, "← All experiments")), head, srm, metrics);
  load();
  async function load() {
    busy(metrics, "the results");
    let e, r;
    try {
      [e, r] = await Promise.all([api("GET", "/experiments/" + encodeURIComponent(id)), api("GET", "/experiments/" + encodeURIComponent(id) + "/results")]);
    } catch (err) {
      set(metrics, problem(err, "The experiment"));
      return;
    }
    set(head, h("h1", {}, e.name || e.key),
      h("p", { class: "muted" }, `Key ${e.key}; control ${r.control}; from ${fmt.time(r.from)} to ${fmt.time(r.end)}; `,
        `${fmt.int(r.exposures.units)} profiles analysed, ${fmt.int(r.exposures.excluded)} excluded (exposed to more than one variation).`));
    set(srm, srmPanel(e, r.srm));
    set(metrics, (r.metrics || []).map((m) => metricPanel(m, r.control)));
    announce("Results loaded");
  }
}

function srmPanel(e, s) {
  const keys = (e.variations || []).map((v) => v.key);
  const total = (s.observed || []).reduce((a, b) => a + b, 0);
  const rows = keys.map((k, i) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, fmt.int(s.observed?.[i])),
    h("td", { class: "num" }, fmt.pct(total ? s.observed[i] / total : null)), h("td", { class: "num" }, fmt.pct(s.expected?.[i]))));
  return panel("Sample ratio",
    s.flagged
      ? h("div", { class: "warning", role: "alert", id: "srm-warning" },
        `Sample ratio mismatch: the split of analysed profiles differs from the planned weights (χ² = ${num(s.chiSquared)}, p = ${pval(s.pValue)} < 0.001). `,
        "Do not trust the lifts until the cause (assignment, lost exposures, bots, exclusions) is found.")
      : h("p", { id: "srm-ok" }, `The split matches the planned weights (χ² = ${num(s.chiSquared)}, p = ${pval(s.pValue)}; flagged below p = 0.001).`),
    h("table", { id: "srm-table" }, h("thead", {}, h("tr", {}, h("th", {}, "Variation"), h("th", { class: "num" }, "Profiles"),
      h("th", { class: "num" }, "Share"), h("th", { class: "num" }, "Planned share"))), h("tbody", {}, rows)));
}

const num = (x, d = 3) => (x === null || x === undefined ? "–" : Number(x).toPrecision(d));
const pval = (p) => (p === null || p === undefined ? "–" : p < 0.0001 ? p.toExponential(1) : p.toFixed(4));

// metricPanel: a chart of each treatment's difference from control with
// its 95 % interval (blue) and its sequential interval (orange, thinner),
// a line at 0, and the table.
function metricPanel(m, control) {
  const rate = m.kind === "conversion";
  const f = (x) => (x === null || x === undefined ? "–" : rate ? (x * 100).toFixed(2) + " pp" : Number(x).toPrecision(3));
  const treat = (m.variations || []).filter((v) => v.key !== control);
  const withCI = treat.filter((v) => v.lift && v.lift.ci95 && v.lift.ci95[0] !== null);
  const scale = rate ? 100 : 1;
  const label = `${m.name}: difference from ${control} with 95 % intervals. ` + treat.map((v) => v.lift
    ? `${v.key}: ${f(v.lift.absolute)}, interval ${f(v.lift.ci95[0])} to ${f(v.lift.ci95[1])}`
    : `${v.key}: no interval`).join("; ");
  const cats = withCI.map((v) => v.key);
  // Each row: [category index, low, high, estimate].
  const ci = withCI.map((v, i) => [i, v.lift.ci95[0] * scale, v.lift.ci95[1] * scale, v.lift.absolute * scale]);
  const seq = withCI.filter((v) => v.sequentialCi95 && v.sequentialCi95[0] !== null)
    .map((v) => [cats.indexOf(v.key), v.sequentialCi95[0] * scale, v.sequentialCi95[1] * scale, v.lift.absolute * scale]);
  const errorBar = (colour, width, offset) => (params, api) => {
    const x = api.value(0);
    const lo = api.coord([api.value(1), x]), hi = api.coord([api.value(2), x]);
    const y = lo[1] + offset;
    const cap = 7;
    return { type: "group", children: [
      { type: "line", shape: { x1: lo[0], y1: y, x2: hi[0], y2: y }, style: { stroke: colour, lineWidth: width } },
      { type: "line", shape: { x1: lo[0], y1: y - cap, x2: lo[0], y2: y + cap }, style: { stroke: colour, lineWidth: 2 } },
      { type: "line", shape: { x1: hi[0], y1: y - cap, x2: hi[0], y2: y + cap }, style: { stroke: colour, lineWidth: 2 } },
    ] };
  };
  const figure = cats.length ? chart({
    grid: { left: 110, right: 30, top: 30, bottom: 40 },
    legend: { top: 0, textStyle: { color: INK }, data: ["95 % interval", "sequential 95 % interval", "difference"] },
    tooltip: { trigger: "item", formatter: (p) => `${cats[p.value[0]]}: ${p.seriesName} ${p.value[1].toFixed(3)} … ${p.value[2].toFixed(3)}` },
    xAxis: axis({ type: "value", min: (v) => Math.min(0, v.min), max: (v) => Math.max(0, v.max),
      axisLabel: { color: INK, showMinLabel: false, showMaxLabel: false, formatter: (x) => String(+Number(x).toPrecision(3)) }, name: rate ? "difference from control (percentage points)" : "difference from control", nameLocation: "middle", nameGap: 26 }),
    yAxis: axis({ type: "category", data: cats, inverse: true }),
    series: [
      { name: "95 % interval", type: "custom", renderItem: errorBar(BLUE, 4, -6), encode: { x: [1, 2], y: 0 }, data: ci, itemStyle: { color: BLUE } },
      { name: "sequential 95 % interval", type: "custom", renderItem: errorBar(ORANGE, 2, 8), encode: { x: [1, 2], y: 0 }, data: seq, itemStyle: { color: ORANGE } },
      { name: "difference", type: "scatter", symbolSize: 11, itemStyle: { color: INK }, data: ci.map((r) => [r[3], r[0]]),
        markLine: { silent: true, symbol: "none", lineStyle: { color: RED, type: "dashed" }, label: { formatter: "no difference", color: MUTED, position: "start" }, data: [{ xAxis: 0 }] } },
    ],
  }, label, 90 + 60 * cats.length) : h("p", { class: "muted" }, "No interval yet (too few profiles or no spread).");
  const pct = (x) => fmt.pct(x);
  return panel(`Metric: ${m.name}`,
    h("p", { class: "muted" }, `${m.kind}${m.guardrail ? ", guardrail (must not get worse)" : ""}` +
      (m.cuped && m.cuped.theta ? `; CUPED θ = ${num(m.cuped.theta)}, variance reduced by ${fmt.pct(m.cuped.varianceReduction)}` : "")),
    figure,
    h("table", { class: "results", "data-metric": m.name },
      h("caption", { class: "sr-only" }, `${m.name} per variation`),
      h("thead", {}, h("tr", {}, ["Variation", "Profiles", rate ? "Rate" : "Mean", "Difference", "95 % interval", "Relative lift", "Relative 95 % interval", "p-value", "Chance to beat control", "Sequential 95 % interval"]
        .map((c, i) => h("th", { class: i ? "num" : null }, c)))),
      h("tbody", {}, (m.variations || []).map((v) => h("tr", { "data-variation": v.key },
        h("td", {}, v.key, v.key === control ? h("span", { class: "muted" }, " (control)") : null),
        h("td", { class: "num" }, fmt.int(v.units)),
        h("td", { class: "num" }, rate ? pct(v.mean) : num(v.mean, 4)),
        h("td", { class: "num" }, v.lift ? f(v.lift.absolute) : "–"),
        h("td", { class: "num" }, v.lift && v.lift.ci95[0] !== null ? `${f(v.lift.ci95[0])} … ${f(v.lift.ci95[1])}` : "–"),
        h("td", { class: "num" }, v.lift ? pct(v.lift.relative) : "–"),
        h("td", { class: "num" }, v.lift && v.lift.relativeCi95 && v.lift.relativeCi95[0] !== null ? `${pct(v.lift.relativeCi95[0])} … ${pct(v.lift.relativeCi95[1])}` : "–"),
        h("td", { class: "num" }, pval(v.pValue)),
        h("td", { class: "num" }, v.chanceToBeatControl === null || v.chanceToBeatControl === undefined ? "–" : pct(v.chanceToBeatControl)),
        h("td", { class: "num" }, v.sequentialCi95 && v.sequentialCi95[0] !== null ? `${f(v.sequentialCi95[0])} … ${f(v.sequentialCi95[1])}` : "–"))))));
}
