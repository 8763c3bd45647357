// The playground's wiring: load what the service serves (models, layers, the OpenAPI document to
// learn which optional endpoints exist and their bounds), then keep one current input (a data
// URL: the drawing, or an uploaded file) and send it to /predict whenever it changes.

import {ApiError, getJSON, postImage, useModel} from "./api.js";
import {Pad} from "./canvas.js";
import {Dream} from "./dream.js";
import {Atlas, Inspector, Layers, NO_INPUT, Probabilities} from "./panels.js";

const byId = (id) => document.getElementById(id);
const alertBox = byId("alert");

function showError(error) {
  // Aborted requests are ours (a newer input replaced them), not the user's problem.
  if (error?.name === "AbortError") return;
  alertBox.textContent = error instanceof ApiError || error instanceof Error
    ? error.message : String(error);
  alertBox.hidden = false;
}

function clearError() {
  alertBox.hidden = true;
  alertBox.textContent = "";
}

function paramMaximum(document, path, name) {
  const parameter = document.paths[path]?.post?.parameters?.find((p) => p.name === name);
  return parameter?.schema?.maximum;
}

let input = null;           // the current input as a data URL; null: nothing drawn
let inFlight = null;        // the AbortController of the running /predict
let view = null;            // the panels of the current model
let lifetime = null;        // aborting it removes the listeners of the previous model's panels

// Every panel shows the current input's answer, or nothing: never an earlier input's. True once
// the answer is shown.
async function predict() {
  if (!input || !view) return false;
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  try {
    const answer = await postImage("/predict", view.predictParams, input, {signal: controller.signal});
    clearError();
    const result = answer.results[0];
    view.probabilities.show(result);
    view.layers.show(result, input);
    const open = view.inspector.current;
    if (open) view.inspector.update(view.layers.degree(open.layer.name, open.k), input);
    return true;
  } catch (error) {
    if (error?.name !== "AbortError") showNothing();
    showError(error);
    return false;
  } finally {
    if (inFlight === controller) inFlight = null;
  }
}

function showNothing() {
  view?.probabilities.reset();
  view?.layers.reset();
  view?.inspector.update("", null);
}

const pad = new Pad(byId("pad"), () => {
  input = pad.dataURL();
  predict();
});

async function upload(file) {
  // The file itself is the input (not a copy drawn on the canvas), so the service sees it at
  // full resolution and answers for a file it cannot read, with its own words.
  const uploaded = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  input = uploaded;
  const answered = await predict();
  if (input !== uploaded) return;   // a stroke drawn meanwhile is the input now
  if (!answered) {   // refused (not an image, too large...): nothing to draw over
    input = null;
    byId("upload").value = "";
    pad.clear();
    return;
  }
  try {
    pad.show(await createImageBitmap(file));   // a preview to draw over; not every file decodes
    byId("ink").value = pad.ink;
  } catch {
    pad.clear();
  }
}

async function load() {
  const [models, layers, api] = await Promise.all([
    getJSON("/models"), getJSON("/filters"), getJSON("/openapi.json")]);
  // Every layer's filter list, once per model: the atlas, the dead marks and the unit page read it.
  const listings = new Map(await Promise.all(layers.layers.map(
    async (layer) => [layer.name, await getJSON(layer.links.self)])));
  const model = models.models.find((entry) => entry.name === layers.model.name) ?? models.models[0];
  const spatial = layers.layers.filter((layer) => layer.shape.length === 3).map((layer) => layer.name);
  const explain = Boolean(api.paths["/explain"]);
  const featureMaps = Boolean(api.paths["/feature-maps"]);

  lifetime?.abort();
  lifetime = new AbortController();
  const signal = lifetime.signal;
  byId("layers").replaceChildren();
  byId("atlas").replaceChildren();
  byId("atlas-layer").replaceChildren();
  byId("dream-layer").replaceChildren();
  byId("probabilities").replaceChildren();
  byId("inspector").hidden = true;

  const inspector = new Inspector(byId("inspector"), {
    explain, layers: layers.layers, listings, labels: model.labels, onError: showError, signal});
  const openFilter = (layer, k) => inspector.show(layer, k, view.layers.degree(layer.name, k), input);
  view = {
    inspector,
    predictParams: {top_k: model.labels.length, activations: true, feature_maps: spatial.join(",")},
    probabilities: new Probabilities(byId("probabilities"), byId("top-prediction"), model.labels),
    layers: new Layers(byId("layers"), layers.layers, listings, {onFilter: openFilter, featureMaps, onError: showError}),
    atlas: new Atlas(byId("atlas-layer"), byId("atlas"), byId("atlas-link"), layers.layers, listings, openFilter, signal),
  };
  new Dream(layers.layers, model.labels, {
    listings, input: () => input, onError: showError, onStart: clearError, signal,
    limits: {steps: paramMaximum(api, "/dream", "steps"), octaves: paramMaximum(api, "/dream", "octaves")},
  });
  view.atlas.open(byId("atlas-layer").value);
  await predict();
}

async function start() {
  const models = await getJSON("/models");
  const select = byId("model");
  for (const entry of models.models) {
    select.append(new Option(`${entry.name} (version ${entry.version})`, entry.name));
  }
  select.value = models.default;
  select.disabled = models.models.length < 2;
  select.addEventListener("change", () => {
    useModel(select.value === models.default ? null : select.value);
    load().catch(showError);
  });

  byId("clear").addEventListener("click", () => {
    pad.clear();
    input = null;
    byId("upload").value = "";
    showNothing();
    clearError();
  });
  byId("predict").addEventListener("click", () => {
    if (!input) showError(new Error(NO_INPUT));
    else predict();
  });
  byId("ink").addEventListener("change", (event) => {
    pad.setInk(event.target.value);
    if (!pad.blank) {
      input = pad.dataURL();
      predict();
    }
  });
  byId("brush").addEventListener("input", (event) => {
    pad.brush = Number(event.target.value);
  });
  byId("upload").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) upload(file).catch(showError);
  });
  await load();
  document.body.dataset.ready = "true";   // for tests and scripts: the panels are built
}

start().catch(showError);
