// What the page shows about the network: class probabilities, per-layer activation bars and
// feature maps, the unit page (with an explanation when the service has POST /explain), and the
// atlas browser. Bars and tiles are buttons, so every unit is reachable by keyboard; dead units
// are marked on both.

import {png, postImage, url} from "./api.js";
import {UnitDetails, unitName} from "./unit.js";

const FILTER_SCALE = 8;   // filter pictures are 28x28: 224 px, crisp (nearest neighbour)
const TILE_SCALE = 2;

function element(tag, properties = {}, children = []) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

// What a button that works on the current input says when there is none.
export const NO_INPUT = "Draw a digit or upload an image first.";

// The ten classes as a bar chart, in label order so that bars do not jump around while drawing;
// when the service says the input does not look like a digit (digit_like false), the page says so
// first and greys the bars, instead of announcing a confident wrong digit.
export class Probabilities {
  constructor(list, top, labels) {
    this.list = list;
    this.top = top;
    this.rows = labels.map((label) => {
      const fill = element("span", {className: "fill"});
      const value = element("span", {className: "value", textContent: "–"});
      list.append(element("li", {}, [
        element("span", {className: "label", textContent: label}),
        element("span", {className: "track"}, [fill]),
        value]));
      return {fill, value};
    });
  }

  show(result) {
    for (const {index, probability} of result.top_k) {
      const row = this.rows[index];
      row.fill.style.width = percent(probability);
      row.value.textContent = percent(probability);
    }
    const best = result.top_k[0];
    const guess = `${best.label} (${percent(best.probability)})`;
    const digitLike = result.digit_like !== false;   // absent: the bundle cannot tell
    this.list.classList.toggle("not-digit", !digitLike);
    this.top.textContent = digitLike ? `Prediction: ${guess}`
      : `This doesn't look like a digit (the closest class would be ${guess}).`;
  }

  reset() {
    this.list.classList.remove("not-digit");
    for (const row of this.rows) {
      row.fill.style.width = "0";
      row.value.textContent = "–";
    }
    this.top.textContent = "Draw a digit to start.";
  }
}

function deadMark(entry) {
  return entry?.dead ? " (dead)" : "";
}

// One block per layer: a bar per filter (its degree of activation, scaled to the layer's
// largest so the strongest filter is full height) and, for conv layers, the feature maps.
// `listings`: layer name -> GET /filters/{layer}, whose entries say which units are dead.
export class Layers {
  constructor(container, layers, listings, {onFilter, featureMaps, onError}) {
    this.blocks = new Map();
    for (const layer of layers) {
      const bars = element("div", {className: "filter-bars", role: "group"});
      bars.setAttribute("aria-label", `${layer.name}: one bar per filter`);
      const buttons = [];
      for (let k = 0; k < layer.channels; k++) {
        const dead = deadMark(listings.get(layer.name)?.filters[k]);
        const fill = element("span", {className: "fill"});
        const button = element("button", {type: "button", className: dead ? "fbar dead" : "fbar"}, [fill]);
        button.addEventListener("click", () => onFilter(layer, k));
        bars.append(button);
        buttons.push({button, fill, dead});
      }
      const block = element("section", {className: "layer"}, [
        element("h3", {textContent: `${layer.name} · ${layer.kind}, ${layer.channels} ` +
                                    (layer.kind === "conv" ? "filters" : "units")}),
        bars]);
      const spatial = layer.shape.length === 3;
      let maps = null, ranking = null;
      if (spatial) {
        maps = element("img", {className: "maps", alt: `${layer.name} feature maps`, hidden: true});
        block.append(element("figure", {}, [maps,
          element("figcaption", {textContent: "feature maps (one scale: the brightest map fires most)"})]));
        if (featureMaps) {
          ranking = element("p", {className: "ranking"});
          block.append(this.labelledButton(layer, maps, ranking, onError));
        }
      }
      container.append(block);
      this.blocks.set(layer.name, {layer, buttons, maps, ranking});
    }
    this.reset();
  }

  // Only when the service has POST /feature-maps: a labelled grid and the filters ranked.
  labelledButton(layer, maps, ranking, onError) {
    const button = element("button", {type: "button", textContent: "Labelled maps and ranking"});
    button.addEventListener("click", async () => {
      if (!this.input) {
        onError(new Error(NO_INPUT));
        return;
      }
      const input = this.input;
      try {
        const answer = await postImage("/feature-maps", {layer: layer.name}, input);
        if (input !== this.input) return;   // the input changed meanwhile: this grid is not its
        maps.src = png(answer.grid);
        maps.classList.add("labelled");
        maps.hidden = false;
        ranking.textContent = "Strongest: " + answer.ranking.slice(0, 5)
          .map((entry) => `${entry.index} (${entry.mean.toFixed(2)})`).join(", ");
      } catch (error) {
        onError(error);
      }
    });
    return element("div", {className: "controls"}, [button, ranking]);
  }

  // Everything shown is about `input`: the bars, the plain feature maps (a labelled grid and a
  // ranking of an earlier input are taken down).
  show(result, input) {
    this.input = input;
    for (const [name, {buttons, maps, ranking}] of this.blocks) {
      const degrees = result.activations?.[name];
      if (degrees) {
        const peak = Math.max(...degrees.mean.map(Math.abs), 1e-9);
        degrees.mean.forEach((mean, k) => {
          const {fill} = buttons[k];
          fill.style.height = `${Math.max(0, (100 * mean) / peak).toFixed(1)}%`;
          // A dense unit is one number: its mean and max are the same.
          this.label(name, k, `activation ${mean.toFixed(3)}` +
                              (maps ? `, max ${degrees.max[k].toFixed(3)}` : ""));
        });
      }
      const grid = result.feature_maps?.[name];
      if (maps && grid) {
        maps.src = png(grid);
        maps.classList.remove("labelled");
        maps.hidden = false;
      }
      if (ranking) ranking.textContent = "";
    }
  }

  // No input: empty bars, no maps, no ranking.
  reset() {
    this.input = null;
    for (const [name, {buttons, maps, ranking}] of this.blocks) {
      buttons.forEach(({fill}, k) => {
        fill.style.height = "0";
        this.label(name, k);
      });
      if (maps) {
        maps.hidden = true;
        maps.removeAttribute("src");
      }
      if (ranking) ranking.textContent = "";
    }
  }

  label(name, k, degree) {
    const {button, dead} = this.blocks.get(name).buttons[k];
    const text = `${name} filter ${k}${degree ? `: ${degree}` : ""}${dead}`;
    button.setAttribute("aria-label", text);
    button.title = text;
    button.dataset.degree = degree ?? "";
  }

  // The bar's "activation …, max …" for the current input; "" without one.
  degree(name, k) {
    return this.blocks.get(name)?.buttons[k]?.button.dataset.degree ?? "";
  }
}

// A unit's page: what it has learned (GET /filters/{layer}/{k}), the evidence from the training
// digits (UnitDetails) and, with POST /explain, why the network decided what it did on the
// current input.
export class Inspector {
  constructor(root, {explain, layers, listings, labels, onError, signal}) {
    this.root = root;
    this.layers = layers;
    this.listings = listings;
    this.labels = labels;
    this.onError = onError;
    this.heading = root.querySelector("#inspector-heading");
    this.details = new UnitDetails();
    this.image = root.querySelector("#filter-image");
    this.caption = root.querySelector("#filter-caption");
    this.explainFigure = root.querySelector("#explain-figure");
    this.explainImage = root.querySelector("#explain-image");
    this.explainCaption = root.querySelector("#explain-caption");
    this.method = root.querySelector("#explain-method");
    this.explainAvailable = explain;
    root.querySelector("#explain-controls").hidden = !explain;
    root.querySelector("#explain").addEventListener("click", () => this.explain(), {signal});
    this.current = null;
  }

  // The heading takes the focus, so a keyboard or screen-reader user lands on the page opened.
  show(layer, k, degree, input) {
    const current = {layer, k};
    this.current = current;
    this.root.hidden = false;
    const name = unitName(layer, k, this.labels);
    this.heading.textContent = name;
    this.image.src = url(`/filters/${layer.name}/${k}`, {scale: FILTER_SCALE});
    this.image.alt = `The image that maximises ${name}`;
    this.heading.focus({preventScroll: true});
    this.root.scrollIntoView({block: "nearest"});
    this.update(degree, input);
    this.details.show(layer, this.listings.get(layer.name)?.filters[k], () => this.current !== current)
      .catch(this.onError);
  }

  // The open page follows the current input: its degree of activation now, and the explanation
  // of this input (none without one).
  update(degree, input) {
    if (!this.current) return;
    const {layer, k} = this.current;
    this.input = input;
    const entry = this.listings.get(layer.name)?.filters[k];
    this.caption.textContent = `${unitName(layer, k, this.labels)}: ` + (entry?.dead
      ? "its optimised picture, which does not make it fire either"
      : "what it responds to most") + (degree ? ` — now ${degree}` : "");
    this.explainFigure.hidden = true;
    if (this.explainAvailable && input) this.explain();
  }

  // Grad-CAM needs a conv layer: the clicked one, or else the last conv layer. A click on an
  // output unit explains that class; otherwise the predicted class.
  async explain() {
    if (!this.current) return;
    if (!this.input) {
      this.onError(new Error(NO_INPUT));
      return;
    }
    const {layer, k} = this.current;
    const input = this.input;
    const convs = this.layers.filter((entry) => entry.kind === "conv");
    const method = this.method.value;
    const params = {method};
    if (method === "gradcam") params.layer = layer.kind === "conv" ? layer.name : convs.at(-1)?.name;
    if (layer.kind === "output") params.target = k;
    try {
      const answer = await postImage("/explain", params, input);
      if (input !== this.input || this.current.layer !== layer || this.current.k !== k) return;
      const {label, probability} = answer.target;
      this.explainImage.src = png(answer.overlay);
      this.explainImage.alt = `${method} for class ${label}`;
      // Saying whose evidence it is: on a hidden unit's page it is still the class's.
      this.explainCaption.textContent = (layer.kind === "output"
        ? `Where this input shows class ${label} (${percent(probability)})`
        : `Why the network says ${label} (${percent(probability)})`) +
        `: ${this.method.selectedOptions[0].textContent}${params.layer ? ` on ${params.layer}` : ""}`;
      this.explainFigure.hidden = false;
    } catch (error) {
      this.onError(error);
    }
  }
}

// Every filter of a layer as a tile (a button), which is the atlas made browsable.
export class Atlas {
  constructor(select, container, link, layers, listings, onFilter, signal) {
    this.container = container;
    this.link = link;
    this.listings = listings;
    this.onFilter = onFilter;
    this.layers = layers.filter((layer) => layer.links.atlas);
    for (const layer of this.layers) select.append(element("option", {value: layer.name, textContent: layer.name}));
    select.addEventListener("change", () => this.open(select.value), {signal});
  }

  open(name) {
    const layer = this.layers.find((entry) => entry.name === name);
    if (!layer) return;
    this.link.href = url(layer.links.atlas, {scale: 4});
    this.container.replaceChildren(...this.listings.get(name).filters.filter((f) => f.image).map((f) => {
      const tile = element("button", {type: "button", className: f.dead ? "tile dead" : "tile"}, [
        element("img", {src: url(f.image, {scale: TILE_SCALE}), alt: "", width: 56, height: 56, loading: "lazy"}),
        element("span", {textContent: `${f.index}${f.dead ? " dead" : ""}`})]);
      tile.setAttribute("aria-label", `${layer.name} filter ${f.index}${deadMark(f)}`);
      tile.addEventListener("click", () => this.onFilter(layer, f.index));
      return tile;
    }));
  }
}
