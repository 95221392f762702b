// Search: by a dropped, pasted or chosen photo, or one picked from the library (searched
// with its stored vectors); the results as a grid with scores. A box dragged over (or typed
// for) an uploaded photo searches for what is inside it.

import { getJson, thumbUrl } from "../api.js";
import { $, el, guard, image, newest, placeBox } from "../dom.js";
import { browsing, photoName, photoTile } from "../tiles.js";

const DESCRIPTORS = [
  ["cnn", "content", "what the photo shows: the same things, places and scenes"],
  ["color", "colours", "the same colours and light, whatever the photo shows"],
  ["phash", "exact copies", "the same photo, resized, recompressed or lightly edited"],
];

// The query last searched with: a file (a box can be drawn on it) or a library image id;
// and what it found, shown again on coming back from a result.
let query = null;
let last = null; // { status, results }

let view = null; // the element the search view draws into

export function search(_match, params, main) {
  view = main;
  const options = DESCRIPTORS.map(([value, name, what], i) =>
    el(
      "label",
      { className: "choice" },
      el("input", { type: "radio", name: "descriptor", value, checked: i === 0 }),
      el("strong", {}, name),
      ` — ${what}`,
    ),
  );
  main.append(
    el("h2", { id: "search-title", tabIndex: -1 }, "Search by photo"),
    el(
      "div",
      { id: "drop", className: "drop" },
      el("p", {}, "Drop or paste a photo here, or"),
      el("label", { htmlFor: "search-file", className: "button" }, "choose a photo"),
      el("input", { id: "search-file", type: "file", accept: "image/*", className: "visually-hidden" }),
      " ",
      el("button", { type: "button", id: "search-pick" }, "pick one from the library"),
    ),
    el(
      "fieldset",
      { className: "options descriptors" },
      el("legend", {}, "Find photos alike in"),
      ...options,
      el("label", {}, "Results ", el("input", { id: "search-k", type: "number", min: 1, max: 100, value: 12 })),
    ),
    queryPanel(),
    el("p", { id: "search-status", role: "status" }),
    el("ol", { id: "results", className: "grid" }),
    picker(),
  );
  $("#results").setAttribute("aria-label", "Results");
  wireInputs(main);
  if (last) {
    if (query && query.file) showQuery(query.file);
    $("#search-status").textContent = last.status;
    showResults(last.results);
  }
  const picked = Number(params.get("image"));
  if (picked) guard(() => searchImage(picked))();
  const paste = guard(async (event) => {
    const file = [...(event.clipboardData?.files || [])][0];
    if (file) await searchFile(file);
  });
  document.addEventListener("paste", paste);
  return () => document.removeEventListener("paste", paste);
}

const descriptor = () => $("input[name=descriptor]:checked").value;
const wanted = () => $("#search-k").value || "12";

function queryPanel() {
  const box = el("input", {
    id: "search-box", name: "box", autocomplete: "off", spellcheck: false,
    placeholder: "whole photo", pattern: "\\s*\\d+\\s*(,\\s*\\d+\\s*){3}",
  });
  return el(
    "div",
    { id: "query", hidden: true },
    el("p", { className: "hint", id: "query-hint" }, "Drag a box over the photo to search for what is inside it."),
    el("div", { id: "query-photo", className: "photo draw" }),
    el(
      "form",
      { id: "box-form", className: "options" },
      el("label", { htmlFor: "search-box" }, "Region (left, top, right, bottom in pixels)"),
      box,
      el("button", { type: "submit" }, "Search region"),
      el("button", { type: "button", id: "box-clear" }, "Whole photo"),
    ),
  );
}

function wireInputs(main) {
  const drop = $("#drop", main);
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener(
    "drop",
    guard(async (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      const file = event.dataTransfer.files[0];
      if (file) await searchFile(file);
    }),
  );
  $("#search-file", main).addEventListener(
    "change",
    guard(async (event) => {
      const file = event.target.files[0];
      event.target.value = ""; // choosing the same file again searches again
      if (file) await searchFile(file);
    }),
  );
  $("#search-pick", main).addEventListener("click", guard(openPicker));
  wireBox(main);
}

async function searchFile(file, box = "") {
  if (!query || query.file !== file) showQuery(file);
  const form = new FormData();
  form.append("file", file);
  form.append("k", wanted());
  form.append("descriptor", box ? "cnn" : descriptor());
  if (box) form.append("box", box);
  const what = box ? `the region ${box} of ${file.name}` : file.name;
  await showSearch(what, () => getJson("/v1/search", { method: "POST", form }));
}

async function searchImage(id) {
  query = { id };
  $("#query").hidden = true; // no uploaded photo to draw a box on
  const url = `/v1/images/${id}/similar?k=${wanted()}&descriptor=${descriptor()}`;
  await showSearch(`image ${id}`, () => getJson(url));
}

async function showSearch(what, run) {
  $("#search-status").textContent = `Searching with ${what}…`;
  const still = newest("results", view);
  let found;
  try {
    found = await run();
  } catch (error) {
    if (still()) $("#search-status").textContent = "";
    throw error;
  }
  if (!still()) return;
  const ms = Object.values(found.timing_ms || {}).reduce((a, b) => a + b, 0);
  const score = found.higher_is_better ? "higher is closer" : "lower is closer";
  const status = `${found.results.length} results for ${what} (${Math.round(ms)} ms; score: ${found.measure}, ${score})`;
  $("#search-status").textContent = status;
  last = { status, results: found.results };
  showResults(found.results);
}

function showResults(results) {
  browsing(results.map((hit) => hit.image_id));
  $("#results").replaceChildren(
    ...results.map((hit) => {
      const li = photoTile({ image_id: hit.image_id, paths: [hit.path] }, "");
      const link = $("a", li);
      const picture = $("img", li);
      link.replaceChildren(
        hit.region ? regionFrame(picture, hit) : picture,
        el("span", { className: "score" }, `#${hit.rank} · ${hit.score.toFixed(3)}`),
      );
      link.setAttribute("aria-label", `Result ${hit.rank}: ${photoName({ paths: [hit.path] })}, score ${hit.score.toFixed(3)}`);
      li.classList.add("result");
      return li;
    }),
  );
}

// A result's thumbnail with the region that matched boxed over it.
function regionFrame(picture, hit) {
  const box = el("span", { className: "box region" });
  const [width, height] = hit.image_size;
  placeBox(box, hit.region, width, height);
  box.title = `Matched region ${hit.region.join(",")}`;
  return el("span", { className: "framed" }, picture, box);
}

// -- search by a region: a box dragged over the query photo ----------------------------------

function showQuery(file) {
  query = { file };
  const img = el("img", { alt: `Query: ${file.name}` });
  const src = URL.createObjectURL(file);
  img.addEventListener("load", () => URL.revokeObjectURL(src), { once: true });
  img.src = src;
  $("#query-photo").replaceChildren(img);
  $("#search-box").value = "";
  $("#query").hidden = false;
}

// A point of a pointer event in the photo's own (upright, natural) pixels.
function photoPoint(event) {
  const img = $("#query-photo img");
  const rect = img.getBoundingClientRect();
  const clamp = (v, most) => Math.round(Math.min(Math.max(v, 0), most));
  return [
    clamp(((event.clientX - rect.left) * img.naturalWidth) / rect.width, img.naturalWidth),
    clamp(((event.clientY - rect.top) * img.naturalHeight) / rect.height, img.naturalHeight),
  ];
}

function drawBox(box) {
  const img = $("#query-photo img");
  let outline = $("#query-photo .box");
  if (!box) {
    if (outline) outline.remove();
    return;
  }
  if (!outline) {
    outline = el("div", { className: "box query" });
    outline.setAttribute("role", "img");
    $("#query-photo").append(outline);
  }
  placeBox(outline, box, img.naturalWidth, img.naturalHeight);
  outline.setAttribute("aria-label", `Drawn box ${box.join(",")}`);
}

function wireBox(main) {
  let dragStart = null;
  const photo = $("#query-photo", main);
  photo.addEventListener("pointerdown", (event) => {
    if (!$("#query-photo img")?.naturalWidth) return;
    event.preventDefault();
    photo.setPointerCapture(event.pointerId);
    dragStart = photoPoint(event);
  });
  const dragged = (event) => {
    const [x, y] = photoPoint(event);
    const [x0, y0] = dragStart;
    return [Math.min(x, x0), Math.min(y, y0), Math.max(x, x0), Math.max(y, y0)];
  };
  photo.addEventListener("pointermove", (event) => {
    if (dragStart) drawBox(dragged(event));
  });
  photo.addEventListener(
    "pointerup",
    guard(async (event) => {
      if (!dragStart) return;
      const box = dragged(event);
      dragStart = null;
      // A click, or a sliver: no region (the box needs an area to search).
      if (box[2] - box[0] < 4 || box[3] - box[1] < 4) return drawBox(null);
      $("#search-box").value = box.join(",");
      drawBox(box);
      await searchFile(query.file, box.join(","));
    }),
  );
  photo.addEventListener("pointercancel", () => (dragStart = null));
  // The keyboard's way: type the box (the drawn one is written there too).
  $("#box-form", main).addEventListener(
    "submit",
    guard(async (event) => {
      event.preventDefault();
      const box = $("#search-box").value.replace(/\s/g, "");
      drawBox(box ? box.split(",").map(Number) : null);
      await searchFile(query.file, box);
    }),
  );
  $("#box-clear", main).addEventListener(
    "click",
    guard(async () => {
      $("#search-box").value = "";
      drawBox(null);
      await searchFile(query.file);
    }),
  );
}

// -- picking a query from the library --------------------------------------------------------

const PICK_PAGE = 30;

function picker() {
  const dialog = el(
    "dialog",
    { id: "picker" },
    el("div", { className: "heading" },
      el("h2", { id: "picker-title" }, "Pick a photo to search with"),
      el("button", { type: "button", id: "picker-close" }, "Close")),
    el("ol", { id: "picker-photos", className: "grid small" }),
    el("button", { type: "button", id: "picker-more", hidden: true }, "More photos"),
  );
  dialog.setAttribute("aria-labelledby", "picker-title");
  $("#picker-close", dialog).addEventListener("click", () => dialog.close());
  $("#picker-more", dialog).addEventListener("click", guard(() => morePicks(dialog)));
  return dialog;
}

async function openPicker() {
  const dialog = $("#picker");
  $("#picker-photos").replaceChildren();
  dialog.showModal();
  await morePicks(dialog);
}

async function morePicks(dialog) {
  const list = $("#picker-photos", dialog);
  const offset = list.children.length;
  const page = await getJson(`/v1/images?order=newest&offset=${offset}&limit=${PICK_PAGE}`);
  list.append(
    ...page.images.map((photo) => {
      const name = photoName(photo);
      const pick = el("button", { type: "button", className: "tile" },
        image(thumbUrl(photo.image_id), name, { later: true }), el("span", {}, name));
      pick.addEventListener(
        "click",
        guard(async () => {
          dialog.close();
          await searchImage(photo.image_id);
        }),
      );
      const li = el("li", {}, pick);
      li.dataset.imageId = photo.image_id;
      return li;
    }),
  );
  $("#picker-more", dialog).hidden = list.children.length >= page.total;
}
