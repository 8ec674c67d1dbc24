// Stack and governance: the catalogue (GET /catalog: sources and
// destinations) as a table with approve/reject for roles that may decide
// (approvals:decide), and as a picture of the data flows between tools;
// cost by owning department; pending change requests (GET /changes, when
// this tandem has them); tracking-plan violations and the quarantine
// (GET /quarantine) with replay (quarantine:replay); an import's report
// (GET /imports/{id}; there is no list of imports in the API).
import { set, api, h, problem, panel, fmt, session, busy, forbiddenNote, announce, deptColour, APIError, apiAccess } from "./core.js";
import { chart, axis, BLUE, ORANGE, MUTED, INK } from "./charts.js";

export function stackPage(el) {
  const tools = h("div", { id: "tools" });
  const flows = h("div", { id: "flows" });
  const cost = h("div", { id: "cost" });
  const changes = h("section", { class: "panel", id: "changes-panel", "aria-labelledby": "h-changes", hidden: true },
    h("h2", { id: "h-changes" }, "Change requests waiting for a decision"), h("div", { id: "changes" }));
  const violations = h("div", { id: "violations" });
  const quarantine = h("div", { id: "quarantine" });
  const imports = h("div", { id: "imports" });
  el.append(h("h1", {}, "Stack and governance"),
    panel("Catalogue: sources and destinations", tools),
    panel("Data flows between tools", flows),
    changes,
    h("div", { class: "grid2" }, panel("Monthly cost by department", cost), panel("Imports", imports)),
    panel("Tracking-plan violations", violations),
    panel("Quarantine", quarantine));
  // A decision on a tool or on a change request changes both lists.
  const reload = () => {
    loadCatalog(tools, flows, cost, reload);
    loadChanges(changes, reload);
  };
  reload();
  if (session.can("quarantine:read")) {
    loadViolations(violations);
    loadQuarantine(quarantine);
  } else {
    set(violations, forbiddenNote("Tracking-plan violations (held in the quarantine)", "quarantine:read"));
    set(quarantine, forbiddenNote("The quarantine", "quarantine:read"));
  }
  if (session.can("imports:run")) importsForm(imports);
  else set(imports, forbiddenNote("Import reports", "imports:run"));
}

async function all(path) {
  const items = [];
  let next = "";
  do {
    const sep = path.includes("?") ? "&" : "?";
    const res = await api("GET", path + sep + "limit=200" + (next ? "&cursor=" + encodeURIComponent(next) : ""));
    items.push(...(res.items || []));
    next = res.next || "";
  } while (next && items.length < 2000);
  return items;
}

async function loadCatalog(el, flowsEl, costEl, reload) {
  busy(el, "the catalogue");
  let cat;
  try {
    cat = await api("GET", "/catalog");
  } catch (err) {
    set(el, problem(err, "The catalogue"));
    set(flowsEl, );
    set(costEl, );
    return;
  }
  const items = cat.tools || [];
  const decide = session.can("approvals:decide");
  const pending = items.filter((s) => s.approval === "pending").length;
  set(el,
    h("p", {}, `${items.filter((t) => t.kind === "source").length} sources and ${items.filter((t) => t.kind === "destination").length} destinations, ${pending} waiting for approval.`,
      !decide && pending ? h("span", { class: "muted" }, ` Approving is for roles with approvals:decide; your role is ${session.me.role}.`) : null),
    h("div", { class: "scroll" }, h("table", { id: "tools-table" },
      h("caption", { class: "sr-only" }, "Every tool that handles customer data"),
      h("thead", {}, h("tr", {}, ["Name", "Kind", "Owner", "Purpose", "Data", "Consent purposes", "Cost / month", "Approval", decide ? "Decision" : null].filter(Boolean)
        .map((c) => h("th", { class: c === "Cost / month" ? "num" : null }, c)))),
      h("tbody", {}, items.map((s) => h("tr", { "data-tool": s.name, "data-kind": s.kind },
        h("td", {}, s.name, h("br"), h("span", { class: "muted mono" }, s.id)),
        h("td", {}, s.kind, h("br"), h("span", { class: "muted" }, s.type)),
        h("td", {}, h("span", { class: "swatch", style: { background: deptColour(s.owner) } }), s.owner || "–"),
        h("td", {}, s.purpose || "–"),
        h("td", {}, (s.dataCategories || []).join(", ") || "–"),
        h("td", {}, (s.consentPurposes || []).join(", ") || "–"),
        h("td", { class: "num" }, fmt.money(s.monthlyCost)),
        h("td", {}, h("span", { class: "badge " + s.approval, "data-approval": s.approval }, s.approval),
          s.approvedAt ? h("span", { class: "muted" }, h("br"), fmt.time(s.approvedAt)) : null),
        decide ? h("td", {}, s.approval === "approved" ? null : decisionForm(s, reload)) : null))))));
  set(flowsEl, flowPicture(items, cat.flows || []));
  costPanel(costEl, items);
}

function decisionForm(s, reload) {
  const comment = h("input", { size: 16, "aria-label": `Comment on ${s.name}`, placeholder: "comment" });
  const msg = h("span", { role: "status" });
  const path = s.kind === "destination" ? "/destinations/" : "/sources/";
  const send = (decision) => async () => {
    try {
      await api("POST", `${path}${encodeURIComponent(s.id)}/approvals`, { decision, comment: comment.value });
      announce(`${s.name}: ${decision}d`);
      reload();
    } catch (err) {
      set(msg, problem(err, "The decision"));
    }
  };
  return h("div", { class: "inline" }, comment, " ",
    h("button", { type: "button", "data-action": "approve", "aria-label": `Approve ${s.name}`, onclick: send("approve") }, "Approve"), " ",
    s.approval === "pending" ? h("button", { type: "button", class: "danger", "data-action": "reject", "aria-label": `Reject ${s.name}`, onclick: send("reject") }, "Reject") : null,
    msg);
}

// flowPicture draws sources on the left, destinations on the right and the
// catalogue's flows between them (width by events in 30 days; orange when
// they carry personal data), with the flows as a table below.
export function flowPicture(tools, flows) {
  const byId = new Map(tools.map((t) => [t.id, t]));
  const srcs = tools.filter((t) => t.kind === "source"), dsts = tools.filter((t) => t.kind === "destination");
  const rows = Math.max(srcs.length, dsts.length, 1);
  const H = 40 + 44 * rows;
  // Nodes sit on hidden value axes (the graph's own layout box would
  // stretch the symbols): x 0 or 1, y spread over the rows.
  const place = (list, left) => list.map((t, i) => ({
    id: t.id, name: t.name, value: [left ? 0 : 1, (i + 0.5) * (rows / list.length)],
    symbol: t.kind === "source" ? "rect" : "circle", symbolSize: 16,
    itemStyle: { color: deptColour(t.owner), borderColor: t.approval === "approved" ? deptColour(t.owner) : ORANGE, borderWidth: t.approval === "approved" ? 0 : 3 },
    label: { show: true, position: left ? "left" : "right", color: INK, fontSize: 13,
      formatter: `${t.name}${t.approval === "approved" ? "" : " (" + t.approval + ")"}` },
  }));
  const max = Math.max(1, ...flows.map((f) => f.events30d || 0));
  const known = flows.filter((f) => byId.has(f.from) && byId.has(f.to));
  const label = `Data flows: ${srcs.length} sources, ${dsts.length} destinations, ${known.length} flows` +
    (known.length ? ": " + known.map((f) => `${byId.get(f.from).name} to ${byId.get(f.to).name}, ${f.events30d} events in 30 days${f.personalData ? ", personal data" : ""}`).join("; ") : "");
  const picture = chart({
    tooltip: { formatter: (p) => p.dataType === "edge" ? `${byId.get(p.data.source).name} → ${byId.get(p.data.target).name}: ${fmt.int(p.data.value)} events in 30 days` : p.name },
    grid: { left: 190, right: 190, top: 30, bottom: 10 },
    xAxis: { type: "value", show: false, min: 0, max: 1 },
    yAxis: { type: "value", show: false, min: 0, max: rows, inverse: true },
    series: [{
      type: "graph", layout: "none", coordinateSystem: "cartesian2d", roam: false,
      edgeSymbol: ["none", "arrow"], edgeSymbolSize: 10,
      data: [...place(srcs, true), ...place(dsts, false)],
      links: known.map((f) => ({ source: f.from, target: f.to, value: f.events30d,
        lineStyle: { color: f.personalData ? ORANGE : BLUE, width: 1.5 + 7 * Math.sqrt((f.events30d || 0) / max), opacity: 0.75, curveness: 0.1 } })),
    }],
    graphic: [
      { type: "text", left: 10, top: 4, style: { text: "sources", fill: MUTED, fontSize: 12 } },
      { type: "text", right: 10, top: 4, style: { text: "destinations", fill: MUTED, fontSize: 12 } },
    ],
  }, label, H);
  return h("div", {},
    h("div", { class: "legend" },
      h("span", {}, h("span", { class: "swatch", style: { background: BLUE } }), "flow (width: events in 30 days)"),
      h("span", {}, h("span", { class: "swatch", style: { background: ORANGE } }), "flow with personal data; a tool outlined in orange is not approved"),
      h("span", {}, "squares: sources; circles: destinations; colour: owning department")),
    picture,
    known.length
      ? h("table", { id: "flows-table" },
        h("caption", { class: "sr-only" }, "Data flows between tools"),
        h("thead", {}, h("tr", {}, h("th", {}, "From"), h("th", {}, "To"), h("th", { class: "num" }, "Events in 30 days"), h("th", {}, "Personal data"))),
        h("tbody", {}, known.map((f) => h("tr", { "data-flow": byId.get(f.from).name + "→" + byId.get(f.to).name },
          h("td", {}, byId.get(f.from).name), h("td", {}, byId.get(f.to).name), h("td", { class: "num" }, fmt.int(f.events30d)), h("td", {}, f.personalData ? "yes" : "no")))))
      : h("p", { class: "muted", id: "flows-none" }, "The catalogue reports no flow between these tools yet."));
}

function costPanel(el, items) {
  const byOwner = new Map();
  for (const s of items) byOwner.set(s.owner || "(none)", (byOwner.get(s.owner || "(none)") || 0) + (s.monthlyCost || 0));
  const rows = [...byOwner].sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((a, r) => a + r[1], 0);
  set(el,
    rows.length ? chart({
      grid: { left: 100, right: 70, top: 10, bottom: 20 },
      xAxis: axis({ type: "value" }),
      yAxis: axis({ type: "category", inverse: true, data: rows.map((r) => r[0]) }),
      series: [{ type: "bar", barMaxWidth: 26, data: rows.map((r) => ({ value: r[1], itemStyle: { color: deptColour(r[0]) } })),
        label: { show: true, position: "right", color: INK, formatter: (p) => fmt.money(p.value) } }],
    }, "Monthly cost by department: " + rows.map((r) => `${r[0]} ${fmt.money(r[1])}`).join(", "), 40 + 34 * rows.length) : null,
    h("table", { id: "cost-table" }, h("thead", {}, h("tr", {}, h("th", {}, "Department"), h("th", { class: "num" }, "Cost / month"))),
      h("tbody", {}, rows.map(([o, c]) => h("tr", {}, h("td", {}, o), h("td", { class: "num" }, fmt.money(c))))),
      h("tfoot", {}, h("tr", {}, h("th", {}, "Total"), h("td", { class: "num" }, fmt.money(total))))));
}

// loadChanges shows the change requests waiting for a decision (the
// section stays hidden where the API does not describe GET /changes, or
// answers it 404), with approve and reject for a role the change still
// needs.
async function loadChanges(section, reload) {
  const el = section.querySelector("#changes");
  const access = await apiAccess("GET", "/changes");
  if (access.state === "missing") { section.hidden = true; return; }
  if (access.state === "forbidden") { section.hidden = false; set(el, forbiddenNote("Change requests", access.need)); return; }
  let items;
  try {
    items = await all("/changes?state=pending");
  } catch (err) {
    if (err instanceof APIError && (err.status === 404 || err.status === 405)) { section.hidden = true; return; }
    section.hidden = false;
    set(el, problem(err, "Change requests"));
    return;
  }
  section.hidden = false;
  if (!items.length) { set(el, h("p", { class: "muted" }, "No change is waiting.")); return; }
  const role = session.me.role;
  set(el, h("div", { class: "scroll" }, h("table", { id: "changes-table" },
    h("thead", {}, h("tr", {}, ["Change", "What", "Proposed by", "Needs", "Decided so far", "Decision"].map((c) => h("th", {}, c)))),
    h("tbody", {}, items.map((c) => {
      const decided = new Set((c.approvals || []).map((a) => a.role));
      // An admin's approval counts for every role unless the decision
      // rights say otherwise (the API then answers 403, shown here).
      const mine = ((c.needs || []).includes(role) || role === "admin") && !decided.has(role);
      return h("tr", { "data-change": c.id },
        h("td", { class: "mono" }, c.id, h("br"), h("span", { class: "muted" }, fmt.time(c.createdAt))),
        h("td", {}, `${c.action} ${c.kind}`, h("br"), h("span", { class: "mono muted" }, c.subject || "–"), diffDetails(c.diff)),
        h("td", {}, c.proposedBy || "–"),
        h("td", {}, (c.needs || []).join(", ") || "–"),
        h("td", {}, (c.approvals || []).map((a) => `${a.role}: ${a.decision}`).join("; ") || "–"),
        h("td", {}, mine ? changeForm(c, reload)
          : h("span", { class: "muted" }, (c.needs || []).includes(role) ? "your role has decided" : `needs ${(c.needs || []).join(" or ")}`)));
    })))));
}

function diffDetails(diff) {
  if (!diff) return null;
  return h("details", {}, h("summary", {}, "Before and after"),
    h("pre", { class: "mono diff" }, "before: " + JSON.stringify(diff.before, null, 1) + "\nafter: " + JSON.stringify(diff.after, null, 1)));
}

function changeForm(c, reload) {
  const comment = h("input", { size: 14, "aria-label": `Comment on ${c.id}`, placeholder: "comment" });
  const msg = h("span", { role: "status" });
  const send = (decision) => async () => {
    try {
      await api("POST", `/changes/${encodeURIComponent(c.id)}/approvals`, { decision, comment: comment.value });
      announce(`${c.id}: ${decision}d`);
      reload();
    } catch (err) {
      set(msg, problem(err, "The decision"));
    }
  };
  return h("div", {}, comment, " ",
    h("button", { type: "button", "data-action": "approve", "aria-label": `Approve ${c.id}`, onclick: send("approve") }, "Approve"), " ",
    h("button", { type: "button", class: "danger", "data-action": "reject", "aria-label": `Reject ${c.id}`, onclick: send("reject") }, "Reject"), msg);
}

// loadViolations sums the held plan violations by source and field (the
// quarantine's entries do not show the event's payload).
async function loadViolations(el) {
  busy(el, "the violations");
  let items;
  try {
    items = await all("/quarantine?code=plan_violation&status=held");
  } catch (err) {
    set(el, problem(err, "Tracking-plan violations"));
    return;
  }
  if (!items.length) { set(el, h("p", { class: "muted" }, "No event is held for breaking a tracking plan.")); return; }
  const groups = new Map();
  for (const q of items) {
    const k = [q.sourceId || "–", q.field || "–"].join("\u0000");
    const g = groups.get(k) || { n: 0, last: "", message: q.message };
    g.n++;
    if (String(q.receivedAt) > g.last) { g.last = String(q.receivedAt); g.message = q.message; }
    groups.set(k, g);
  }
  set(el, h("p", {}, `${items.length} ${items.length === 1 ? "event" : "events"} held for breaking a tracking plan; replay them below once the plan or the sender is fixed.`),
    h("table", { id: "violations-table" },
      h("thead", {}, h("tr", {}, ["Source", "Field", "Held", "Latest", "Latest message"].map((c, i) => h("th", { class: i === 2 ? "num" : null }, c)))),
      h("tbody", {}, [...groups].sort((a, b) => b[1].n - a[1].n).map(([k, g]) => {
        const [src, field] = k.split("\u0000");
        return h("tr", { "data-violation": field }, h("td", { class: "mono" }, src), h("td", { class: "mono" }, field),
          h("td", { class: "num" }, fmt.int(g.n)), h("td", {}, fmt.time(g.last)), h("td", {}, g.message));
      }))));
}


async function loadQuarantine(el) {
  busy(el, "the quarantine");
  let items;
  try {
    items = await all("/quarantine");
  } catch (err) {
    set(el, problem(err, "The quarantine"));
    return;
  }
  if (!items.length) {
    set(el, h("p", { class: "muted" }, "Nothing is held."));
    return;
  }
  const replay = session.can("quarantine:replay");
  const boxes = [];
  const msg = h("div", { role: "status" });
  set(el, 
    h("table", { id: "quarantine-table" },
      h("thead", {}, h("tr", {}, replay ? h("th", {}, h("span", { class: "sr-only" }, "Select")) : null,
        ["Received", "Source", "Reason", "Field", "Status"].map((c) => h("th", {}, c)))),
      h("tbody", {}, items.map((q) => {
        const box = q.status === "held" || q.status === "Held" ? h("input", { type: "checkbox", value: q.id, "aria-label": `Select ${q.id}` }) : null;
        if (box) boxes.push(box);
        return h("tr", { "data-code": q.code }, replay ? h("td", {}, box) : null, h("td", { class: "mono" }, fmt.time(q.receivedAt)), h("td", { class: "mono" }, q.sourceId || "–"),
          h("td", {}, h("code", {}, q.code), " ", q.message), h("td", { class: "mono" }, q.field || "–"), h("td", {}, q.status));
      }))),
    replay ? h("p", {}, h("button", {
      type: "button", id: "replay",
      onclick: async () => {
        const ids = boxes.filter((b) => b.checked).map((b) => b.value);
        if (!ids.length) { set(msg, "Select the entries to replay first."); return; }
        try {
          const res = await api("POST", "/quarantine/replay", { ids });
          const by = {};
          for (const r of res.results || res.items || []) by[r.status] = (by[r.status] || 0) + 1;
          set(msg, "Replay: " + Object.entries(by).map(([k, v]) => `${v} ${k}`).join(", "));
          setTimeout(() => loadQuarantine(el), 1500);
        } catch (err) {
          set(msg, problem(err, "The replay"));
        }
      },
    }, "Replay selected")) : h("p", { class: "muted" }, `Replaying is for roles with quarantine:replay; your role is ${session.me.role}.`),
    msg);
}

function importsForm(el) {
  const id = h("input", { id: "i-id", size: 28, required: true });
  const out = h("div", {});
  set(el, h("form", {
    class: "inline",
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const st = await api("GET", "/imports/" + encodeURIComponent(id.value.trim()));
        set(out, h("dl", { class: "kv" }, Object.entries(st).map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v))])));
      } catch (err) {
        set(out, err.status === 404 ? h("div", { class: "notice" }, "No such import.") : problem(err, "The import"));
      }
    },
  }, h("label", {}, "Import id", id), h("button", { type: "submit" }, "Show report")),
  h("p", { class: "muted" }, "Imports are started with POST /api/v1/imports (see docs/import.md); their reports are shown here by id."), out);
}
