// The public HTTP API, same origin. Every error answer is RFC 9457 problem+json; its `detail` is
// written for people, so ApiError carries it to the page as the message to show.

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
  }
}

let model = null;   // null: the server's default model (no ?model= at all)
// The model repository lists every model: it takes no ?model= (and the API refuses parameters an
// endpoint does not take).
const EVERY_MODEL = new Set(["/models"]);

export function useModel(name) {
  model = name;
}

// Adds ?model= when a model other than the default is chosen, to every URL of one model, images
// included.
export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  if (model && !EVERY_MODEL.has(path)) query.set("model", model);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function send(path, params, init) {
  const response = await fetch(url(path, params), init);
  if (!response.ok) throw await problem(response);
  return response;
}

async function problem(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.title, body.detail);
  } catch {
    return new ApiError(response.status, response.statusText, "");
  }
}

export async function getJSON(path, params = {}, init = {}) {
  return (await send(path, params, init)).json();
}

// `image` is a data URL (a canvas's toDataURL, or an uploaded file read as one): the service
// accepts {"image": dataURL} for every image endpoint, so one body shape serves them all.
function imageRequest(image, accept, init) {
  return {
    ...init,
    method: "POST",
    headers: {"Content-Type": "application/json", "Accept": accept},
    body: image === null ? undefined : JSON.stringify({image}),
  };
}

export async function postImage(path, params, image, init = {}) {
  return (await send(path, params, imageRequest(image, "application/json", init))).json();
}

// The same request answered as server-sent events: onEvent(name, data) for each event as it
// arrives (EventSource cannot POST). Aborting init.signal closes the connection, which stops the
// server's work; an error thrown by onEvent ends the stream the same way.
export async function postImageEvents(path, params, image, onEvent, init = {}) {
  const response = await send(path, params, imageRequest(image, "text/event-stream", init));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buffer += value;
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const lines = buffer.slice(0, end).split("\n");
        buffer = buffer.slice(end + 2);
        const name = lines.find((line) => line.startsWith("event: "))?.slice(7) ?? "message";
        const data = lines.filter((line) => line.startsWith("data: ")).map((line) => line.slice(6));
        onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

export function png(base64) {
  return `data:image/png;base64,${base64}`;
}
