// Funnels: pick the steps' events (suggested from the store's recent
// events when the role may read them; the API has no list of event names),
// a conversion window and a date range; POST /analytics/funnel draws the
// funnel as a chart and a table.
import { set, api, h, problem, panel, fmt, session, busy, announce } from "./core.js";
import { chart, axis, BLUE, MUTED } from "./charts.js";

const DAY = 86400000;
const isoDay = (d) => d.toISOString().slice(0, 10);

export function funnelsPage(el) {
  const now = new Date();
  const names = h("datalist", { id: "event-names" });
  const stepsBox = h("ol", { id: "f-steps", class: "steps-edit" });
  const from = h("input", { type: "date", id: "f-from", value: isoDay(new Date(now - 30 * DAY)) });
  const to = h("input", { type: "date", id: "f-to", value: isoDay(new Date(+now + DAY)) });
  const win = h("input", { id: "f-window", value: "7d", size: 6, required: true, "aria-describedby": "f-window-help" });
  const strict = h("input", { type: "checkbox", id: "f-strict" });
  const out = h("div", { id: "funnel-out", "aria-live": "polite" });
  const hint = h("p", { id: "f-names-help", class: "muted" });

  function addStep(value = "") {
    const n = stepsBox.children.length + 1;
    if (n > 20) return;
    const input = h("input", { class: "f-step", list: "event-names", value, required: true, size: 24,
      "aria-label": `Step ${n} event`, "aria-describedby": "f-names-help" });
    const li = h("li", {}, input, " ",
      h("button", { type: "button", class: "secondary", "aria-label": `Remove step ${n}`,
        onclick: () => { li.remove(); renumber(); } }, "Remove"));
    stepsBox.append(li);
    return input;
  }
  function renumber() {
    [...stepsBox.children].forEach((li, i) => {
      li.querySelector("input").setAttribute("aria-label", `Step ${i + 1} event`);
      li.querySelector("button").setAttribute("aria-label", `Remove step ${i + 1}`);
    });
  }
  for (const s of ["Product Viewed", "Order Completed"]) addStep(s);

  const form = h("form", { id: "funnel-form", onsubmit: (e) => { e.preventDefault(); run(); } },
    h("fieldset", {}, h("legend", {}, "Steps, in order"), stepsBox,
      h("button", { type: "button", class: "secondary", id: "f-add", onclick: () => addStep().focus() }, "Add a step"), hint),
    h("div", { class: "inline" },
      h("label", {}, "Conversion window", win),
      h("label", {}, "From (UTC day)", from),
      h("label", {}, "To (UTC day, exclusive)", to),
      h("label", { class: "check" }, h("span", {}, "Strictly later steps"), strict),
      h("button", { type: "submit" }, "Build funnel")),
    h("p", { id: "f-window-help", class: "muted" }, "How long a profile may take from the first step to the last (e.g. 1h, 36h, 7d): the question the funnel asks."),
    names);
  el.append(h("h1", {}, "Funnels"), panel("Build a funnel", form), panel("Result", out));
  set(out, h("p", { class: "muted" }, "Pick the events and press Build funnel."));
  suggest(names, hint);

  async function run() {
    const steps = [...stepsBox.querySelectorAll("input")].map((i) => i.value.trim()).filter(Boolean);
    if (!steps.length) { set(out, h("div", { class: "error", role: "alert" }, "Add at least one step.")); return; }
    busy(out, "the funnel");
    try {
      const res = await api("POST", "/analytics/funnel", {
        steps: steps.map((event) => ({ event })), window: win.value.trim(), strict: strict.checked,
        from: new Date(from.value + "T00:00:00Z").toISOString(), to: new Date(to.value + "T00:00:00Z").toISOString(),
      });
      set(out, funnel(res.steps || []));
      announce("Funnel built");
    } catch (err) {
      set(out, problem(err, "The funnel"));
    }
  }
}

// suggest fills the event-name list from up to 1000 track events of the
// last 30 days (events:read), else says names are typed freely.
async function suggest(list, hint) {
  if (!session.can("events:read")) {
    set(hint, "Type the events' names as they are tracked (your role may not list events, so there are no suggestions).");
    return;
  }
  try {
    const since = new Date(Date.now() - 30 * DAY).toISOString();
    const res = await api("GET", "/events?type=track&limit=1000&from=" + encodeURIComponent(since));
    const seen = [...new Set((res.items || []).map((e) => e.event).filter(Boolean))].sort();
    set(list, seen.map((n) => h("option", { value: n })));
    set(hint, seen.length ? `Suggestions: the ${seen.length} event names of up to 1000 events tracked in the last 30 days; any name may be typed.` : "No tracked events yet: type the names.");
  } catch (err) {
    set(hint, "Type the events' names (suggestions unavailable: " + err.message + ").");
  }
}

function funnel(steps) {
  if (!steps.length) return h("p", { class: "muted" }, "No step.");
  const first = steps[0].profiles;
  const label = `Funnel of ${steps.length} steps: ` + steps.map((s) => `${s.name} ${s.profiles} profiles (${fmt.pct(s.conversion)})`).join(", ");
  const c = chart({
    grid: { left: 150, right: 110, top: 10, bottom: 30 },
    xAxis: axis({ type: "value", name: "profiles", nameLocation: "middle", nameGap: 22, minInterval: 1 }),
    yAxis: axis({ type: "category", inverse: true, data: steps.map((s, i) => `${i + 1}. ${s.name}`) }),
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    series: [{
      type: "bar", data: steps.map((s) => s.profiles), itemStyle: { color: BLUE }, barMaxWidth: 36,
      label: { show: true, position: "right", color: MUTED,
        formatter: (p) => `${fmt.int(p.value)} (${fmt.pct(first ? p.value / first : 0)})` },
    }],
  }, label, 60 + 48 * steps.length);
  return h("div", {}, c,
    h("table", { id: "funnel-table" },
      h("caption", { class: "sr-only" }, "Profiles at each step"),
      h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "Event"), h("th", { class: "num" }, "Profiles"),
        h("th", { class: "num" }, "Of the first step"), h("th", { class: "num" }, "From the previous"), h("th", { class: "num" }, "Median time from the previous"))),
      h("tbody", {}, steps.map((s, i) => h("tr", { "data-step": s.name },
        h("td", {}, i + 1), h("td", {}, s.name), h("td", { class: "num" }, fmt.int(s.profiles)),
        h("td", { class: "num" }, fmt.pct(s.conversion)), h("td", { class: "num" }, fmt.pct(s.fromPrevious)),
        h("td", { class: "num" }, i ? fmt.dur(s.medianSecondsFromPrevious) : "–"))))));
}
