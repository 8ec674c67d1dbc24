// Operations: ingest and processing rates, pipeline lag and backlog, from
// the node's /metrics (Prometheus text format; the few tandem_* series
// needed are parsed here) and /readyz's pipeline details. Polled every 5 s
// while the page is open.
import { set, h, panel, fmt } from "./core.js";

const POLL_MS = 5000;
const KEEP = 60; // samples in the charts: five minutes

// parseMetrics sums each metric's samples over their labels:
// "name{a="b"} 3" lines; comments and other lines are skipped.
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    out[m[1]] = (out[m[1]] || 0) + v;
  }
  return out;
}

export function operationsPage(el) {
  const stats = h("div", { id: "ops-stats", "aria-live": "polite" });
  const ready = h("div", { id: "readyz" });
  const charts = h("div", { class: "grid2" });
  el.append(h("h1", {}, "Operations"),
    h("p", { class: "muted" }, "From this node's /metrics and /readyz, every 5 seconds while this page is open."),
    panel("Now", stats), charts, panel("Readiness (/readyz)", ready));
  const history = [];
  let prev = null;
  let timer = null;
  let stopped = false;

  async function poll() {
    let m, r;
    try {
      const res = await fetch("/metrics");
      if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
      m = parseMetrics(await res.text());
    } catch (err) {
      set(stats, h("div", { class: "error", role: "alert" }, "Metrics: " + err.message));
    }
    try {
      const res = await fetch("/readyz");
      r = await res.json();
      set(ready, readiness(res.status, r));
    } catch (err) {
      set(ready, h("div", { class: "error" }, "Readiness: " + err.message));
    }
    if (m) {
      const now = Date.now();
      const sample = {
        t: now,
        accepted: m.tandem_events_accepted_total || 0,
        stored: m.tandem_pipeline_events_stored_total || 0,
        // Collection sends invalid events through the log too, and the
        // pipeline counts each again as it quarantines it: its counter is
        // the total (collection's, on a node without a pipeline).
        quarantined: m.tandem_pipeline_events_quarantined_total ?? m.tandem_events_quarantined_total ?? 0,
        lag: m.tandem_pipeline_lag_seconds || 0,
        lagRecords: m.tandem_pipeline_lag_records || 0,
        inflight: m.tandem_collect_inflight || 0,
      };
      if (prev) {
        const dt = (now - prev.t) / 1000;
        sample.ingestRate = Math.max(0, (sample.accepted - prev.accepted) / dt);
        sample.storeRate = Math.max(0, (sample.stored - prev.stored) / dt);
        history.push(sample);
        if (history.length > KEEP) history.shift();
      }
      prev = sample;
      set(stats, 
        stat("Ingest rate", sample.ingestRate === undefined ? "…" : sample.ingestRate.toFixed(1) + " events/s", "ops-ingest"),
        stat("Stored rate", sample.storeRate === undefined ? "…" : sample.storeRate.toFixed(1) + " events/s", "ops-stored"),
        stat("Pipeline lag", fmt.dur(sample.lag), "ops-lag"),
        stat("Backlog", fmt.int(sample.lagRecords) + " records", "ops-backlog"),
        stat("Accepted (total)", fmt.int(sample.accepted), "ops-accepted"),
        stat("Quarantined (total)", fmt.int(sample.quarantined), "ops-quarantined"),
        stat("Requests in flight", fmt.int(sample.inflight), "ops-inflight"));
      set(charts, 
        panel("Ingest rate (events/s)", spark(history.map((s) => s.ingestRate), "Ingest rate over the last minutes")),
        panel("Pipeline lag (s)", spark(history.map((s) => s.lag), "Pipeline lag over the last minutes")));
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}

function stat(label, value, id) {
  return h("div", { class: "stat" }, h("div", { class: "muted" }, label), h("div", { class: "v", id }, value));
}

function readiness(status, r) {
  const p = (r && r.pipeline) || {};
  if (status !== 200) return h("div", { class: "error" }, (r && r.error && r.error.message) || `not ready (${status})`);
  return h("dl", { class: "kv" },
    h("dt", {}, "Status"), h("dd", {}, r.status),
    h("dt", {}, "Lag"), h("dd", {}, fmt.dur(p.lagSeconds)),
    h("dt", {}, "Backlog"), h("dd", {}, p.lagRecords == null ? "unknown" : fmt.int(p.lagRecords) + " records"),
    h("dt", {}, "Oldest unprocessed"), h("dd", {}, p.oldestUnprocessed ? fmt.time(p.oldestUnprocessed) : "–"),
    h("dt", {}, "Lag limit (--max-pipeline-lag)"), h("dd", {}, p.maxLagSeconds ? fmt.dur(p.maxLagSeconds) : "none"),
    h("dt", {}, "Refusing collection (overloaded)"), h("dd", {}, p.overloaded ? "yes" : "no"));
}

// spark draws a line of the samples (newest right) with its axis' maximum.
function spark(values, label) {
  const W = 520, H = 120;
  if (values.length < 2) return h("p", { class: "muted" }, "Collecting samples…");
  const max = Math.max(1e-9, ...values);
  const pts = values.map((v, i) => `${(i * (W - 50)) / (values.length - 1) + 45},${H - 15 - (v / max) * (H - 30)}`).join(" ");
  return h("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": `${label}: now ${values[values.length - 1].toFixed(2)}, highest ${max.toFixed(2)}` },
    h("line", { x1: 45, y1: H - 15, x2: W - 5, y2: H - 15, stroke: "#8a96a3" }),
    h("text", { x: 40, y: 18, "text-anchor": "end", "font-size": 11, fill: "#4a5560" }, max.toFixed(max < 10 ? 2 : 0)),
    h("text", { x: 40, y: H - 12, "text-anchor": "end", "font-size": 11, fill: "#4a5560" }, "0"),
    h("polyline", { points: pts, fill: "none", stroke: "#1d4ed8", "stroke-width": 2 }));
}
