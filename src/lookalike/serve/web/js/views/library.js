// The library: the collection's thumbnails, newest first, a page at a time (more as the
// grid is scrolled), with its count and a filter by folder.

import { getJson } from "../api.js";
import { el, newest, plural } from "../dom.js";
import { go } from "../router.js";
import { pagedGrid } from "../tiles.js";

const PAGE = 60;

export async function library(_match, query, main) {
  const folder = query.get("folder") || "";
  // Photos per page: ?limit=N (1 to 200) for another page size than the default.
  const limit = Math.min(Math.max(Number(query.get("limit")) || PAGE, 1), 200);
  const still = newest("library", main);
  const title = el("h2", { id: "library-title", tabIndex: -1 }, "Library");
  const choose = el("select", { id: "library-folder" }, el("option", { value: "" }, "All folders"));
  const status = el("p", { id: "library-status", role: "status" });
  const list = el("ol", { id: "library", className: "grid" });
  list.setAttribute("aria-label", "Photos, newest first");
  const more = el("button", { type: "button", id: "library-more", hidden: true }, "More photos");
  main.append(
    el("div", { className: "heading" }, title,
      el("label", { className: "inline" }, "Folder ", choose)),
    status, list, more,
  );
  choose.addEventListener("change", () =>
    go(choose.value ? `#/library?folder=${encodeURIComponent(choose.value)}` : "#/library"),
  );
  const where = folder ? `&folder=${encodeURIComponent(folder)}` : "";
  const grid = pagedGrid({
    list,
    status,
    more,
    fetchPage: (offset) =>
      getJson(`/v1/images?order=newest&offset=${offset}&limit=${limit}${where}`),
    describe: (total, shown) => {
      const count = plural(total, "photo");
      const inside = folder ? ` in ${folder}` : "";
      return shown < total ? `${count}${inside}, newest first (${shown} shown)` : `${count}${inside}`;
    },
  });
  if (folder) choose.append(el("option", { value: folder }, folder));
  choose.value = folder;
  await grid.load();
  if (!still()) return grid.stop;
  if (!list.children.length) {
    status.textContent = folder
      ? `No photos in ${folder}.`
      : "No photos yet: add some (Add photos), or index a folder.";
  }
  // The folders (a walk over every path) only once the first screen is drawn: they must
  // not hold up its thumbnails.
  markFirstScreen(list, () => listFolders(choose, folder, still));
  return grid.stop;
}

async function listFolders(choose, folder, still) {
  const found = await getJson("/v1/folders");
  if (!still()) return;
  const options = found.folders
    .filter((f) => f.path !== folder)
    .map((f) => el("option", { value: f.path }, `${f.path} (${f.image_count})`));
  choose.append(...options);
  const all = [...choose.options].slice(1).sort((a, b) => a.value.localeCompare(b.value));
  choose.append(...all);
  choose.value = folder;
}

// Once the first screen of thumbnails has been drawn (every tile in the window decoded, or
// some failed): ``then()``, and the time since navigation on <body data-first-screen-ms>
// (for the benchmark).
function markFirstScreen(list, then) {
  const visible = [...list.querySelectorAll("img")].filter(
    (img) => img.getBoundingClientRect().top < window.innerHeight,
  );
  let left = visible.length;
  const one = () => {
    left -= 1;
    if (left !== 0) return;
    if (visible.every((img) => img.naturalWidth > 0)) {
      document.body.dataset.firstScreenMs = String(Math.round(performance.now()));
    }
    then();
  };
  if (!left) return then();
  for (const img of visible) {
    img.addEventListener("load", one, { once: true });
    img.addEventListener("error", one, { once: true });
    // A thumbnail that cannot be fetched gets no src at all: counted when marked missing.
    new MutationObserver((_, watcher) => {
      if (img.classList.contains("missing")) {
        watcher.disconnect();
        one();
      }
    }).observe(img, { attributes: true, attributeFilter: ["class"] });
  }
}
