// Stack: the sources (GET /sources) with approve/reject for roles that
// may decide (approvals:decide), cost by owning department, the quarantine
// (GET /quarantine) with replay (quarantine:replay), and an import's
// report (GET /imports/{id}; there is no list of imports in the API).
import { set, api, h, problem, panel, fmt, session, busy, forbiddenNote, announce } from "./core.js";

export function stackPage(el) {
  const sources = h("div", { id: "sources" });
  const cost = h("div", { id: "cost" });
  const quarantine = h("div", { id: "quarantine" });
  const imports = h("div", { id: "imports" });
  el.append(h("h1", {}, "Stack and governance"),
    panel("Sources", sources),
    h("div", { class: "grid2" }, panel("Monthly cost by department", cost), panel("Imports", imports)),
    panel("Quarantine", quarantine));
  loadSources(sources, cost);
  if (session.can("quarantine:read")) loadQuarantine(quarantine);
  else set(quarantine, forbiddenNote("The quarantine", "quarantine:read"));
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

async function loadSources(el, costEl) {
  busy(el, "the sources");
  let items;
  try {
    items = await all("/sources");
  } catch (err) {
    set(el, problem(err, "The sources"));
    set(costEl, );
    return;
  }
  const decide = session.can("approvals:decide");
  const pending = items.filter((s) => s.approval === "pending").length;
  set(el, 
    h("p", {}, `${items.length} sources, ${pending} waiting for approval.`,
      !decide && pending ? h("span", { class: "muted" }, ` Approving is for roles with approvals:decide; your role is ${session.me.role}.`) : null),
    h("table", { id: "sources-table" },
      h("thead", {}, h("tr", {}, ["Name", "Kind", "Owner", "Purpose", "Data", "Cost / month", "Approval", decide ? "Decision" : null].filter(Boolean).map((c) => h("th", { class: c === "Cost / month" ? "num" : null }, c)))),
      h("tbody", {}, items.map((s) => h("tr", { "data-source": s.name },
        h("td", {}, s.name, h("br"), h("span", { class: "muted mono" }, s.id)), h("td", {}, s.kind), h("td", {}, s.owner), h("td", {}, s.purpose || "–"),
        h("td", {}, (s.dataCategories || []).join(", ") || "–"), h("td", { class: "num" }, fmt.money(s.monthlyCost)),
        h("td", {}, h("span", { class: "badge " + s.approval, "data-approval": s.approval }, s.approval)),
        decide ? h("td", {}, s.approval === "approved" ? null : decisionForm(s, () => loadSources(el, costEl))) : null)))));
  const byOwner = new Map();
  for (const s of items) byOwner.set(s.owner || "(none)", (byOwner.get(s.owner || "(none)") || 0) + (s.monthlyCost || 0));
  set(costEl, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Department"), h("th", { class: "num" }, "Cost / month"))),
    h("tbody", {}, [...byOwner].sort((a, b) => b[1] - a[1]).map(([o, c]) => h("tr", {}, h("td", {}, o), h("td", { class: "num" }, fmt.money(c)))))));
}

function decisionForm(s, reload) {
  const comment = h("input", { size: 16, "aria-label": `Comment on ${s.name}`, placeholder: "comment" });
  const msg = h("span", { role: "status" });
  const send = (decision) => async () => {
    try {
      await api("POST", `/sources/${encodeURIComponent(s.id)}/approvals`, { decision, comment: comment.value });
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
        return h("tr", {}, replay ? h("td", {}, box) : null, h("td", { class: "mono" }, fmt.time(q.receivedAt)), h("td", { class: "mono" }, q.sourceId || "–"),
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
