// Add photos: files uploaded one request each, with a progress bar per file; or a folder on
// the server indexed as a job (admin key), its progress followed live.

import { getJson, upload } from "../api.js";
import { $, el, guard, plural, progressBar, showError } from "../dom.js";

// Files sent at once: more would only share the same connection's bandwidth.
const AT_ONCE = 2;
const POLL_MS = 500;

export function add(_match, _query, main) {
  const files = el("input", { id: "add-files", type: "file", accept: "image/*", multiple: true, required: true });
  const filesForm = el("form", { id: "add-form", className: "options" },
    el("label", { htmlFor: "add-files" }, "Photos to add"), files, el("button", { type: "submit" }, "Add"));
  const folder = el("input", { id: "job-folder", required: true, autocomplete: "off", spellcheck: false, placeholder: "/srv/photos/2024" });
  const folderForm = el("form", { id: "job-form", className: "options" },
    el("label", { htmlFor: "job-folder" }, "Folder on the server"), folder, el("button", { type: "submit" }, "Index folder"));
  main.append(
    el("h2", { id: "add-title", tabIndex: -1 }, "Add photos"),
    el("h3", {}, "From this computer"),
    filesForm,
    el("ul", { id: "added", className: "plain rows" }),
    el("h3", {}, "A folder on the server"),
    el("p", { className: "hint" },
      "Needs an admin key (lookalike keys create --scope admin) and a folder under the server's LOOKALIKE_ALLOWED_ROOTS. Files already indexed and unchanged are skipped."),
    folderForm,
    el("div", { id: "job", "aria-live": "polite" }),
  );
  filesForm.addEventListener(
    "submit",
    guard(async (event) => {
      event.preventDefault();
      const chosen = [...files.files];
      files.value = "";
      await sendAll(chosen);
    }),
  );
  folderForm.addEventListener(
    "submit",
    guard(async (event) => {
      event.preventDefault();
      await indexFolder(folder.value.trim());
    }),
  );
}

async function sendAll(chosen) {
  const rows = chosen.map((file) => {
    const bar = progressBar(`Sending ${file.name}`);
    const said = el("span", { className: "said" }, "waiting");
    const li = el("li", { className: "upload" }, el("span", { className: "name" }, file.name), " ", bar, " ", said);
    return { file, bar, said, li };
  });
  $("#added").prepend(...rows.map((r) => r.li));
  const queue = [...rows];
  const worker = async () => {
    for (let row = queue.shift(); row; row = queue.shift()) await sendOne(row);
  };
  await Promise.all(Array.from({ length: AT_ONCE }, worker));
}

async function sendOne({ file, bar, said, li }) {
  const form = new FormData();
  form.append("files", file);
  said.textContent = "sending";
  try {
    const answer = await upload("/v1/images", form, (sent, total) => {
      bar.value = total ? sent / total : 0;
      // Every byte sent: the server is reading, finding faces and indexing it now.
      if (total && sent >= total) said.textContent = "indexing";
    });
    bar.value = 1;
    const item = answer.images[0];
    const link = el("a", { href: `#/photo/${item.image_id}` }, item.filename);
    li.replaceChildren(link, ` ${item.status}, ${item.faces.length} face(s)`);
    li.dataset.imageId = item.image_id;
  } catch (error) {
    li.classList.add("failed");
    said.textContent = `not added: ${error.message}`;
  }
}

async function indexFolder(path) {
  const box = $("#job");
  const job = await getJson("/v1/jobs", { method: "POST", json: { path } });
  const bar = progressBar(`Indexing ${job.target}`);
  const said = el("p", { role: "status" });
  box.replaceChildren(el("p", {}, `Indexing ${job.target} (job ${job.job_id})`), bar, said);
  for (let now = job; ; ) {
    bar.max = Math.max(now.total, 1);
    bar.value = now.done;
    said.textContent = `${now.status}: ${now.done} of ${plural(now.total, "file")}`;
    if (!["queued", "running"].includes(now.status)) return finished(now, said);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (!box.contains(bar)) return; // another job was started meanwhile
    now = await getJson(`/v1/jobs/${job.job_id}`);
  }
}

function finished(job, said) {
  if (job.status !== "done") {
    showError(`indexing ${job.target} ${job.status}: ${job.error || "see the server's log"}`);
    return;
  }
  const r = job.report || {};
  const failed = (r.failed || []).length;
  said.textContent =
    `Done: ${r.indexed ?? 0} indexed, ${r.unchanged ?? 0} unchanged, ${r.duplicates ?? 0} duplicates, ` +
    `${r.removed ?? 0} removed, ${failed} failed` + (r.faces != null ? `, ${plural(r.faces, "face")} found.` : ".");
}
