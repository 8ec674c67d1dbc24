// The dashboard's entry: sign-in, navigation and the hash router
// (#/journey, #/customer, #/customer/<profile id>, #/funnels,
// #/attribution, #/experiments, #/experiments/<id>, #/stack, #/privacy, #/operations).
import { set, session, api, h, problem, forbiddenNote, APIError } from "./core.js";
import { journeyPage } from "./journey.js";
import { customerPage } from "./customer.js";
import { stackPage } from "./stack.js";
import { operationsPage } from "./operations.js";
import { funnelsPage } from "./funnels.js";
import { attributionPage } from "./attribution.js";
import { experimentsPage } from "./experiments.js";
import { privacyPage } from "./privacy.js";
import { disposeCharts } from "./charts.js";

// The pages, with the permission a page needs to be offered (the API
// checks again on every call).
const PAGES = [
  { path: "journey", title: "Journey", need: "analytics:read", render: journeyPage },
  { path: "customer", title: "Customers", need: "profiles:read", render: customerPage },
  { path: "funnels", title: "Funnels", need: "analytics:read", render: funnelsPage },
  { path: "attribution", title: "Attribution", need: "analytics:read", render: attributionPage },
  { path: "experiments", title: "Experiments", need: "experiments:read", render: experimentsPage },
  { path: "stack", title: "Stack", need: "catalog:read", render: stackPage },
  { path: "privacy", title: "Privacy", need: ["privacy:requests", "consent:rates"], render: privacyPage },
  { path: "operations", title: "Operations", need: "", render: operationsPage },
];

const main = document.getElementById("main");
let stopPage = null; // a page's clean-up (timers), called when leaving it

async function loadMe() {
  if (session.me || !session.token()) return session.me;
  try {
    session.me = await api("GET", "/me");
  } catch (err) {
    if (err instanceof APIError && err.status === 401) session.clear();
    else throw err;
  }
  return session.me;
}

function renderHeader() {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (!session.me) {
    nav.hidden = true;
    who.hidden = true;
    return;
  }
  const current = (location.hash.replace(/^#\/?/, "").split(/[/?]/)[0]) || "";
  set(nav, ...PAGES.filter((p) => !p.need || session.can(p.need)).map((p) =>
    h("a", { href: "#/" + p.path, "aria-current": current === p.path ? "page" : null }, p.title)));
  nav.hidden = false;
  set(who, 
    h("span", { id: "who-name" }, session.me.name || session.me.id),
    h("span", { class: "role", id: "who-role", title: "your role" }, session.me.role),
    h("button", { class: "secondary", id: "signout", type: "button", onclick: signOut }, "Sign out"));
  who.hidden = false;
}

function signOut() {
  session.clear();
  location.hash = "#/signin";
}

function signInPage(el) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  const msg = h("div", { "aria-live": "assertive" });
  const form = h("form", {
    class: "panel signin", id: "signin",
    onsubmit: async (ev) => {
      ev.preventDefault();
      set(msg, );
      session.set(input.value.trim());
      session.me = null;
      try {
        if (!(await loadMe())) {
          set(msg, h("div", { class: "error", role: "alert" }, "That token is not valid: it belongs to no user."));
          return;
        }
      } catch (err) {
        session.clear();
        set(msg, problem(err, "Signing in"));
        return;
      }
      location.hash = "#/" + firstPage();
    },
  },
  h("h1", {}, "Sign in"),
  h("label", { for: "token" }, "Your user token", input),
  h("p", { id: "token-help", class: "muted" },
    "A token of a tandem user (tdm_…), as POST /api/v1/users gave it. It is kept in this tab only (sessionStorage) and sent to this tandem's API; what you see is what your role may see."),
  h("button", { type: "submit" }, "Sign in"), msg);
  set(el, form);
  input.focus();
}

function firstPage() {
  const p = PAGES.find((p) => !p.need || session.can(p.need));
  return p ? p.path : "operations";
}

async function route() {
  if (stopPage) { stopPage(); stopPage = null; }
  disposeCharts();
  const [path, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  try {
    await loadMe();
  } catch (err) {
    set(main, problem(err, "Reaching tandem"));
    return;
  }
  renderHeader();
  if (!session.me) {
    signInPage(main);
    return;
  }
  const page = PAGES.find((p) => p.path === path.split("?")[0]);
  if (!page) {
    location.replace("#/" + firstPage());
    return;
  }
  document.title = page.title + " – tandem dashboard";
  if (page.need && !session.can(page.need)) {
    set(main, h("h1", {}, page.title), forbiddenNote("The " + page.title + " page", page.need));
    return;
  }
  set(main, );
  document.title = page.title + " – tandem dashboard";
  stopPage = page.render(main, rest.map(decodeURIComponent), path) || null;
  main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();
