// Duplicates: each group's photos side by side with their size, resolution and paths, to
// choose what to keep; "Remove from the collection" forgets one (files on disk are kept,
// but for a photo uploaded through this page, whose stored copy goes with it).

import { api, getJson, thumbUrl } from "../api.js";
import { $, bytes, el, guard, image, newest, plural } from "../dom.js";
import { browsing } from "../tiles.js";

const KINDS = [
  ["exact", "Exact copies", "The same bytes under several paths: one photo in the collection."],
  ["near", "Edited copies", "One photo resized, recompressed, cropped, recoloured, captioned, turned or mirrored."],
  ["scenes", "Other shots of one scene", "Alike, but not copies: bursts and retakes."],
  ["unverified", "Not checked", "Alike, but their files could not be read to check the pixels."],
];

export async function duplicates(_match, _query, main) {
  const refresh = el("button", { type: "button", id: "duplicates-refresh" }, "Look again");
  main.append(
    el("div", { className: "heading" }, el("h2", { id: "duplicates-title", tabIndex: -1 }, "Duplicates"), refresh),
    el("p", { id: "duplicates-status", role: "status" }, "Comparing the photos (this can take a while on a large collection)…"),
    ...KINDS.map(([key, heading, what]) =>
      el("section", { id: `dup-${key}` }, el("h3", {}, heading), el("p", { className: "hint" }, what),
        el("ul", { id: key, className: "plain groups" })),
    ),
  );
  refresh.addEventListener("click", guard(() => load(main)));
  await load(main);
}

async function load(main) {
  const still = newest("duplicates", main);
  const report = await getJson("/v1/duplicates");
  if (!still()) return;
  const groups = {
    exact: report.exact.map((im) => ({ images: [im], label: plural(im.paths.length, "path") })),
    ...Object.fromEntries(
      KINDS.slice(1).map(([key]) => [
        key,
        report[key].map((g) => ({ images: g.images, label: `${plural(g.images.length, "photo")}, alike ≥ ${g.score.toFixed(3)}` })),
      ]),
    ),
  };
  const ids = [];
  for (const [key] of KINDS) {
    const list = $(`#${key}`);
    list.replaceChildren(...groups[key].map((g) => group(g)));
    if (!groups[key].length) list.append(el("li", {}, "None."));
    $(`#dup-${key}`).hidden = key === "unverified" && !groups[key].length;
    for (const g of groups[key]) ids.push(...g.images.map((im) => im.image_id));
  }
  browsing(ids);
  const count = Object.values(groups).reduce((n, g) => n + g.length, 0);
  $("#duplicates-status").textContent = count ? `${plural(count, "group")} found.` : "No duplicates found.";
}

function group({ images, label }) {
  return el(
    "li",
    { className: "group" },
    el("p", {}, label),
    el("ul", { className: "side-by-side plain" }, ...images.map(card)),
  );
}

// One photo of a group: its thumbnail, what tells it from the others, and a way to drop it.
function card(photo) {
  const id = photo.image_id;
  const remove = el("button", { type: "button" }, "Remove from the collection");
  remove.setAttribute("aria-label", `Remove image ${id} from the collection`);
  const li = el(
    "li",
    { className: "tile dup" },
    el("a", { href: `#/photo/${id}`, className: "tile" }, image(thumbUrl(id), `Image ${id}`)),
    el("span", { className: "facts" }, `${photo.width} × ${photo.height} · ${photo.format} · ${bytes(photo.size)}`),
    el("span", { className: "paths" }, photo.paths.join("\n")),
    remove,
  );
  li.dataset.imageId = id;
  remove.addEventListener(
    "click",
    guard(async () => {
      const sure = confirm(
        `Remove image ${id} from the collection? Its files stay on disk (an uploaded copy is deleted); indexing its folder again brings it back.`,
      );
      if (!sure) return;
      await api(`/v1/images/${id}`, { method: "DELETE" });
      li.replaceChildren(el("span", {}, `Image ${id} removed from the collection.`));
      li.classList.add("removed");
    }),
  );
  return li;
}
