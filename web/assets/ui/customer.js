// Customer view: look a profile up by any identifier
// (GET /profiles/lookup), then its identifiers, traits, consent,
// audiences, its whole timeline (GET /profiles/{id}/events) and why it is
// one person (GET /profiles/{id}/explain), with unmerge for roles allowed
// to (profiles:unmerge).
import { set, api, h, problem, panel, fmt, session, busy, announce, deptColour } from "./core.js";

export function customerPage(el, args) {
  const input = h("input", { id: "c-identifier", size: 36, placeholder: "email:jo@example.org", "aria-describedby": "c-help", required: true });
  const msg = h("div", {});
  const form = h("form", {
    class: "inline", id: "c-search", role: "search",
    onsubmit: async (e) => {
      e.preventDefault();
      set(msg, );
      let q = input.value.trim();
      if (!q.includes(":")) q = (q.includes("@") ? "email:" : "user_id:") + q;
      try {
        const p = await api("GET", "/profiles/lookup?identifier=" + encodeURIComponent(q));
        location.hash = "#/customer/" + encodeURIComponent(p.id);
      } catch (err) {
        set(msg, err.status === 404 ? h("div", { class: "notice", role: "status" }, `No profile holds ${q}.`) : problem(err, "The search"));
      }
    },
  },
  h("label", { for: "c-identifier" }, "Identifier", input),
  h("button", { type: "submit" }, "Find"),
  h("span", { id: "c-help", class: "muted" }, "TYPE:VALUE, e.g. email:jo@example.org, user_id:42, phone:+4915…; a bare e-mail address works too."));
  const out = h("div", { id: "profile" });
  el.append(h("h1", {}, "Customer view"), form, msg, out);
  if (args[0]) showProfile(out, args[0]);
  else input.focus();
}

async function showProfile(out, id) {
  busy(out, "the profile");
  let p;
  try {
    p = await api("GET", "/profiles/" + encodeURIComponent(id));
  } catch (err) {
    set(out, err.status === 404 ? h("div", { class: "notice" }, `No profile ${id}.`) : problem(err, "The profile"));
    return;
  }
  const timeline = h("div", { id: "timeline" });
  const explain = h("div", { id: "explain" });
  const traits = Object.entries(p.traits || {});
  set(out, 
    h("h2", { id: "profile-id", class: "mono" }, p.id),
    p.redirectedFrom ? h("p", { class: "notice" }, `${p.redirectedFrom} was merged into this profile.`) : null,
    h("div", { class: "grid2" },
      panel("Identifiers", h("ul", { id: "identifiers" }, (p.identifiers || []).map((x) => h("li", {}, h("span", { class: "muted" }, x.type + ": "), h("span", { class: "mono" }, x.value)))),
        h("p", { class: "muted" }, `First seen ${fmt.time(p.firstSeen)}, last seen ${fmt.time(p.lastSeen)}.`)),
      panel("Traits", traits.length ? h("dl", { class: "kv", id: "traits" }, traits.map(([k, v]) => [h("dt", {}, k), h("dd", {}, show(v))])) : h("p", { class: "muted" }, "No traits."),
        h("h3", {}, "Consent"), kv(p.consent, "No consent recorded."),
        h("h3", {}, "Audiences"), (p.audiences || []).length ? h("ul", {}, p.audiences.map((a) => h("li", {}, a))) : h("p", { class: "muted" }, "In no audience."))),
    panel("Timeline", timeline),
    panel("Why is this one person?", explain));
  loadTimeline(timeline, p.id);
  loadExplain(explain, p.id);
  announce("Profile " + p.id + " loaded");
}

function show(v) {
  if (v === null || v === undefined) return "–";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function kv(obj, empty) {
  const e = Object.entries(obj || {});
  return e.length ? h("dl", { class: "kv" }, e.map(([k, v]) => [h("dt", {}, k), h("dd", {}, show(v))])) : h("p", { class: "muted" }, empty);
}

// touchpoint finds where an event happened: the department and channel
// when its properties or context name them, else what the context tells
// (a browser page, an app, a server library).
function touchpoint(e) {
  const p = e.properties || {}, c = e.context || {};
  const dept = p.department || c.department || (c.traits && c.traits.department) || "";
  let channel = p.channel || e.channel || c.channel || "";
  if (!channel) {
    if (c.app || (c.device && c.device.type && /ios|android/i.test(c.device.type))) channel = "app";
    else if (c.page) channel = "web";
    else if (c.library && c.library.name) channel = c.library.name;
  }
  return { dept, channel };
}

async function loadTimeline(el, id) {
  busy(el, "the timeline");
  const rows = [];
  let next = "";
  try {
    do {
      const res = await api("GET", `/profiles/${encodeURIComponent(id)}/events?limit=200` + (next ? "&cursor=" + encodeURIComponent(next) : ""));
      rows.push(...res.items);
      next = res.next || "";
    } while (next && rows.length < 1000);
  } catch (err) {
    set(el, problem(err, "The timeline"));
    return;
  }
  if (!rows.length) {
    set(el, h("p", { class: "muted" }, "No events."));
    return;
  }
  set(el, h("table", { id: "timeline-table" },
    h("caption", { class: "sr-only" }, "The profile's events, newest first"),
    h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "Type"), h("th", {}, "Event"), h("th", {}, "Channel"), h("th", {}, "Department"), h("th", {}, "Source"))),
    h("tbody", {}, rows.map((e) => {
      const t = touchpoint(e);
      return h("tr", {},
        h("td", { class: "mono" }, fmt.time(e.timestamp)), h("td", {}, e.type),
        h("td", {}, e.event || e.name || (e.type === "identify" ? "identify" : "–")),
        h("td", {}, t.channel || "–"),
        h("td", {}, t.dept ? [h("span", { class: "swatch", style: { background: deptColour(t.dept) } }), t.dept] : "–"),
        h("td", { class: "mono" }, e.sourceId || "–"));
    }))),
  next ? h("p", { class: "muted" }, "The first 1000 events are shown.") : null);
}

async function loadExplain(el, id) {
  busy(el, "the explanation");
  let x;
  try {
    x = await api("GET", `/profiles/${encodeURIComponent(id)}/explain`);
  } catch (err) {
    set(el, problem(err, "The explanation"));
    return;
  }
  const canUnmerge = session.can("profiles:unmerge");
  const steps = x.steps || [];
  set(el, 
    h("p", { id: "explain-summary" }, x.summary),
    steps.length ? h("ol", { class: "steps" }, steps.map((s) => h("li", {},
      h("span", {}, s.text), " ", h("span", { class: "muted" }, `(${s.rule}, ${fmt.time(s.at)})`),
      s.mergeId && canUnmerge ? unmergeForm(id, s) : null))) : null,
    !canUnmerge && steps.some((s) => s.mergeId) ? h("p", { class: "muted" }, `Unmerging is for roles with profiles:unmerge; your role is ${session.me.role}.`) : null,
    (x.decisions || []).length ? [h("h3", {}, "Manual decisions"), h("ul", {}, x.decisions.map((d) => h("li", {}, `${d.kind}: ${d.a}${d.b ? " / " + d.b : ""}${d.reason ? " — " + d.reason : ""}`)))] : null);
}

function unmergeForm(id, step) {
  const reason = h("input", { size: 30, required: true, "aria-label": "Reason for the unmerge" });
  const msg = h("span", { role: "status" });
  return h("form", {
    class: "inline unmerge",
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const res = await api("POST", `/profiles/${encodeURIComponent(id)}/unmerge`, { mergeId: step.mergeId, reason: reason.value });
        set(msg, "Unmerged into ", ...(res.profiles || []).map((p, k) => [k ? ", " : "", h("a", { href: "#/customer/" + encodeURIComponent(p.id) }, p.id)]));
      } catch (err) {
        set(msg, problem(err, "The unmerge"));
      }
    },
  }, h("label", {}, "Reason", reason), h("button", { type: "submit", class: "danger" }, "Unmerge"), msg);
}
