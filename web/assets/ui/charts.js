// Charts with Apache ECharts (vendored under ui/vendor/echarts, see
// docs/dependencies.md). The library is 1 MB, so it is loaded on first
// use, not with the page: the sign-in page and every table paint without
// it. Each chart is a canvas in a <div role="img"> whose label says what
// it shows; the pages put the same numbers in a table beside it.
import { h } from "./core.js";

let lib = null;
const live = new Set();

// echarts loads the library once.
export function echarts() {
  if (!lib) lib = import("./vendor/echarts/echarts.esm.min.js");
  return lib;
}

// INK and friends are the page's colours (app.css), for axes and labels.
export const INK = "#1b1f24", MUTED = "#4a5560", LINE = "#d0d6dd";
export const BLUE = "#1d4ed8", ORANGE = "#c2410c", GREEN = "#047857", RED = "#b91c1c";

// chart returns a box that draws option once the library is loaded. label
// is the box's accessible name (a sentence with the chart's main numbers).
export function chart(option, label, height = 280) {
  const box = h("div", { class: "chart", role: "img", "aria-label": label, style: { height: height + "px" } });
  echarts().then((e) => whenShown(box, () => draw(e, box, option))).catch((err) => { box.textContent = "The chart could not be drawn: " + err.message; });
  return box;
}

// whenShown runs f once box is on the page (a chart needs its size),
// checking each frame for a few seconds.
function whenShown(box, f, tries = 300) {
  if (box.isConnected) f();
  else if (tries > 0) requestAnimationFrame(() => whenShown(box, f, tries - 1));
}

// liveChart is a chart whose data changes (a poll): update(option)
// merges option into it, and relabel(label) says what it shows now.
export function liveChart(option, label, height = 220) {
  const el = chart(option, label, height);
  return {
    el,
    update(o, newLabel) {
      if (newLabel) el.setAttribute("aria-label", newLabel);
      if (el.chart) el.chart.setOption(o);
      else el.pending = { ...(el.pending || {}), ...o };
    },
  };
}

function draw(e, box, option) {
  const c = e.init(box, null, { renderer: "canvas" });
  box.chart = c;
  c.setOption({
    animation: false,
    textStyle: { fontFamily: getComputedStyle(document.documentElement).fontFamily, color: INK },
    aria: { enabled: false }, // the box's own label is the text alternative
    ...option,
  });
  if (box.pending) c.setOption(box.pending);
  live.add(c);
}

// disposeCharts frees every chart (the router calls it when the page
// changes).
export function disposeCharts() {
  for (const c of live) c.dispose();
  live.clear();
}

window.addEventListener("resize", () => { for (const c of live) c.resize(); });

// axis is a value or category axis in the page's colours.
export function axis(o) {
  return {
    axisLine: { lineStyle: { color: MUTED } },
    axisLabel: { color: INK },
    splitLine: { lineStyle: { color: LINE } },
    nameTextStyle: { color: MUTED },
    ...o,
  };
}
