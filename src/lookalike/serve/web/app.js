// lookalike's web page, a photo app over the API: the library, a photo with its faces and
// look-alikes, search, people, duplicates, adding photos. ES modules, no build step; this
// one asks for the key when needed and starts the router.

import { api, setKey, whenUnauthorised } from "./js/api.js";
import { $, guard } from "./js/dom.js";
import { route, show, start } from "./js/router.js";
import { add } from "./js/views/add.js";
import { duplicates } from "./js/views/duplicates.js";
import { library } from "./js/views/library.js";
import { cluster, people, person } from "./js/views/people.js";
import { photo } from "./js/views/photo.js";
import { search } from "./js/views/search.js";

route(/^\/library$/, "library", library); // the first: where an unknown route leads
route(/^\/photo\/(\d+)$/, "library", photo);
route(/^\/search$/, "search", search);
route(/^\/people$/, "people", people);
route(/^\/people\/(\d+)$/, "people", person);
route(/^\/clusters\/(\d+)$/, "people", cluster);
route(/^\/duplicates$/, "duplicates", duplicates);
route(/^\/add$/, "add", add);

// -- the key -------------------------------------------------------------------------------

function askKey(reason) {
  const said = reason ? `${reason.charAt(0).toUpperCase()}${reason.slice(1)}. ` : "";
  $("#key-reason").textContent = `${said}Enter an API key.`;
  $("#key-form").hidden = false;
  $("#key-input").focus();
}

whenUnauthorised(askKey);

$("#key-form").addEventListener(
  "submit",
  guard(async (event) => {
    event.preventDefault();
    setKey($("#key-input").value.trim());
    $("#key-input").value = "";
    await api("/v1/images?limit=1"); // a wrong key brings the form back (401)
    $("#key-form").hidden = true;
    await show();
  }),
);
$("#key-cancel").addEventListener("click", () => ($("#key-form").hidden = true));
$("#change-key").addEventListener("click", () => askKey(""));
$("#key-form").addEventListener("keydown", (event) => {
  if (event.key === "Escape") $("#key-form").hidden = true;
});

// A file dropped beside a drop zone must not replace the page.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());

// No key asked for up front: a server started with --no-auth (loopback only) answers
// without one, and any other answers 401 to the view's first call, which shows the form.
start();
