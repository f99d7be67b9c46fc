// The dashboard shell: login, the store picker and the page router (#now, #footfall, ...).

import { ApiError, getJson, postJson, session } from "./api.js";
import { renderEngagement } from "./engagement.js";
import { renderExports } from "./exports.js";
import { renderFootfall } from "./footfall.js";
import { renderNow } from "./now.js";
import { el, empty } from "./ui.js";

// Readable on a tablet at arm's length.
window.Chart.defaults.font.size = 15;
window.Chart.defaults.color = "#1a1a1a";

const PAGES = { now: renderNow, footfall: renderFootfall, engagement: renderEngagement, exports: renderExports };
const $ = (id) => document.getElementById(id);
let current = null;

// The stores this login may see: a staff member's own (GET /v1/auth/me); for the administrator,
// every store of the stores API.
async function stores() {
  const me = await getJson("/v1/auth/me");
  if (me.store_ids) return me.store_ids;
  const listed = await getJson("/v1/stores", { limit: 1000 });
  return listed.items.map((store) => store.store_id);
}

function showLogin(message = "") {
  session.token = null;
  $("nav").hidden = true;
  $("session").hidden = true;
  $("page").replaceChildren();
  $("login").hidden = false;
  $("login-error").textContent = message;
}

async function showPage() {
  if (current) current.abort();
  current = new AbortController();
  const name = (window.location.hash || "#now").slice(1);
  const render = PAGES[name] || renderNow;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const store = session.store;
  // A fresh container per visit: a page still loading when another is chosen writes into a
  // detached one, never over the page now shown.
  const root = el("div");
  $("page").replaceChildren(root);
  if (!store) {
    root.replaceChildren(empty("No store to show.",
      "This login sees no store yet: ask an administrator to give you access to one."));
    return;
  }
  try {
    await render(root, store, current.signal);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) showLogin("Your session has ended: please log in again.");
    else root.replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
  }
}

async function start() {
  let ids;
  try {
    ids = await stores();
  } catch (error) {
    showLogin(error instanceof ApiError && error.status === 401 ? "This token is not valid (any more): log in again." : error.message);
    return;
  }
  $("login").hidden = true;
  $("nav").hidden = false;
  $("session").hidden = false;
  const select = $("store-select");
  select.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
  if (!ids.includes(session.store) && ids.length) session.store = ids[0];
  if (session.store) select.value = session.store;
  await showPage();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const answer = await postJson("/v1/auth/login", { email: form.get("email"), password: form.get("password") });
    session.token = answer.access_token ?? answer.token;
    await start();
  } catch (error) {
    showLogin(error instanceof ApiError && error.status === 401 ? "Wrong e-mail or password." : error.message);
  }
});

$("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  session.token = new FormData(event.target).get("token");
  await start();
});

$("logout").addEventListener("click", () => { session.clear(); showLogin(); });
$("store-select").addEventListener("change", (event) => { session.store = event.target.value; showPage(); });
window.addEventListener("hashchange", showPage);

if (session.token) start();
else showLogin();
