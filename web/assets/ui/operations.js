// Operations: ingest and processing rates, pipeline lag and backlog, and
// each destination's health, from the node's /metrics (Prometheus text
// format; the few tandem_* series needed are parsed here), /readyz's
// pipeline details, GET /destinations and, for roles that manage them,
// each destination's recent delivery attempts. Polled every 5 s while the
// page is open.
import { set, h, panel, fmt, api, session, problem } from "./core.js";
import { liveChart, axis, BLUE, ORANGE } from "./charts.js";

const POLL_MS = 5000;
const KEEP = 60; // samples in the charts: five minutes

// parseSeries reads every sample: name → [{labels, value}].
export function parseSeries(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    (out[m[1]] = out[m[1]] || []).push({ labels, value: v });
  }
  return out;
}

// parseMetrics sums each metric's samples over their labels.
export function parseMetrics(text) {
  const out = {};
  for (const [name, samples] of Object.entries(parseSeries(text))) out[name] = samples.reduce((a, s) => a + s.value, 0);
  return out;
}

// by sums a metric's samples per value of label key, optionally only
// those whose label other equals value.
function by(series, name, key, other, value) {
  const out = {};
  for (const s of series[name] || []) {
    if (other && s.labels[other] !== value) continue;
    const k = s.labels[key];
    out[k] = (out[k] || 0) + s.value;
  }
  return out;
}

export function operationsPage(el) {
  const stats = h("div", { id: "ops-stats", "aria-live": "polite" });
  const ready = h("div", { id: "readyz" });
  const dests = h("div", { id: "destinations" });
  const ingest = liveChart(timeOption("events/s", BLUE), "Ingest rate over the last minutes: collecting samples", 200);
  const lag = liveChart(timeOption("seconds", ORANGE), "Pipeline lag over the last minutes: collecting samples", 200);
  el.append(h("h1", {}, "Operations"),
    h("p", { class: "muted" }, "From this node's /metrics and /readyz and the destinations' recent deliveries, every 5 seconds while this page is open."),
    panel("Now", stats),
    h("div", { class: "grid2" }, panel("Ingest rate (events/s)", ingest.el), panel("Pipeline lag (s)", lag.el)),
    panel("Destination health", dests),
    panel("Readiness (/readyz)", ready));
  const history = [];
  let prev = null;
  let timer = null;
  let stopped = false;

  async function poll() {
    let series, m, r;
    try {
      const res = await fetch("/metrics");
      if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
      series = parseSeries(await res.text());
      m = {};
      for (const [name, samples] of Object.entries(series)) m[name] = samples.reduce((a, s) => a + s.value, 0);
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
      if (history.length) {
        const last = history[history.length - 1];
        ingest.update({ series: [{ data: history.map((s) => [s.t, s.ingestRate]) }] },
          `Ingest rate over the last ${history.length} samples: now ${last.ingestRate.toFixed(1)} events/s, highest ${Math.max(...history.map((s) => s.ingestRate)).toFixed(1)}`);
        lag.update({ series: [{ data: history.map((s) => [s.t, s.lag]) }] },
          `Pipeline lag over the last ${history.length} samples: now ${last.lag.toFixed(2)} s, highest ${Math.max(...history.map((s) => s.lag)).toFixed(2)} s`);
      }
    }
    await destinationHealth(dests, series || {});
    // The first rate needs two samples: the second comes after a second.
    if (!stopped) timer = setTimeout(poll, history.length ? POLL_MS : 1000);
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}

function timeOption(unit, colour) {
  return {
    grid: { left: 50, right: 16, top: 16, bottom: 28 },
    tooltip: { trigger: "axis" },
    xAxis: axis({ type: "time", splitLine: { show: false } }),
    yAxis: axis({ type: "value", name: unit, min: 0 }),
    series: [{ type: "line", showSymbol: false, data: [], lineStyle: { color: colour, width: 2 }, itemStyle: { color: colour }, areaStyle: { color: colour, opacity: 0.08 } }],
  };
}

// destinationHealth: per destination, its approval, events delivered and
// dead-lettered (from /metrics, since this node started), the records it
// has yet to acknowledge, and from its last delivery attempts (roles with
// destinations:manage) the share that succeeded, the latest outcome and
// error. A destination is failing when its latest attempt did not
// deliver, lagging when it has records waiting, else healthy (or idle).
async function destinationHealth(el, series) {
  let items;
  try {
    items = (await api("GET", "/destinations?limit=200")).items || [];
  } catch (err) {
    set(el, problem(err, "Destinations"));
    return;
  }
  if (!items.length) { set(el, h("p", { class: "muted" }, "No destination is configured.")); return; }
  const outcome = (o) => by(series, "tandem_delivery_events_total", "destination", "outcome", o);
  const delivered = outcome("delivered"), dead = outcome("dead_letter"), noConsent = outcome("no_consent"), filtered = outcome("filtered");
  const lagRec = by(series, "tandem_delivery_lag_records", "destination");
  const manage = session.can("destinations:manage");
  const attempts = new Map();
  if (manage) {
    await Promise.all(items.slice(0, 50).map(async (d) => {
      try {
        const res = await api("GET", `/destinations/${encodeURIComponent(d.id)}/deliveries?limit=100`);
        attempts.set(d.id, (res.items || []).slice(0, 100));
      } catch { /* shown as unknown */ }
    }));
  }
  const rows = items.map((d) => {
    const a = attempts.get(d.id) || [];
    const last = a[0];
    const ok = a.filter((x) => x.status === "delivered").length;
    let health = "idle";
    if (d.approval !== "approved") health = "not approved";
    else if (last && last.status !== "delivered") health = "failing";
    else if ((lagRec[d.id] || 0) > 0) health = "lagging";
    else if (last || delivered[d.id]) health = "healthy";
    return h("tr", { "data-destination": d.name, "data-health": health },
      h("td", {}, d.name, h("br"), h("span", { class: "muted mono" }, d.id)),
      h("td", {}, h("span", { class: "badge " + ({ healthy: "approved", failing: "rejected", lagging: "pending", "not approved": "pending" }[health] || "") }, health)),
      h("td", { class: "num" }, fmt.int(delivered[d.id] || 0)),
      h("td", { class: "num" }, fmt.int(dead[d.id] || 0)),
      h("td", { class: "num" }, fmt.int((noConsent[d.id] || 0) + (filtered[d.id] || 0))),
      h("td", { class: "num" }, fmt.int(lagRec[d.id] || 0)),
      manage ? h("td", { class: "num" }, a.length ? `${fmt.pct(ok / a.length)} of ${a.length}` : "–") : null,
      manage ? h("td", {}, last ? [`${last.status.replace("_", " ")}${last.httpStatus ? " (" + last.httpStatus + ")" : ""}`, h("br"), h("span", { class: "muted" }, fmt.time(last.at))] : "–") : null,
      manage ? h("td", {}, last && last.error ? last.error : "–") : null);
  });
  set(el, h("div", { class: "scroll" }, h("table", { id: "destinations-table" },
    h("caption", { class: "sr-only" }, "Health of each destination"),
    h("thead", {}, h("tr", {}, ["Destination", "Health", "Delivered", "Dead letters", "Not sent (filter, consent)", "Waiting (records)",
      manage ? "Recent attempts delivered" : null, manage ? "Latest attempt" : null, manage ? "Latest error" : null].filter(Boolean)
      .map((c, i) => h("th", { class: i >= 2 && i <= 6 ? "num" : null }, c)))),
    h("tbody", {}, rows))),
  h("p", { class: "muted" }, "Delivered, dead letters and not sent: this node's counts since it started (/metrics). " +
    (manage ? "Recent attempts: the last 100 on this node (GET /destinations/{id}/deliveries)." : `The recent attempts are for roles with destinations:manage; your role is ${session.me.role}.`)));
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
