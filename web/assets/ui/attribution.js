// Attribution: which channels, campaigns and sources earn a conversion
// under several models side by side (POST /analytics/attribution), and
// what each tool returns for its catalogue cost (GET /analytics/roi):
// cost, conversions, value, cost per conversion, return on spend, and
// the tools that earn nothing, for review. Each part is left out where
// this tandem's API does not describe its endpoint.
import { set, api, h, problem, panel, fmt, busy, announce, apiAccess, forbiddenNote } from "./core.js";
import { chart, axis, INK, BLUE, ORANGE, GREEN } from "./charts.js";

const DAY = 86400000;
const isoDay = (d) => d.toISOString().slice(0, 10);

// The models, as the API names them, with their names on the page and
// their colours (each at least 4.5:1 against white).
const MODELS = [
  { id: "first_touch", name: "First touch", colour: BLUE },
  { id: "last_touch", name: "Last touch", colour: GREEN },
  { id: "linear", name: "Linear", colour: ORANGE },
  { id: "time_decay", name: "Time decay", colour: "#6d28d9" },
  { id: "position", name: "Position-based (40/20/40)", colour: "#0e7490" },
  { id: "markov", name: "Data-driven (Markov)", colour: "#a21caf" },
];
const modelName = (id) => (MODELS.find((m) => m.id === id) || { name: id }).name;

// share is an attributed number of conversions (to millionths).
const share = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en-GB", { maximumFractionDigits: 6 }));
const conversions = (n) => `${fmt.int(n)} conversion${Number(n) === 1 ? "" : "s"}`;
const ratio = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en-GB", { minimumFractionDigits: 2, maximumFractionDigits: 4 }));

export function attributionPage(el) {
  const now = new Date();
  const event = h("input", { id: "a-event", value: "Order Completed", required: true, size: 22 });
  const value = h("input", { id: "a-value", value: "revenue", size: 12, "aria-describedby": "a-value-help" });
  const lookback = h("input", { id: "a-lookback", value: "30d", size: 6, required: true, "aria-describedby": "a-lookback-help" });
  const halfLife = h("input", { id: "a-halflife", value: "7d", size: 6, required: true });
  const by = h("select", { id: "a-by" }, ["channel", "campaign", "source"].map((d) => h("option", { value: d }, d)));
  const reportModel = h("select", { id: "a-report-model" }, MODELS.map((m) => h("option", { value: m.id, selected: m.id === "linear" }, m.name)));
  const from = h("input", { type: "date", id: "a-from", value: isoDay(new Date(now - 30 * DAY)), required: true });
  const to = h("input", { type: "date", id: "a-to", value: isoDay(new Date(+now + DAY)), required: true });
  const checks = MODELS.map((m) => h("input", { type: "checkbox", id: "a-model-" + m.id, value: m.id,
    checked: ["first_touch", "last_touch", "linear"].includes(m.id) }));
  const credits = h("div", { id: "credits-out", "aria-live": "polite" });
  const roi = h("div", { id: "roi-out", "aria-live": "polite" });
  const creditsPanel = panel("Credits by model", credits);
  const roiPanel = panel("Cost and return per tool", roi);

  const form = h("form", { id: "attribution-form", onsubmit: (e) => { e.preventDefault(); run(); } },
    h("div", { class: "inline" },
      h("label", {}, "Conversion event", event),
      h("label", {}, "Value property", value),
      h("label", {}, "Lookback", lookback),
      h("label", {}, "Time decay half-life", halfLife),
      h("label", {}, "Breakdown by", by),
      h("label", {}, "From (UTC day)", from),
      h("label", {}, "To (UTC day, exclusive)", to)),
    h("fieldset", {}, h("legend", {}, "Models to compare"),
      h("div", { class: "inline" }, MODELS.map((m, i) => h("label", { class: "check", for: checks[i].id }, h("span", {}, m.name), checks[i])))),
    h("div", { class: "inline" },
      h("label", {}, "Model for cost and return", reportModel),
      h("button", { type: "submit" }, "Attribute")),
    h("p", { id: "a-value-help", class: "muted" }, "The conversion's property that holds its value (a number); leave it empty to count conversions only."),
    h("p", { id: "a-lookback-help", class: "muted" }, "How far before a conversion its touches count (e.g. 7d, 30d, 720h; at most 365d). Conversions are counted from the first day to the last, the last day excluded."));
  el.append(h("h1", {}, "Attribution"), panel("Question", form), creditsPanel, roiPanel);
  set(credits, h("p", { class: "muted" }, "Pick the conversion and press Attribute."));
  set(roi, h("p", { class: "muted" }, "Each tool's catalogue cost against the conversions and value credited to it."));

  // Leave out what this tandem's API does not describe; say so where the
  // role may not use it.
  const has = Promise.all([apiAccess("POST", "/analytics/attribution"), apiAccess("GET", "/analytics/roi")]).then((parts) => {
    [[parts[0], creditsPanel, credits, "Attribution"], [parts[1], roiPanel, roi, "The cost-and-return report"]].forEach(([a, section, out, what]) => {
      section.hidden = a.state === "missing";
      if (a.state === "forbidden") set(out, forbiddenNote(what, a.need));
    });
    if (parts.every((a) => a.state === "missing")) el.append(h("p", { class: "notice", id: "a-missing" }, "This version of tandem has no attribution."));
    return parts.map((a) => a.state === "allowed");
  });

  async function run() {
    const [hasAttribution, hasROI] = await has;
    const models = checks.filter((c) => c.checked).map((c) => c.value);
    if (!models.length) { set(credits, h("div", { class: "error", role: "alert" }, "Pick at least one model.")); checks[0].focus(); return; }
    const span = { from: new Date(from.value + "T00:00:00Z").toISOString(), to: new Date(to.value + "T00:00:00Z").toISOString() };
    const conversion = { event: event.value.trim() };
    if (value.value.trim()) conversion.value = value.value.trim();
    const jobs = [];
    if (hasAttribution) {
      busy(credits, "the credits");
      jobs.push(api("POST", "/analytics/attribution", { conversion, lookback: lookback.value.trim(), halfLife: halfLife.value.trim(), models, by: by.value, ...span })
        .then((res) => set(credits, creditsView(res)))
        .catch((err) => set(credits, problem(err, "Attribution"))));
    }
    if (hasROI) {
      busy(roi, "the cost and return");
      const q = new URLSearchParams({ ...span, model: reportModel.value, conversion: conversion.event, lookback: lookback.value.trim() });
      if (conversion.value) q.set("value", conversion.value);
      jobs.push(api("GET", "/analytics/roi?" + q)
        .then((res) => set(roi, roiView(res)))
        .catch((err) => set(roi, problem(err, "The cost and return"))));
    }
    await Promise.all(jobs);
    announce("Attribution done");
  }
}

// creditsView draws each model's credits per key side by side: value
// when the conversions have one, else conversions.
function creditsView(res) {
  const models = res.models || [];
  const byValue = Number(res.value) > 0;
  const what = byValue ? "value" : "conversions";
  const keys = [];
  for (const m of models) for (const c of m.credits || []) if (!keys.includes(c.key)) keys.push(c.key);
  const cell = (m, k) => (m.credits || []).find((c) => c.key === k);
  const summary = h("p", { id: "credits-summary" },
    `${conversions(res.conversions)} worth ${fmt.money(res.value)} by ${res.by}`,
    res.noTouch ? `; ${fmt.int(res.noTouch)} with no touch in the lookback (credited to “(none)”)` : "", ".");
  if (!keys.length) return h("div", {}, summary, h("p", { class: "muted" }, "No conversion in this range."));
  const label = `Credited ${what} by ${res.by} per model: ` + models.map((m) => `${modelName(m.model)}: ` +
    keys.map((k) => `${k} ${byValue ? fmt.money((cell(m, k) || {}).value || 0) : share((cell(m, k) || {}).conversions || 0)}`).join(", ")).join("; ");
  const c = chart({
    grid: { left: 60, right: 20, top: 40, bottom: 60, containLabel: true },
    legend: { top: 0, textStyle: { color: INK } },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    xAxis: axis({ type: "category", data: keys, axisLabel: { color: INK, interval: 0, rotate: keys.length > 6 ? 30 : 0 } }),
    yAxis: axis({ type: "value", name: what, nameLocation: "middle", nameGap: 48 }),
    series: models.map((m) => ({
      type: "bar", name: modelName(m.model), barMaxWidth: 28,
      itemStyle: { color: (MODELS.find((x) => x.id === m.model) || MODELS[0]).colour },
      data: keys.map((k) => Number(((cell(m, k) || {})[what]) || 0)),
    })),
  }, label, 320);
  return h("div", {}, summary, c,
    h("div", { class: "scroll" }, h("table", { id: "credits-table" },
      h("caption", { class: "sr-only" }, `Credited value and conversions by ${res.by} per model`),
      h("thead", {}, h("tr", {}, h("th", {}, res.by), models.map((m) => h("th", { class: "num", "data-model": m.model }, modelName(m.model))))),
      h("tbody", {}, keys.map((k) => h("tr", { "data-key": k }, h("th", { scope: "row" }, k),
        models.map((m) => {
          const x = cell(m, k);
          return h("td", { class: "num", "data-model": m.model }, x ? `${fmt.money(x.value)} (${share(x.conversions)})` : "–");
        })))))),
    h("p", { class: "muted" }, "Each cell: the value credited, and in brackets the conversions credited."),
    res.removalEffects ? h("p", { class: "muted", id: "removal-effects" }, "Removal effects (Markov): " +
      Object.entries(res.removalEffects).map(([k, v]) => `${k} ${ratio(v)}`).join(", ") + ".") : null);
}

// roiView shows each tool's cost against the value credited to it, the
// same per channel, and the tools to review.
function roiView(res) {
  const tools = res.tools || [];
  const summary = h("p", { id: "roi-summary" },
    `${modelName(res.model)} model, conversion “${res.conversion.event}”${res.conversion.value ? ` valued by “${res.conversion.value}”` : ""}: ` +
    `${conversions(res.conversions)} worth ${fmt.money(res.value)}; the catalogue's tools cost ${fmt.money(res.cost)} over the range, ` +
    `${fmt.money(res.unallocatedCost)} of it for tools that earned nothing.`);
  const name = (t) => t.name || t.tool;
  const label = "Cost and credited value per tool: " + tools.map((t) => `${name(t)} cost ${fmt.money(t.cost)}, value ${fmt.money(t.value)}`).join("; ");
  const money = (x) => (x === null || x === undefined ? "–" : fmt.money(x));
  const c = tools.length ? chart({
    grid: { left: 20, right: 30, top: 30, bottom: 20, containLabel: true },
    legend: { top: 0, textStyle: { color: INK } },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    xAxis: axis({ type: "value" }),
    yAxis: axis({ type: "category", inverse: true, data: tools.map(name) }),
    series: [
      { type: "bar", name: "Cost", barMaxWidth: 20, itemStyle: { color: ORANGE }, data: tools.map((t) => Number(t.cost)) },
      { type: "bar", name: "Value", barMaxWidth: 20, itemStyle: { color: BLUE }, data: tools.map((t) => Number(t.value)) },
    ],
  }, label, 70 + 46 * tools.length) : null;
  const head = (first) => h("thead", {}, h("tr", {}, h("th", {}, first), first === "Tool" ? h("th", {}, "Kind") : null,
    h("th", { class: "num" }, "Cost"), h("th", { class: "num" }, "Conversions"), h("th", { class: "num" }, "Value"),
    h("th", { class: "num" }, "Cost per conversion"), h("th", { class: "num" }, "Return on spend")));
  const nums = (r) => [h("td", { class: "num" }, money(r.cost)), h("td", { class: "num" }, share(r.conversions)),
    h("td", { class: "num" }, money(r.value)), h("td", { class: "num" }, money(r.costPerConversion)),
    h("td", { class: "num" }, r.returnOnSpend === null || r.returnOnSpend === undefined ? "–" : ratio(r.returnOnSpend))];
  const review = res.review || [];
  return h("div", {}, summary, c,
    tools.length ? h("div", { class: "scroll" }, h("table", { id: "roi-tools" },
      h("caption", { class: "sr-only" }, "Cost and return per tool"), head("Tool"),
      h("tbody", {}, tools.map((t) => h("tr", { "data-tool": name(t) }, h("th", { scope: "row" }, name(t)), h("td", {}, t.kind || "not in the catalogue"), nums(t))))))
      : h("p", { class: "muted" }, "No tool was credited with a conversion in this range."),
    h("p", { class: "muted" }, "Cost: the catalogue's monthly cost over the range. Return on spend: value ÷ cost."),
    h("h3", {}, "Per channel"),
    (res.channels || []).length ? h("div", { class: "scroll" }, h("table", { id: "roi-channels" },
      h("caption", { class: "sr-only" }, "Cost and return per channel"), head("Channel"),
      h("tbody", {}, res.channels.map((ch) => h("tr", { "data-channel": ch.channel }, h("th", { scope: "row" }, ch.channel), nums(ch))))))
      : h("p", { class: "muted" }, "No channel was credited."),
    h("h3", { id: "review-heading" }, "Tools to review"),
    review.length ? h("div", {},
      h("p", { class: "muted" }, "Destinations that receive customer data but earned no conversion under this model in the range, the costliest first."),
      h("table", { id: "review-table", "aria-labelledby": "review-heading" },
        h("thead", {}, h("tr", {}, h("th", {}, "Tool"), h("th", { class: "num" }, "Cost over the range"), h("th", {}, "Data categories"))),
        h("tbody", {}, review.map((r) => h("tr", { "data-tool": r.name || r.tool }, h("th", { scope: "row" }, r.name || r.tool),
          h("td", { class: "num" }, money(r.cost)), h("td", {}, (r.dataCategories || []).join(", ") || "–"))))))
      : h("p", { class: "muted", id: "review-none" }, "Every destination earned a conversion: none to review."));
}
