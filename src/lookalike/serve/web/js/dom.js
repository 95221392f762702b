// Small DOM helpers the views share: elements, images fetched with the key, errors in words.

import { api, ApiError } from "./api.js";

export const $ = (selector, root = document) => root.querySelector(selector);

export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export const basename = (path) => path.split(/[\\/]/).pop();
export const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function showError(message) {
  const said = message ? message.charAt(0).toUpperCase() + message.slice(1) : "";
  $("#error").textContent = said;
  $("#error").hidden = !said;
}

// Run an event handler, showing what went wrong (a 401 shows the key form instead).
export function guard(handler) {
  return async (...args) => {
    showError("");
    try {
      return await handler(...args);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) showError(error.message);
    }
  };
}

// Only the newest of overlapping loads of one list may draw it (answers come out of order),
// and only while its view is on the page (``view``: the element the router gave it).
const generations = {};
export function newest(list, view = null) {
  const mine = (generations[list] = (generations[list] || 0) + 1);
  return () => generations[list] === mine && (view === null || view.isConnected);
}

// <img src> cannot send the key: bytes are fetched with it and shown through a blob URL.
function fill(img, url) {
  api(url)
    .then((response) => response.blob())
    .then((blob) => {
      const src = URL.createObjectURL(blob);
      img.addEventListener("load", () => URL.revokeObjectURL(src), { once: true });
      img.src = src;
    })
    .catch(() => img.classList.add("missing"));
}

// Images far below the screen are fetched only when they come near it.
const lazy = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      lazy.unobserve(entry.target);
      fill(entry.target, entry.target.dataset.src);
    }
  },
  { rootMargin: "400px" },
);

// An <img> of ``url`` fetched with the key; ``later``: once it is near the screen.
export function image(url, alt, { later = false } = {}) {
  const img = el("img", { alt, decoding: "async" });
  if (later) {
    img.dataset.src = url;
    lazy.observe(img);
  } else {
    fill(img, url);
  }
  return img;
}

// Boxes are in an image's own pixels: as percentages of it they follow the displayed size.
export function placeBox(node, [left, top, right, bottom], width, height) {
  Object.assign(node.style, {
    left: `${(100 * left) / width}%`,
    top: `${(100 * top) / height}%`,
    width: `${(100 * (right - left)) / width}%`,
    height: `${(100 * (bottom - top)) / height}%`,
  });
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// A progress bar with its words beside it (for files sent and folders indexed).
export function progressBar(label) {
  const bar = el("progress", { max: 1, value: 0 });
  bar.setAttribute("aria-label", label);
  return bar;
}
