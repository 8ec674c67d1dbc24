// Privacy: data-subject requests with their status and deadline, filing
// one (privacy:requests), consent rates per purpose (consent:rates), and
// the records of processing (GET /privacy/records, where this tandem has
// them).
import { set, api, h, problem, panel, fmt, session, busy, forbiddenNote, announce, APIError, apiAccess } from "./core.js";
import { chart, axis, GREEN, RED, INK } from "./charts.js";

const DAY = 86400000;

export function privacyPage(el) {
  const requests = h("div", { id: "requests" });
  const file = h("div", { id: "file-request" });
  const rates = h("div", { id: "consent-rates" });
  const records = h("section", { class: "panel", id: "records-panel", "aria-labelledby": "h-records", hidden: true },
    h("h2", { id: "h-records" }, "Records of processing"), h("div", { id: "records" }));
  el.append(h("h1", {}, "Privacy"),
    panel("Data-subject requests", requests),
    h("div", { class: "grid2" }, panel("File a request", file), panel("Consent rates per purpose", rates)),
    records);
  if (session.can("privacy:requests")) {
    loadRequests(requests);
    fileForm(file, () => loadRequests(requests));
  } else {
    set(requests, forbiddenNote("Data-subject requests", "privacy:requests"));
    set(file, forbiddenNote("Filing a request", "privacy:requests"));
  }
  if (session.can("consent:rates")) loadRates(rates);
  else set(rates, forbiddenNote("Consent rates", "consent:rates"));
  loadRecords(records);
}

async function loadRequests(el) {
  busy(el, "the requests");
  const items = [];
  try {
    let next = "";
    do {
      const res = await api("GET", "/privacy/requests?limit=200" + (next ? "&cursor=" + encodeURIComponent(next) : ""));
      items.push(...(res.items || []));
      next = res.next || "";
    } while (next && items.length < 1000);
  } catch (err) {
    set(el, problem(err, "The requests"));
    return;
  }
  if (!items.length) { set(el, h("p", { class: "muted" }, "No request has been filed.")); return; }
  const now = Date.now();
  const open = items.filter((r) => r.status === "received" || r.status === "in_progress");
  const late = open.filter((r) => new Date(r.deadline) < now);
  set(el,
    h("p", {}, `${items.length} ${items.length === 1 ? "request" : "requests"}, ${open.length} open`, late.length ? h("strong", { class: "late" }, `, ${late.length} past their deadline`) : null, "."),
    h("div", { class: "scroll" }, h("table", { id: "requests-table" },
      h("caption", { class: "sr-only" }, "Data-subject requests, newest first"),
      h("thead", {}, h("tr", {}, ["Request", "Type", "Person", "Status", "Filed", "Deadline", "Completed", "Steps"].map((c) => h("th", {}, c)))),
      h("tbody", {}, items.map((r) => {
        const isOpen = r.status === "received" || r.status === "in_progress";
        const left = Math.ceil((new Date(r.deadline) - now) / DAY);
        return h("tr", { "data-request": r.id, "data-type": r.type },
          h("td", { class: "mono" }, r.id),
          h("td", {}, r.type),
          h("td", {}, h("span", { class: "muted" }, (r.identity || {}).type, " "),
            (r.identity || {}).value || h("span", { class: "muted", title: "the person is erased: the request keeps the identifier's keyed hash only" }, "(erased)"),
            r.profileId ? [h("br"), h("a", { href: "#/customer/" + encodeURIComponent(r.profileId), class: "mono" }, r.profileId)] : null),
          h("td", {}, h("span", { class: "badge " + statusClass(r.status), "data-status": r.status }, r.status.replace("_", " ")),
            failedSteps(r)),
          h("td", {}, fmt.time(r.createdAt)),
          h("td", { class: isOpen && left < 0 ? "late" : null }, fmt.time(r.deadline), isOpen ? h("br") : null,
            isOpen ? (left < 0 ? `${-left} days late` : `${left} days left`) : null),
          h("td", {}, r.completedAt ? fmt.time(r.completedAt) : "–"),
          h("td", {}, (r.steps || []).length ? h("details", {}, h("summary", {}, `${r.steps.length} steps`),
            h("ul", {}, r.steps.map((s) => h("li", {}, `${s.store || s.destination || "?"}: ${s.status}`, s.detail ? ` (${s.detail})` : "", " ", h("span", { class: "muted" }, fmt.time(s.at))))))
            : "–"));
      })))));
}

// failedSteps names the steps that failed, under a failed request's status.
function failedSteps(r) {
  const bad = (r.steps || []).filter((s) => s.status === "failed");
  if (!bad.length) return null;
  return h("div", { class: "muted small" }, bad.map((s) => `${s.store || s.destination || "?"}${s.detail ? ": " + s.detail : ""}`).join("; "));
}

function statusClass(s) {
  return { completed: "approved", failed: "rejected", received: "pending", in_progress: "pending" }[s] || "";
}

function fileForm(el, reload) {
  const type = h("select", { id: "dsr-type", required: true },
    [["erasure", "Erasure (Art. 17)"], ["access", "Access (Art. 15)"], ["portability", "Portability (Art. 20)"], ["objection", "Objection (Art. 21)"]]
      .map(([v, l]) => h("option", { value: v }, l)));
  const itype = h("select", { id: "dsr-identity-type" }, ["email", "user_id", "anonymous_id", "phone"].map((v) => h("option", { value: v }, v)));
  const ivalue = h("input", { id: "dsr-identity", required: true, size: 28, autocomplete: "off" });
  const method = h("input", { id: "dsr-method", required: true, size: 28, placeholder: "e.g. e-mail round trip from the address" });
  const msg = h("div", { id: "dsr-result", role: "status" });
  set(el, h("form", {
    id: "dsr-form",
    onsubmit: async (e) => {
      e.preventDefault();
      set(msg, );
      try {
        const res = await api("POST", "/privacy/requests", {
          type: type.value, identity: { type: itype.value, value: ivalue.value.trim() }, verification: { method: method.value.trim() },
        });
        set(msg, h("div", { class: "notice" }, `Filed ${res.id}: ${res.status.replace("_", " ")}.`));
        announce(`Request ${res.id} filed`);
        ivalue.value = "";
        reload();
      } catch (err) {
        set(msg, problem(err, "Filing the request"));
      }
    },
  },
  h("div", { class: "inline" }, h("label", {}, "Request", type), h("label", {}, "Identifier type", itype), h("label", {}, "Identifier", ivalue)),
  h("div", { class: "inline" }, h("label", {}, "How the person's identity was verified", method), h("button", { type: "submit" }, "File request")),
  h("p", { class: "muted" }, "An erasure deletes the person's events, profile and consent everywhere tandem keeps them; an objection refuses the marketing purposes at once; access and portability prepare an export (docs/privacy.md). The deadline is 30 days."),
  msg));
}

async function loadRates(el) {
  busy(el, "the consent rates");
  let res;
  try {
    res = await api("GET", "/privacy/consent");
  } catch (err) {
    set(el, problem(err, "Consent rates"));
    return;
  }
  const ps = res.purposes || [];
  if (!ps.length) { set(el, h("p", { class: "muted" }, "No purpose is configured or decided yet.")); return; }
  const label = "Consent per purpose: " + ps.map((p) => `${p.purpose} ${p.granted} granted, ${p.refused} refused`).join("; ");
  set(el,
    chart({
      grid: { left: 100, right: 20, top: 30, bottom: 25 },
      legend: { top: 0, textStyle: { color: INK } },
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      xAxis: axis({ type: "value", minInterval: 1 }),
      yAxis: axis({ type: "category", inverse: true, data: ps.map((p) => p.purpose) }),
      series: [
        { name: "granted", type: "bar", stack: "n", data: ps.map((p) => p.granted), itemStyle: { color: GREEN }, barMaxWidth: 26 },
        { name: "refused", type: "bar", stack: "n", data: ps.map((p) => p.refused), itemStyle: { color: RED }, barMaxWidth: 26 },
      ],
    }, label, 60 + 36 * ps.length),
    h("table", { id: "rates-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Purpose"), h("th", { class: "num" }, "Granted"), h("th", { class: "num" }, "Refused"), h("th", { class: "num" }, "Rate"), h("th", {}, "Default when undecided"))),
      h("tbody", {}, ps.map((p) => h("tr", { "data-purpose": p.purpose }, h("td", {}, p.purpose), h("td", { class: "num" }, fmt.int(p.granted)),
        h("td", { class: "num" }, fmt.int(p.refused)), h("td", { class: "num" }, fmt.pct(p.share)),
        h("td", {}, p.default === null || p.default === undefined ? "none (refused)" : p.default ? "granted" : "refused"))))),
    h("p", { class: "muted" }, "Counted per identifier (user id or anonymous id) by its latest decision; people who never decided get the default."));
}

// loadRecords shows the records of processing (Art. 30) where the API has
// them; the section stays hidden where the API does not describe GET
// /privacy/records, or answers it 404.
async function loadRecords(section) {
  const el = section.querySelector("#records");
  const access = await apiAccess("GET", "/privacy/records");
  if (access.state === "missing") { section.hidden = true; return; }
  if (access.state === "forbidden") { section.hidden = false; set(el, forbiddenNote("Records of processing", access.need)); return; }
  let res;
  try {
    res = await api("GET", "/privacy/records");
  } catch (err) {
    if (err instanceof APIError && (err.status === 404 || err.status === 405)) { section.hidden = true; return; }
    section.hidden = false;
    set(el, problem(err, "Records of processing"));
    return;
  }
  section.hidden = false;
  const items = Array.isArray(res) ? res : res.items || res.records || [];
  if (!items.length) { set(el, h("p", { class: "muted" }, "No record of processing.")); return; }
  const cols = [...new Set(items.flatMap((r) => Object.keys(r)))];
  const show = (v) => v === null || v === undefined ? "–" : Array.isArray(v) ? v.map(show).join(", ") : typeof v === "object" ? Object.entries(v).map(([k, x]) => `${k}: ${show(x)}`).join("; ") : String(v);
  set(el, h("div", { class: "scroll" }, h("table", { id: "records-table" },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
    h("tbody", {}, items.map((r) => h("tr", {}, cols.map((c) => h("td", {}, show(r[c])))))))));
}
