// People: a card per person (cover face, photo count); a person's page with all their
// photos; unnamed groups of faces to review: name, merge, move a wrong face out, with undo.

import { ApiError, api, faceThumbUrl, getJson } from "../api.js";
import { $, el, guard, image, newest, plural } from "../dom.js";
import { go, show } from "../router.js";
import { pagedGrid } from "../tiles.js";
import { done } from "../undo.js";

const PAGE = 60;

export async function people(_match, query, main) {
  const minSize = query.get("min") || "2";
  const size = el("input", { id: "min-size", type: "number", min: 1, value: minSize });
  const showButton = el("button", { type: "button", id: "clusters-refresh" }, "Show");
  showButton.addEventListener("click", () => go(`#/people?min=${size.value || 1}`));
  const merge = el("button", { type: "button", id: "clusters-merge", disabled: true }, "Merge selected");
  merge.addEventListener("click", guard(mergePicked));
  main.append(
    el("h2", { id: "people-title", tabIndex: -1 }, "People"),
    el("ol", { id: "people", className: "cards" }),
    el("h2", {}, "Unnamed groups to review"),
    el("p", { className: "hint" },
      "Faces the engine grouped as one person: name a group, merge groups of one person, or open one to take out a wrong face."),
    el("div", { className: "options" },
      el("label", { htmlFor: "min-size" }, "Smallest group"), size, showButton, merge),
    el("ul", { id: "clusters", className: "plain rows" }),
  );
  await Promise.all([loadPeople(main), loadClusters(main, minSize)]);
}

async function loadPeople(main) {
  const still = newest("people", main);
  const found = await getJson("/v1/people");
  // Each card's cover and count: the person's newest photo, and how many there are.
  const covers = await Promise.all(
    found.people.map((p) => getJson(`/v1/people/${p.person_id}/images?limit=1`)),
  );
  if (!still()) return;
  const cards = found.people.map((person, i) => personCard(person, covers[i]));
  $("#people").replaceChildren(...cards);
  if (!cards.length) $("#people").append(el("li", {}, "Nobody named yet: name a group below."));
}

function personCard(person, photos) {
  const id = person.person_id;
  const cover = photos.images[0];
  const face = cover ? image(faceThumbUrl(cover.face_ids[0]), `${person.name}'s face`) : el("span", { className: "face-missing" }, "?");
  const link = el(
    "a",
    { href: `#/people/${id}`, className: "card-link" },
    face,
    el("strong", {}, person.name),
    el("span", {}, `${plural(photos.total, "photo")}, ${plural(person.face_count, "face")}`),
  );
  const li = el("li", { className: "person" }, link);
  li.dataset.personId = id;
  return li;
}

async function loadClusters(main, minSize) {
  const still = newest("clusters", main);
  const found = await getJson(`/v1/clusters?min_size=${encodeURIComponent(minSize)}`);
  if (!still()) return;
  $("#clusters").replaceChildren(...found.clusters.map(clusterRow));
  if (!found.clusters.length) $("#clusters").append(el("li", {}, "No unnamed groups."));
  updateMerge();
}

function clusterRow(cluster) {
  const id = cluster.cluster_id;
  const pick = el("input", { type: "checkbox", id: `pick-${id}`, value: id });
  pick.addEventListener("change", updateMerge);
  const faces = cluster.sample_face_ids.map((f) => image(faceThumbUrl(f), `Face ${f}`));
  const title = el("label", { htmlFor: pick.id, id: `group-${id}` }, ` Group ${id}: ${plural(cluster.face_count, "face")}`);
  const review = el("a", { href: `#/clusters/${id}`, className: "button" }, "Review");
  const li = el(
    "li",
    { className: "cluster" },
    el("p", {}, pick, title),
    el("div", { className: "strip" }, ...faces),
    nameForm(id, title.id),
  );
  li.querySelector("form").append(review);
  review.setAttribute("aria-describedby", title.id);
  li.dataset.clusterId = id;
  return li;
}

// "Name" for a group: a form whose fields say which group they are for.
function nameForm(id, describedBy) {
  const name = el("input", { id: `name-${id}`, required: true, autocomplete: "off" });
  const submit = el("button", { type: "submit" }, "Name");
  for (const field of [name, submit]) field.setAttribute("aria-describedby", describedBy);
  const form = el("form", { className: "options" }, el("label", { htmlFor: name.id }, "Name"), name, submit);
  form.addEventListener(
    "submit",
    guard(async (event) => {
      event.preventDefault();
      await nameCluster(id, name.value.trim());
    }),
  );
  return form;
}

const faceIds = async (clusterId) =>
  (await getJson(`/v1/clusters/${clusterId}`)).faces.map((f) => f.face_id);

// Faces back into a group of their own (what undoing a naming or a merge does).
const regroup = (ids) => api("/v1/faces/move", { method: "POST", json: { face_ids: ids, cluster_id: null } });

async function nameCluster(id, name) {
  const url = `/v1/clusters/${id}/name`;
  const faces = await faceIds(id);
  let merged = false;
  let person;
  try {
    person = await getJson(url, { method: "POST", json: { name, merge: false } });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) throw error;
    if (!confirm(`${name} exists: merge these faces into ${name}?`)) return;
    person = await getJson(url, { method: "POST", json: { name, merge: true } });
    merged = true;
  }
  done(`group ${id} named ${person.name}`, async () => {
    await regroup(faces);
    if (!merged) await api(`/v1/people/${person.person_id}`, { method: "DELETE" });
  }, "#/people");
  // Named from its own page: that group is gone, its faces are the person's now.
  if (location.hash.startsWith("#/clusters/")) go(`#/people/${person.person_id}`);
  else await show();
}

function updateMerge() {
  $("#clusters-merge").disabled = document.querySelectorAll("#clusters input:checked").length < 2;
}

async function mergePicked() {
  const picked = document.querySelectorAll("#clusters input:checked");
  const ids = [...picked].map((box) => Number(box.value));
  const others = await Promise.all(ids.slice(1).map(faceIds));
  await api("/v1/clusters/merge", { method: "POST", json: { cluster_ids: ids } });
  done(`groups ${ids.join(", ")} merged`, async () => {
    for (const faces of others) await regroup(faces);
  }, "#/people");
  await show();
}

// -- a person's page -----------------------------------------------------------------------

export async function person(match, _query, main) {
  const id = Number(match[1]);
  const found = await getJson(`/v1/people/${id}`);
  const title = el("h2", { id: "photos-title", tabIndex: -1 }, `Photos of ${found.name}`);
  const input = el("input", { id: `rename-${id}`, value: found.name, required: true });
  const form = el("form", { className: "options" },
    el("label", { htmlFor: input.id }, "Rename"), input, el("button", { type: "submit" }, "Rename"));
  form.addEventListener(
    "submit",
    guard(async (event) => {
      event.preventDefault();
      await rename(found, input.value.trim());
    }),
  );
  main.append(el("div", { className: "heading" }, el("a", { href: "#/people", className: "button" }, "People"), title), form);
  await photoGrid(main, `/v1/people/${id}/images`);
  title.focus({ preventScroll: true });
}

// Rename; if the new name is someone else's (409), offer to make the two one person.
async function rename(who, name) {
  const old = who.name;
  try {
    await api(`/v1/people/${who.person_id}`, { method: "PATCH", json: { name } });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) throw error;
    const other = (await getJson("/v1/people")).people.find(
      (p) => p.person_id !== who.person_id && p.name.toLowerCase() === name.toLowerCase(),
    );
    if (!other) throw error;
    if (!confirm(`${other.name} exists: merge ${old} into ${other.name}? This cannot be undone.`)) return;
    await api(`/v1/people/${other.person_id}/merge`, { method: "POST", json: { person_ids: [who.person_id] } });
    go(`#/people/${other.person_id}`);
    return;
  }
  done(`${old} renamed ${name}`, () =>
    api(`/v1/people/${who.person_id}`, { method: "PATCH", json: { name: old } }),
  );
  await show();
}

async function photoGrid(main, url) {
  const status = el("p", { id: "photos-status", role: "status" });
  const list = el("ol", { id: "photos", className: "grid" });
  list.setAttribute("aria-label", "Photos");
  const more = el("button", { type: "button", id: "photos-more", hidden: true }, "More photos");
  main.append(status, list, more);
  const grid = pagedGrid({
    list,
    status,
    more,
    fetchPage: (offset) => getJson(`${url}?offset=${offset}&limit=${PAGE}`),
    describe: (total, shown) =>
      shown < total ? `${plural(total, "photo")}, ${shown} shown` : plural(total, "photo"),
  });
  await grid.load();
  return grid.stop;
}

// -- an unnamed group's page: its faces, to name or to take a wrong one out ------------------

export async function cluster(match, _query, main) {
  const id = Number(match[1]);
  const found = await getJson(`/v1/clusters/${id}`);
  const title = el("h2", { id: "photos-title", tabIndex: -1 }, `Photos of unnamed group ${id}`);
  const faces = el("ul", { id: "cluster-faces", className: "strip plain" });
  faces.setAttribute("aria-label", "Its faces");
  faces.append(...found.faces.map((face) => faceCard(face, id, found.faces.length)));
  const form = nameForm(id, title.id);
  main.append(
    el("div", { className: "heading" }, el("a", { href: "#/people", className: "button" }, "People"), title),
    el("p", {}, `${plural(found.face_count, "face")}. A face that is someone else: “Not them” takes it out into a group of its own.`),
    faces,
    form,
  );
  const stop = await photoGrid(main, `/v1/clusters/${id}/images`);
  title.focus({ preventScroll: true });
  return stop;
}

function faceCard(face, clusterId, count) {
  const out = el("button", { type: "button" }, "Not them");
  out.setAttribute("aria-label", `Face ${face.face_id} is not them: take it out of group ${clusterId}`);
  out.disabled = count < 2; // a group's only face has nowhere to be taken out of
  out.addEventListener(
    "click",
    guard(async () => {
      const moved = await getJson(`/v1/faces/${face.face_id}/move`, { method: "POST", json: { cluster_id: null } });
      done(`face ${face.face_id} taken out of group ${clusterId} (into group ${moved.cluster_id})`, () =>
        api(`/v1/faces/${face.face_id}/move`, { method: "POST", json: { cluster_id: clusterId } }),
      );
      await show();
    }),
  );
  const li = el("li", { className: "face" }, image(faceThumbUrl(face.face_id), `Face ${face.face_id}`), out);
  li.dataset.faceId = face.face_id;
  return li;
}
