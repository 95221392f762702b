// A photo: large, its faces boxed and named (each leading to its person's or cluster's
// photos), its near-duplicates and similar photos (searched with its stored vectors: no
// upload); arrow keys move through the grid it was opened from, Escape goes back to it.

import { getJson, thumbUrl } from "../api.js";
import { $, bytes, el, guard, image, newest, placeBox, plural } from "../dom.js";
import { go } from "../router.js";
import { browsed, browsingLibrary, neighbour, photoName, photoTile } from "../tiles.js";

// More faces than this: names show on hover and focus only, or they would hide the photo.
const LABELLED_FACES = 8;
// A perceptual hash within 6 of 64 bits: the duplicates' own rule for an edited copy.
const NEAR_HASH_SCORE = 1 - 6 / 64;
const SIMILAR = 12;

export async function photo(match, _query, main) {
  const id = Number(match[1]);
  const still = newest("photo", main);
  const info = await getJson(`/v1/images/${id}`);
  if (!still()) return null;
  if (!browsed().ids.includes(id)) browsingLibrary(id);
  const name = photoName(info);
  const back = el("a", { href: browsed().from, className: "button" }, "Back");
  const prev = el("button", { type: "button", id: "photo-prev" }, "Previous");
  const next = el("button", { type: "button", id: "photo-next" }, "Next");
  prev.setAttribute("aria-keyshortcuts", "ArrowLeft");
  next.setAttribute("aria-keyshortcuts", "ArrowRight");
  prev.addEventListener("click", step(-1));
  next.addEventListener("click", step(1));
  const title = el("h2", { id: "viewer-title", tabIndex: -1 }, name);
  // Search with this photo by colours or as exact copies (the search view, no upload).
  const searchWith = el("a", { href: `#/search?image=${id}`, className: "button" }, "Search with it");
  const faces = info.faces;
  const facts = el(
    "p",
    { id: "photo-facts" },
    `Image ${id} · ${info.width} × ${info.height} · ${info.format} · ${bytes(info.size)} · `,
    plural(faces.length, "face"),
  );
  const figure = el("div", { id: "viewer-photo", className: "photo" });
  figure.classList.toggle("crowded", faces.length > LABELLED_FACES);
  figure.append(image(thumbUrl(id, 1024), `Image ${id}: ${name}`));
  figure.append(...faces.map((face) => faceBox(face, info)));
  const hint = faces.some(owner) ? "Choose a face to see that person's photos. " : "";
  main.append(
    el("div", { className: "heading" }, back, title, prev, next, searchWith),
    facts,
    figure,
    el("p", { className: "hint" }, `${hint}Arrow keys: previous and next photo; Escape: back.`),
    el("p", { className: "paths", id: "viewer-paths" }, info.paths.join("\n")),
    section("near", "Near-duplicates"),
    section("similar", "Similar photos"),
  );
  title.focus({ preventScroll: true });
  await Promise.all([showSimilar(id, still), showNear(id, still)]);
}

// The photo shown now (or being opened): from the route, so that keys pressed in quick
// succession each move on from the last, even before its photo has come.
const shown = () => Number((location.hash.match(/^#\/photo\/(\d+)/) || [])[1]) || null;

const step = (by) =>
  guard(async () => {
    const from = shown();
    const to = from === null ? null : await neighbour(from, by);
    if (to !== null && shown() === from) go(`#/photo/${to}`);
  });

document.addEventListener("keydown", (event) => {
  if (shown() === null || event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.target.closest("input, select, textarea, dialog")) return;
  if (event.key === "ArrowLeft") step(-1)();
  else if (event.key === "ArrowRight") step(1)();
  else if (event.key === "Escape") location.hash = browsed().from;
  else return;
  event.preventDefault();
});

function section(key, heading) {
  return el(
    "section",
    { id: `photo-${key}`, className: "related" },
    el("h3", {}, heading),
    el("p", { role: "status" }, "Looking…"),
    el("ol", { className: "grid small" }),
  );
}

// Results of a search by this image, itself left out; a tile per hit, with its score.
function showHits(key, hits, none) {
  const list = $(`#photo-${key} ol`);
  const status = $(`#photo-${key} [role=status]`);
  list.replaceChildren(
    ...hits.map((hit) =>
      photoTile(
        { image_id: hit.image_id, paths: [hit.path] },
        `${photoName({ paths: [hit.path] })} · ${hit.score.toFixed(3)}`,
      ),
    ),
  );
  status.textContent = hits.length ? "" : none;
}

async function showSimilar(id, still) {
  const found = await getJson(`/v1/images/${id}/similar?k=${SIMILAR + 1}`);
  if (!still()) return;
  const hits = found.results.filter((hit) => hit.image_id !== id);
  showHits("similar", hits, "No other photos to compare with.");
}

async function showNear(id, still) {
  let found;
  try {
    found = await getJson(`/v1/images/${id}/similar?k=9&descriptor=phash`);
  } catch {
    found = { results: [] }; // no perceptual hash indexed: nothing to show
  }
  if (!still()) return;
  const hits = found.results.filter((h) => h.image_id !== id && h.score >= NEAR_HASH_SCORE);
  showHits("near", hits, "None: no other photo is a copy of this one.");
}

// A face boxed over the photo: a link to its person's or cluster's photos, or (no one to
// show) a plain outline.
function faceBox(face, info) {
  const who = owner(face);
  const number = face.face_index + 1;
  const poor = face.usable ? "" : ", too small or blurred to recognise";
  const label = `Face ${number}: ${faceName(face)}${poor}`;
  const box = el(who ? "a" : "div", { className: face.usable ? "box" : "box poor" });
  if (who) {
    box.href = who.href;
    box.setAttribute("aria-label", `${label}. Show the photos of ${who.name}`);
  } else {
    box.setAttribute("role", "img");
    box.setAttribute("aria-label", label);
  }
  // A box may reach past the photo's edge (a face cut by it): drawn up to the edge.
  const clamp = (value, k) => Math.min(Math.max(value, 0), k % 2 ? info.height : info.width);
  placeBox(box, face.box.map(clamp), info.width, info.height);
  box.title = label;
  box.dataset.faceId = face.face_id;
  box.append(el("span", {}, `${number}: ${faceName(face)}${face.usable ? "" : " (unclear)"}`));
  return box;
}

export function faceName(face) {
  if (face.person) return face.person;
  return face.cluster_id != null ? `unnamed (group ${face.cluster_id})` : "unknown";
}

// Whose photos a face leads to: its person's, else its cluster's; null for neither.
function owner(face) {
  if (face.person_id != null) {
    return { href: `#/people/${face.person_id}`, name: face.person };
  }
  if (face.cluster_id != null) {
    return { href: `#/clusters/${face.cluster_id}`, name: `unnamed group ${face.cluster_id}` };
  }
  return null;
}
