// Undo of the last change to people and clusters: each change leaves the calls that put
// things back as they were (the page remembers the inverse; the API has no history).

import { $, el, guard } from "./dom.js";
import { go, show } from "./router.js";

let last = null; // { said, inverse: async () => void }

// After a change: say what was done, and offer to undo it with ``inverse``; once undone,
// the page shows ``then`` (a route), or the current one again.
export function done(said, inverse, then = null) {
  last = { said, inverse, then };
  const bar = $("#undo");
  const button = el("button", { type: "button", id: "undo-button" }, "Undo");
  button.addEventListener(
    "click",
    guard(async () => {
      const undoing = last;
      last = null;
      bar.replaceChildren(`Undoing: ${undoing.said}…`);
      try {
        await undoing.inverse();
        bar.replaceChildren(`Undone: ${undoing.said}`);
      } catch (error) {
        bar.replaceChildren(`Could not undo: ${undoing.said}`);
        throw error;
      } finally {
        if (undoing.then) go(undoing.then);
        else await show();
      }
    }),
  );
  bar.replaceChildren(el("span", {}, said, " "), button);
  bar.hidden = false;
}
