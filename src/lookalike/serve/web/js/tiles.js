// Grids of photos that lead to the photo view, and the order the photo view's arrow keys
// follow: that of the grid the photo was opened from.

import { getJson, thumbUrl } from "./api.js";
import { basename, el, image } from "./dom.js";

// The photos of the grid last shown: ids in order, and how to fetch more of them.
let sequence = { ids: [], more: null, from: "#/library" };

export function browsing(ids, more = null) {
  // A photo opened from another photo (a similar one) goes back to the library.
  const here = location.hash || "#/library";
  sequence = { ids, more, from: here.startsWith("#/photo/") ? "#/library" : here };
}

// A photo opened on its own (a link, a reload, a similar photo): its neighbours are the
// library's, newest first, asked for one at a time.
export function browsingLibrary(id) {
  sequence = { ids: [id], more: null, from: "#/library", library: true };
}

export const browsed = () => sequence;

// The library's photo next to ``id``: older (+1, newest first) or newer (-1); null for none.
async function libraryNeighbour(id, step) {
  const order = step > 0 ? "newest" : "oldest";
  const page = await getJson(`/v1/images?order=${order}&after=${id}&limit=1`);
  return page.images.length ? page.images[0].image_id : null;
}

// The photo before (-1) or after (+1) ``id`` in the grid it was opened from; null at an end.
export async function neighbour(id, step) {
  const { ids } = sequence;
  let at = ids.indexOf(id);
  if (at < 0) return null;
  if (at + step >= ids.length && sequence.more) {
    await sequence.more();
    at = ids.indexOf(id);
  }
  let next = ids[at + step];
  if (next === undefined && sequence.library) {
    next = await libraryNeighbour(id, step);
    if (next !== null && step > 0) ids.push(next);
    else if (next !== null) ids.unshift(next);
  }
  return next === undefined ? null : next;
}

export const photoName = (photo) => basename(photo.paths[0] || photo.sha256 || `${photo.image_id}`);

// One tile: the thumbnail (fetched once near the screen), a caption, a link to the photo.
export function photoTile(photo, caption = photoName(photo)) {
  const id = photo.image_id;
  const link = el(
    "a",
    { className: "tile", href: `#/photo/${id}`, title: (photo.paths || []).join("\n") },
    image(thumbUrl(id), photoName(photo), { later: true }),
    el("span", {}, caption),
  );
  const li = el("li", {}, link);
  li.dataset.imageId = id;
  return li;
}

// A paged grid: ``fetchPage(offset)`` answers {total, images}; draws into ``list``, says the
// count in ``status``, and fetches the next page when ``sentinel`` comes near the screen or
// the "More" button is used.
export function pagedGrid({ list, status, more, fetchPage, describe }) {
  const ids = [];
  let total = null;
  let loading = null;
  let watcher = null;
  let stopped = false;
  const load = () => {
    if (loading) return loading;
    if (total !== null && ids.length >= total) return Promise.resolve();
    loading = (async () => {
      try {
        const page = await fetchPage(ids.length);
        total = page.total;
        for (const photo of page.images) ids.push(photo.image_id);
        list.append(...page.images.map((p) => photoTile(p)));
        status.textContent = describe(total, ids.length);
        more.hidden = ids.length >= total;
      } finally {
        loading = null;
      }
      // Observed anew: its first report says whether it is still near the screen (a page
      // that did not push it away), which a change of state alone would never report.
      watcher.unobserve(more);
      if (!stopped) watcher.observe(more);
    })();
    return loading;
  };
  browsing(ids, load);
  more.addEventListener("click", () => load());
  watcher = new IntersectionObserver(
    (entries) => {
      if (entries.some((e) => e.isIntersecting) && total !== null) load();
    },
    { rootMargin: "200px" },
  );
  watcher.observe(more);
  const stop = () => {
    stopped = true;
    watcher.disconnect();
  };
  return { load, stop };
}
