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
  const still = newest("library");
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
  const [folders] = await Promise.all([getJson("/v1/folders"), grid.load()]);
  if (!still()) return grid.stop;
  for (const f of folders.folders) {
    choose.append(el("option", { value: f.path }, `${f.path} (${f.image_count})`));
  }
  choose.value = folder;
  if (folder && choose.value !== folder) {
    choose.append(el("option", { value: folder }, folder));
    choose.value = folder;
  }
  if (!list.children.length) {
    status.textContent = folder
      ? `No photos in ${folder}.`
      : "No photos yet: add some (Add photos), or index a folder.";
  }
  markFirstScreen(list);
  return grid.stop;
}

// For the benchmark: the time from navigation until the first screen of thumbnails has
// been drawn (every tile in the window decoded), on <body data-first-screen-ms>.
function markFirstScreen(list) {
  const visible = [...list.querySelectorAll("img")].filter(
    (img) => img.getBoundingClientRect().top < window.innerHeight,
  );
  const done = () => {
    if (visible.every((img) => img.complete && img.naturalWidth > 0)) {
      document.body.dataset.firstScreenMs = String(Math.round(performance.now()));
      return true;
    }
    return false;
  };
  if (done()) return;
  for (const img of visible) img.addEventListener("load", done);
}
