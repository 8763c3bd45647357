// The dream panel: POST /dream with a target built from the form (layer, layer:k or class:k),
// streamed as server-sent events: a progress bar, the picture as it evolves, a Cancel button that
// closes the connection (which stops the server's work), then the before and after pictures and
// the result as a downloadable PNG behind a blob: URL (the data stays in the page; no second
// request). A unit the bundle found dead (it never fires) dreams a grey picture: the panel starts
// on a live one and says so when a dead one is chosen.

import {ApiError, png, postImageEvents} from "./api.js";

function byId(id) {
  return document.getElementById(id);
}

function pngBlob(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Blob([bytes], {type: "image/png"});
}

export class Dream {
  // `listings`: layer name -> GET /filters/{layer}, whose entries say which units are dead.
  constructor(layers, labels, {listings, input, onError, onStart, limits, signal}) {
    this.layers = layers;
    this.labels = labels;
    this.listings = listings;
    this.input = input;          // () => the current data URL, or null
    this.onError = onError;
    this.onStart = onStart;      // a new dream: an earlier error no longer applies
    this.blobURL = null;
    this.origin = "";            // what the after picture's caption says it started from
    this.kind = byId("dream-kind");
    this.layer = byId("dream-layer");
    this.index = byId("dream-index");
    this.steps = byId("dream-steps");
    this.octaves = byId("dream-octaves");
    this.start = byId("dream-start");
    this.button = byId("dream");
    this.cancel = byId("dream-cancel");
    this.progress = byId("dream-progress");
    this.deadNote = byId("dream-dead");
    this.controller = null;
    if (limits.steps) this.steps.max = limits.steps;
    if (limits.octaves) this.octaves.max = limits.octaves;
    for (const layer of layers.filter((entry) => entry.kind !== "output")) {
      this.layer.append(new Option(`${layer.name} (${layer.kind}, ${layer.channels})`, layer.name));
    }
    this.layer.value = layers.filter((entry) => entry.kind === "conv").at(-1)?.name ?? this.layer.value;
    const filters = listings.get(this.layer.value)?.filters ?? [];
    this.index.value = filters.find((entry) => !entry.dead)?.index ?? 0;
    this.kind.addEventListener("change", () => this.fit(), {signal});
    this.layer.addEventListener("change", () => this.fit(), {signal});
    this.index.addEventListener("input", () => this.showDead(), {signal});
    this.button.addEventListener("click", () => this.run(), {signal});
    this.cancel.addEventListener("click", () => this.controller?.abort(), {signal});
    this.fit();
  }

  // Show only the fields the chosen kind of target uses, with the right bound on the index.
  fit() {
    const kind = this.kind.value;
    byId("dream-layer-field").hidden = kind === "class";
    byId("dream-index-field").hidden = kind === "layer";
    const count = kind === "class" ? this.labels.length
      : this.layers.find((entry) => entry.name === this.layer.value)?.channels ?? 1;
    this.index.max = count - 1;
    if (Number(this.index.value) > count - 1) this.index.value = count - 1;
    this.showDead();
  }

  showDead() {
    const reason = this.kind.value === "filter"
      && this.listings.get(this.layer.value)?.filters[Number(this.index.value)]?.dead;
    this.deadNote.hidden = !reason;
    if (reason) {
      this.deadNote.textContent = `${this.layer.value} filter ${this.index.value} is dead: ` +
        `it ${reason}. A dream cannot make it fire either.`;
    }
  }

  targets() {
    const kind = this.kind.value;
    if (kind === "class") return `class:${this.index.value}`;
    if (kind === "layer") return this.layer.value;
    return `${this.layer.value}:${this.index.value}`;
  }

  // Dense layers and classes see only 28x28 digits, at one scale: so one octave, and a drawing
  // goes through the same digit preprocessing as /predict.
  async run() {
    const status = byId("dream-status");
    const kind = this.kind.value;
    const layer = this.layers.find((entry) => entry.name === this.layer.value);
    const convOnly = kind !== "class" && layer?.kind === "conv";
    const fromImage = this.start.value === "image";
    const image = fromImage ? this.input() : null;
    if (fromImage && !image) {
      this.onError(new Error("Draw or upload something first to dream from it, or start from noise."));
      return;
    }
    const params = {
      targets: this.targets(), steps: this.steps.value,
      octaves: convOnly ? this.octaves.value : 1,
      start: fromImage ? "image" : "noise",
      preprocess: fromImage && !convOnly ? "digit" : undefined,
    };
    this.onStart();
    this.button.disabled = true;
    this.cancel.hidden = false;
    this.progress.hidden = false;
    this.progress.value = 0;
    this.controller = new AbortController();
    status.textContent = "Dreaming…";
    this.showBefore(image);
    let answer = null;
    let done = 0;
    try {
      await postImageEvents("/dream", params, image, (name, data) => {
        if (name === "progress") {
          done = data.steps_done;
          this.progress.max = data.total_steps;
          this.progress.value = done;
          status.textContent = `Octave ${data.octave} of ${data.octaves}, step ${data.step}: ` +
            `objective ${data.objective.toFixed(3)}`;
        } else if (name === "preview") {
          done = data.steps_done;
          this.showPreview(data.image);
        } else if (name === "result") {
          answer = data;
        } else if (name === "error") {
          throw new ApiError(data.status, data.title, data.detail);
        }
      }, {signal: this.controller.signal});
      if (!answer) throw new Error("The dream ended without its result; try again.");
      this.showAfter(answer);
      status.textContent = `${answer.targets}: objective ${answer.objective_before.toFixed(3)} → ` +
        `${answer.objective_after.toFixed(3)} in ${answer.steps_done} steps` +
        (answer.budget_exhausted ? " (stopped by the time budget)" : "");
    } catch (error) {
      if (error.name === "AbortError") {
        status.textContent = `Cancelled after ${done} steps.`;
      } else {
        status.textContent = "";
        this.onError(error);
      }
    } finally {
      this.controller = null;
      this.button.disabled = false;
      this.cancel.hidden = true;
      this.progress.hidden = true;
    }
  }

  // The pictures appear with the first dream; a dream from noise has no "before" to show.
  showBefore(image) {
    byId("dream-pictures").hidden = false;
    byId("dream-before-figure").hidden = !image;
    if (image) byId("dream-before").src = image;
    this.origin = image ? "" : " (from random noise)";
    byId("dream-after").hidden = true;
    byId("dream-after-caption").textContent = "";
    byId("dream-download").hidden = true;
  }

  // The picture so far; the download waits for the result.
  showPreview(base64) {
    const after = byId("dream-after");
    after.src = png(base64);
    after.hidden = false;
    byId("dream-after-caption").textContent = `so far${this.origin}`;
  }

  showAfter(answer) {
    // The previous result's blob is no longer shown or linked: free it.
    if (this.blobURL) URL.revokeObjectURL(this.blobURL);
    this.blobURL = URL.createObjectURL(pngBlob(answer.image));
    const after = byId("dream-after");
    after.src = this.blobURL;
    after.hidden = false;
    byId("dream-after-caption").textContent = `after${this.origin}`;
    const link = byId("dream-download");
    link.href = this.blobURL;
    link.download = `dream-${this.targets().replace(/[^\w-]+/g, "_")}.png`;
    link.hidden = false;
  }
}
