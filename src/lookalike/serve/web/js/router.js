// Hash routes: #/library, #/photo/<id>, #/search, #/people, #/people/<id>, #/clusters/<id>,
// #/duplicates, #/add (a query after "?" for a view's options, e.g. #/library?folder=/x).
// Each view draws itself into <main> and may return a function that undoes what it set up
// beyond <main> (key handlers).

import { $, guard } from "./dom.js";

const routes = [];
let leave = null;

// ``pattern``: a RegExp over the path (after "#"); ``view(match, query, main)``.
export function route(pattern, section, view) {
  routes.push({ pattern, section, view });
}

export const go = (hash) => {
  if (location.hash === hash) show();
  else location.hash = hash;
};

export function current() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  return { path: path || "/library", query: new URLSearchParams(query) };
}

export async function show() {
  const { path, query } = current();
  const found = routes.find((r) => r.pattern.test(path)) || routes[0];
  const match = path.match(found.pattern) || [];
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.section === found.section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (leave) leave();
  leave = null;
  // Each view draws into an element of its own: one that is still loading when the next is
  // shown draws into a detached element, never over the new view.
  const main = document.createElement("div");
  $("#view").replaceChildren(main);
  $("#view").dataset.view = found.section;
  const left = await guard(() => found.view(match, query, main))();
  if (typeof left === "function") leave = left;
}

export function start() {
  window.addEventListener("hashchange", show);
  show();
}
