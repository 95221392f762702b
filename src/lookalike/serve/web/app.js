// lookalike's web page: search by photo, duplicates, people, an image with its faces, the
// photos of a person or cluster. One ES module, no build step.
// Every call sends the API key as X-API-Key; images are fetched the same way and shown
// through blob URLs, since <img src> cannot send headers.

const KEY = "lookalike.key";
const $ = (selector) => document.querySelector(selector);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// -- the API -------------------------------------------------------------------------------

async function api(path, { method = "GET", json, form } = {}) {
  const headers = { "X-API-Key": localStorage.getItem(KEY) || "" };
  let body = form;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers, body });
  if (response.ok) return response;
  let code = "error";
  let message = `${response.status} ${response.statusText}`;
  try {
    ({ code, message } = (await response.json()).error);
  } catch {
    // not the JSON error shape: keep the status line
  }
  if (response.status === 401) askKey(message);
  throw new ApiError(response.status, code, message);
}

const getJson = async (path, options) => (await api(path, options)).json();

// Run an event handler, showing what went wrong (a 401 shows the key form instead).
function guard(handler) {
  return async (...args) => {
    showError("");
    try {
      await handler(...args);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) showError(error.message);
    }
  };
}

function showError(message) {
  $("#error").textContent = message;
  $("#error").hidden = !message;
}

// An <img> whose bytes are fetched with the key.
function image(url, alt) {
  const img = document.createElement("img");
  img.alt = alt;
  img.decoding = "async";
  api(url)
    .then((response) => response.blob())
    .then((blob) => {
      const src = URL.createObjectURL(blob);
      img.addEventListener("load", () => URL.revokeObjectURL(src), { once: true });
      img.src = src;
    })
    .catch(() => img.classList.add("missing"));
  return img;
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// Only the newest of overlapping loads of one list may draw it (answers can come out of order).
const generations = {};
function newest(list) {
  const mine = (generations[list] = (generations[list] || 0) + 1);
  return () => generations[list] === mine;
}

const thumb = (id, size = 256) => `/v1/images/${id}/thumbnail?size=${size}`;
const faceThumb = (id) => `/v1/faces/${id}/thumbnail`;
const basename = (path) => path.split(/[\\/]/).pop();

// -- the key -------------------------------------------------------------------------------

function askKey(reason) {
  const said = reason.charAt(0).toUpperCase() + reason.slice(1);
  if (reason) $("#key-reason").textContent = `${said}. Enter an API key.`;
  $("#key-form").hidden = false;
  $("#key-input").focus();
}

$("#key-form").addEventListener(
  "submit",
  guard(async (event) => {
    event.preventDefault();
    localStorage.setItem(KEY, $("#key-input").value.trim());
    $("#key-input").value = "";
    await api("/v1/images?limit=1"); // a wrong key brings the form back (401)
    $("#key-form").hidden = true;
    showTab(current);
  }),
);

$("#change-key").addEventListener("click", () => askKey(""));

// -- tabs ----------------------------------------------------------------------------------

let current = "search";
const loaders = {
  search: async () => {},
  duplicates: loadDuplicates,
  people: loadPeople,
  photos: () => loadPhotos(),
};

function showTab(name) {
  current = name;
  for (const button of document.querySelectorAll("nav button")) {
    const on = button.dataset.tab === name;
    if (on) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const tab of Object.keys(loaders)) $(`#tab-${tab}`).hidden = tab !== name;
  if (localStorage.getItem(KEY) || openServer) guard(loaders[name])();
}

for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => showTab(button.dataset.tab));
}

// -- search --------------------------------------------------------------------------------

// The photo last searched with: a box drawn on it searches again with that region.
let queryFile = null;

async function search(file, box = "") {
  if (file !== queryFile) showQuery(file);
  const form = new FormData();
  form.append("file", file);
  form.append("k", $("#search-k").value || "12");
  form.append("descriptor", box ? "cnn" : $("#search-descriptor").value);
  if (box) form.append("box", box);
  const what = box ? `the region ${box} of ${file.name}` : file.name;
  $("#search-status").textContent = `Searching with ${what}…`;
  const still = newest("results");
  let found;
  try {
    found = await getJson("/v1/search", { method: "POST", form });
  } catch (error) {
    if (still()) $("#search-status").textContent = "";
    throw error;
  }
  if (!still()) return;
  const ms = Object.values(found.timing_ms || {}).reduce((a, b) => a + b, 0);
  const status = `${found.results.length} results for ${what} (${Math.round(ms)} ms)`;
  showResults(found.results, status);
}

// -- search by a region: a box dragged over the query photo ----------------------------------

function showQuery(file) {
  queryFile = file;
  const photo = $("#query-photo");
  const img = el("img", { alt: `Query: ${file.name}` });
  const src = URL.createObjectURL(file);
  img.addEventListener("load", () => URL.revokeObjectURL(src), { once: true });
  img.src = src;
  photo.replaceChildren(img);
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

// Boxes are in an image's own pixels: as percentages of it they follow the displayed size.
function placeBox(node, [left, top, right, bottom], width, height) {
  Object.assign(node.style, {
    left: `${(100 * left) / width}%`,
    top: `${(100 * top) / height}%`,
    width: `${(100 * (right - left)) / width}%`,
    height: `${(100 * (bottom - top)) / height}%`,
  });
}

let dragStart = null;
const queryPhoto = $("#query-photo");
queryPhoto.addEventListener("pointerdown", (event) => {
  if (!$("#query-photo img")?.naturalWidth) return;
  event.preventDefault();
  queryPhoto.setPointerCapture(event.pointerId);
  dragStart = photoPoint(event);
});
const dragged = (event) => {
  const [x, y] = photoPoint(event);
  const [x0, y0] = dragStart;
  return [Math.min(x, x0), Math.min(y, y0), Math.max(x, x0), Math.max(y, y0)];
};
queryPhoto.addEventListener("pointermove", (event) => {
  if (dragStart) drawBox(dragged(event));
});
queryPhoto.addEventListener(
  "pointerup",
  guard(async (event) => {
    if (!dragStart) return;
    const box = dragged(event);
    dragStart = null;
    // A click, or a sliver: no region (the box needs an area to search).
    if (box[2] - box[0] < 4 || box[3] - box[1] < 4) return drawBox(null);
    $("#search-box").value = box.join(",");
    drawBox(box);
    await search(queryFile, box.join(","));
  }),
);
queryPhoto.addEventListener("pointercancel", () => (dragStart = null));

// The keyboard's way: type the box (the drawn one is written there too).
$("#box-form").addEventListener(
  "submit",
  guard(async (event) => {
    event.preventDefault();
    const box = $("#search-box").value.replace(/\s/g, "");
    drawBox(box ? box.split(",").map(Number) : null);
    await search(queryFile, box);
  }),
);
$("#box-clear").addEventListener(
  "click",
  guard(async () => {
    $("#search-box").value = "";
    drawBox(null);
    await search(queryFile);
  }),
);

function showResults(results, status) {
  $("#search-status").textContent = status;
  $("#results").replaceChildren(
    ...results.map((hit) => {
      const picture = image(thumb(hit.image_id), `Result ${hit.rank}: ${basename(hit.path)}`);
      const open = el(
        "button",
        { type: "button", className: "tile", title: hit.path },
        hit.region ? regionFrame(picture, hit) : picture,
        el("span", { className: "score" }, `#${hit.rank} · ${hit.score.toFixed(3)}`),
      );
      open.addEventListener("click", guard(() => openImage(hit.image_id)));
      const li = el("li", { className: "result" }, open);
      li.dataset.imageId = hit.image_id;
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

// A file dropped beside the drop zone must not replace the page.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());

const drop = $("#drop");
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
    if (file) await search(file);
  }),
);
$("#search-file").addEventListener(
  "change",
  guard(async (event) => {
    const file = event.target.files[0];
    event.target.value = ""; // choosing the same file again searches again
    if (file) await search(file);
  }),
);

$("#add-form").addEventListener(
  "submit",
  guard(async (event) => {
    event.preventDefault();
    const form = new FormData();
    for (const file of $("#add-files").files) form.append("files", file);
    $("#added").replaceChildren(el("li", {}, "Adding…"));
    const added = await getJson("/v1/images", { method: "POST", form });
    $("#added").replaceChildren(
      ...added.images.map((item) => {
        const open = el("button", { type: "button", className: "link" }, item.filename);
        open.addEventListener("click", guard(() => openImage(item.image_id)));
        return el("li", {}, open, ` ${item.status}, ${item.faces.length} face(s)`);
      }),
    );
    $("#add-files").value = "";
  }),
);

// -- image view ----------------------------------------------------------------------------

let viewing = null;
// More faces than this: names show on hover and focus only, or they would hide the photo.
const LABELLED_FACES = 8;

async function openImage(id) {
  const still = newest("viewer");
  const info = await getJson(`/v1/images/${id}`);
  if (!still()) return;
  viewing = info.image_id;
  const faces = info.faces;
  const count = faces.length === 1 ? "1 face" : `${faces.length} faces`;
  $("#viewer-title").textContent = `Image ${viewing} (${info.width} × ${info.height}), ${count}`;
  $("#viewer-paths").textContent = info.paths.join("\n");
  const photo = $("#viewer-photo");
  photo.classList.toggle("crowded", faces.length > LABELLED_FACES);
  photo.replaceChildren(
    image(thumb(viewing, 1024), `Image ${viewing}`),
    ...faces.map((face) => faceBox(face, info)),
  );
  $("#viewer-hint").hidden = !faces.some(owner);
  if (!$("#viewer").open) $("#viewer").showModal();
}

// A face boxed over the photo: a button showing its person's or cluster's photos, or (no
// one to show) a plain outline, placed by placeBox.
function faceBox(face, info) {
  const who = owner(face);
  const number = face.face_index + 1;
  const poor = face.usable ? "" : ", too small or blurred to recognise";
  const label = `Face ${number}: ${faceName(face)}${poor}`;
  const box = el(who ? "button" : "div", { className: face.usable ? "box" : "box poor" });
  if (who) {
    box.type = "button";
    box.setAttribute("aria-label", `${label}. Show the photos of ${who.name}`);
    box.addEventListener("click", guard(() => showPhotos(who)));
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

function faceName(face) {
  if (face.person) return face.person;
  return face.cluster_id != null ? `unnamed (group ${face.cluster_id})` : "unknown";
}

// Whose photos a face leads to: its person's, else its cluster's; null for neither.
function owner(face) {
  if (face.person_id != null) return { kind: "people", id: face.person_id, name: face.person };
  if (face.cluster_id != null) return clusterOwner(face.cluster_id);
  return null;
}

const clusterOwner = (id) => ({ kind: "clusters", id, name: `unnamed group ${id}` });

$("#viewer-close").addEventListener("click", () => $("#viewer").close());
$("#viewer-similar").addEventListener(
  "click",
  guard(async () => {
    const k = $("#search-k").value || "12";
    const still = newest("results");
    const found = await getJson(`/v1/images/${viewing}/similar?k=${k}`);
    if (!still()) return;
    $("#viewer").close();
    showTab("search");
    // No query photo to draw a box on: the search was by an indexed image.
    queryFile = null;
    $("#query").hidden = true;
    showResults(found.results, `${found.results.length} results like image ${viewing}`);
  }),
);

// -- the photos of a person or a cluster --------------------------------------------------

let showing = null; // { kind: "people" | "clusters", id, name }
const PHOTOS_PAGE = 60;

// Show ``who``'s photos (from a face in the image view, or a row of the people tab).
function showPhotos(who) {
  showing = who;
  if ($("#viewer").open) $("#viewer").close();
  $("#photos").replaceChildren();
  $("#photos-title").textContent = `Photos of ${who.name}`;
  showTab("photos");
  $("#photos-title").focus();
}

async function loadPhotos(more = false) {
  if (!showing) return;
  const who = showing;
  const still = newest("photos");
  const offset = more ? $("#photos").children.length : 0;
  const url = `/v1/${who.kind}/${who.id}/images?offset=${offset}&limit=${PHOTOS_PAGE}`;
  const page = await getJson(url);
  if (!still()) return;
  const tiles = page.images.map(photoTile);
  if (more) $("#photos").append(...tiles);
  else $("#photos").replaceChildren(...tiles);
  const shown = $("#photos").children.length;
  const total = page.total === 1 ? "1 photo" : `${page.total} photos`;
  $("#photos-status").textContent = shown < page.total ? `${total}, ${shown} shown` : total;
  $("#photos-more").hidden = shown >= page.total;
}

function photoTile(photo) {
  const name = basename(photo.paths[0] || photo.sha256);
  const open = el(
    "button",
    { type: "button", className: "tile", title: photo.paths.join("\n") },
    image(thumb(photo.image_id), name),
    el("span", {}, name),
  );
  open.addEventListener("click", guard(() => openImage(photo.image_id)));
  const li = el("li", {}, open);
  li.dataset.imageId = photo.image_id;
  return li;
}

// A "Photos" button of a row of the people tab.
function photosButton(who) {
  const button = el("button", { type: "button" }, "Photos");
  button.addEventListener("click", guard(() => showPhotos(who)));
  return button;
}

$("#photos-more").addEventListener("click", guard(() => loadPhotos(true)));

// -- duplicates ----------------------------------------------------------------------------

async function loadDuplicates() {
  const still = newest("duplicates");
  const report = await getJson("/v1/duplicates");
  if (!still()) return;
  const row = (images, label) => {
    const tiles = images.map((im) => {
      const id = im.image_id;
      const open = el(
        "button",
        { type: "button", className: "tile", title: im.paths.join("\n") },
        image(thumb(id), basename(im.paths[0] || im.sha256)),
      );
      open.addEventListener("click", guard(() => openImage(id)));
      open.dataset.imageId = id;
      return open;
    });
    return el("li", {}, el("p", {}, label), el("div", { className: "strip" }, ...tiles));
  };
  $("#exact").replaceChildren(...report.exact.map((im) => row([im], im.paths.join(", "))));
  $("#near").replaceChildren(
    ...report.near.map((group) => {
      const label = `${group.images.length} images, score ≥ ${group.score.toFixed(3)}`;
      return row(group.images, label);
    }),
  );
  if (!report.exact.length) $("#exact").append(el("li", {}, "None."));
  if (!report.near.length) $("#near").append(el("li", {}, "None."));
}

$("#duplicates-refresh").addEventListener("click", guard(loadDuplicates));

// -- people --------------------------------------------------------------------------------

async function loadPeople() {
  await Promise.all([loadClusters(), loadNamed()]);
}

async function loadClusters() {
  const minSize = $("#min-size").value || "1";
  const still = newest("clusters");
  const found = await getJson(`/v1/clusters?min_size=${encodeURIComponent(minSize)}`);
  if (!still()) return;
  const clusters = found.clusters;
  $("#clusters").replaceChildren(...clusters.map(clusterRow));
  if (!clusters.length) $("#clusters").append(el("li", {}, "No unnamed groups."));
  updateMerge();
}

function clusterRow(cluster) {
  const id = cluster.cluster_id;
  const pick = el("input", { type: "checkbox", id: `pick-${id}`, value: id });
  pick.addEventListener("change", updateMerge);
  const faces = cluster.sample_face_ids.map((f) => image(faceThumb(f), `Face ${f}`));
  const name = el("input", { id: `name-${id}`, required: true, autocomplete: "off" });
  const title = el("label", { htmlFor: pick.id, id: `group-${id}` });
  title.textContent = ` Group ${id}: ${cluster.face_count} face(s)`;
  const submit = el("button", { type: "submit" }, "Name");
  const photos = photosButton(clusterOwner(id));
  // Every row has "Name" and "Photos" buttons: say which group each one is for.
  for (const field of [name, submit, photos]) field.setAttribute("aria-describedby", title.id);
  const label = el("label", { htmlFor: name.id }, "Name");
  const form = el("form", { className: "options" }, label, name, submit, photos);
  form.addEventListener(
    "submit",
    guard(async (event) => {
      event.preventDefault();
      await nameCluster(id, name.value.trim());
    }),
  );
  const li = el(
    "li",
    { className: "cluster" },
    el("p", {}, pick, title),
    el("div", { className: "strip" }, ...faces),
    form,
  );
  li.dataset.clusterId = id;
  return li;
}

async function nameCluster(id, name) {
  const url = `/v1/clusters/${id}/name`;
  try {
    await api(url, { method: "POST", json: { name, merge: false } });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) throw error;
    if (!confirm(`${name} exists: merge these faces into ${name}?`)) return;
    await api(url, { method: "POST", json: { name, merge: true } });
  }
  await loadPeople();
}

function updateMerge() {
  $("#clusters-merge").disabled = document.querySelectorAll("#clusters input:checked").length < 2;
}

$("#clusters-refresh").addEventListener("click", guard(loadPeople));
$("#clusters-merge").addEventListener(
  "click",
  guard(async () => {
    const picked = document.querySelectorAll("#clusters input:checked");
    const ids = [...picked].map((box) => Number(box.value));
    await api("/v1/clusters/merge", { method: "POST", json: { cluster_ids: ids } });
    await loadClusters();
  }),
);

let people = [];

async function loadNamed() {
  const still = newest("people");
  const found = await getJson("/v1/people");
  if (!still()) return;
  people = found.people;
  $("#people").replaceChildren(...people.map(personRow));
  if (!people.length) $("#people").append(el("li", {}, "Nobody named yet."));
}

// Rename; if the new name is someone else's (409), offer to make the two one person.
async function rename(person, name) {
  try {
    await api(`/v1/people/${person.person_id}`, { method: "PATCH", json: { name } });
  } catch (error) {
    const same = (p) =>
      p.person_id !== person.person_id && p.name.toLowerCase() === name.toLowerCase();
    const other = people.find(same);
    if (!(error instanceof ApiError && error.status === 409 && other)) throw error;
    if (!confirm(`${other.name} exists: merge ${person.name} into ${other.name}?`)) return;
    const merge = { person_ids: [person.person_id] };
    await api(`/v1/people/${other.person_id}/merge`, { method: "POST", json: merge });
  }
  await loadNamed();
}

function personRow(person) {
  const id = person.person_id;
  const examples = person.example_count ? `, ${person.example_count} example(s)` : "";
  const input = el("input", { id: `rename-${id}`, value: person.name, required: true });
  const form = el(
    "form",
    { className: "options" },
    el("label", { htmlFor: `rename-${id}` }, "Rename"),
    input,
    el("button", { type: "submit" }, "Rename"),
  );
  form.addEventListener(
    "submit",
    guard(async (event) => {
      event.preventDefault();
      await rename(person, input.value.trim());
    }),
  );
  const photos = photosButton({ kind: "people", id, name: person.name });
  photos.setAttribute("aria-describedby", `person-${id}`);
  form.append(photos);
  const li = el(
    "li",
    { className: "person" },
    el(
      "p",
      {},
      el("strong", { id: `person-${id}` }, person.name),
      ` ${person.face_count} face(s)${examples}`,
    ),
    form,
  );
  li.dataset.personId = id;
  return li;
}

// -- start ---------------------------------------------------------------------------------

// A server started with --no-auth (loopback only) answers without a key: no form then.
let openServer = false;
if (localStorage.getItem(KEY)) {
  showTab("search");
} else {
  fetch("/v1/images?limit=1").then((r) => {
    openServer = r.ok;
    if (!openServer) askKey("");
    showTab("search");
  });
}
