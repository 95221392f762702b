// The API: every call sends the key (X-API-Key, kept in this browser); a failed call throws
// an ApiError whose message is the server's own words, never its raw JSON.

const KEY = "lookalike.key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const getKey = () => localStorage.getItem(KEY) || "";
export const setKey = (key) => localStorage.setItem(KEY, key);

// Who is told when the server wants a key (401): the key form, set by app.js.
let onUnauthorised = () => {};
export function whenUnauthorised(handler) {
  onUnauthorised = handler;
}

// What a failed answer says, in words: the API's {"error": {"code", "message"}}, else the
// status line.
async function failure(response) {
  let code = "error";
  let message = `the server answered ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) ({ code, message } = body.error);
  } catch {
    // not the API's error shape: keep the status line
  }
  if (response.status === 401) onUnauthorised(message);
  return new ApiError(response.status, code, message);
}

export async function api(path, { method = "GET", json, form } = {}) {
  const headers = { "X-API-Key": getKey() };
  let body = form;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch {
    throw new ApiError(0, "offline", "the server did not answer: is it still running?");
  }
  if (response.ok) return response;
  throw await failure(response);
}

export const getJson = async (path, options) => (await api(path, options)).json();

// Upload ``form`` with XMLHttpRequest (fetch cannot report upload progress): calls
// ``progress(sent, total)`` as the bytes go; resolves to the answer's JSON.
export function upload(path, form, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("X-API-Key", getKey());
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => progress(e.loaded, e.total || 0));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve(xhr.response);
      const error = xhr.response && xhr.response.error;
      if (xhr.status === 401) onUnauthorised(error ? error.message : "");
      const message = error ? error.message : `the server answered ${xhr.status}`;
      reject(new ApiError(xhr.status, error ? error.code : "error", message));
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, "offline", "the upload did not reach the server")),
    );
    xhr.send(form);
  });
}

export const thumbUrl = (id, size = 256) => `/v1/images/${id}/thumbnail?size=${size}`;
export const faceThumbUrl = (id) => `/v1/faces/${id}/thumbnail`;
