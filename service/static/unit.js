// The unit page's evidence, below the picture: whether the unit is dead and why, how often it
// fires on the training digits, how its picture compares with the best of them, the nine digits
// that excite it most (GET /filters/{layer}/{k}/examples: JSON for the numbers, the same URL as
// an <img> for the sprite), conv1's raw weights, and a dense unit's votes for classes. A bundle
// built before dataset examples has none of this: the page says so rather than showing nothing.

import {getJSON, url} from "./api.js";

const REBUILD = "This bundle was built before dataset examples; rebuild it " +
  "(python -m training export) to see the training digits that excite this unit, how often it " +
  "fires and whether it is dead.";

function byId(id) {
  return document.getElementById(id);
}

function element(tag, properties = {}, children = []) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

function percent(p) {
  return `${(100 * p).toFixed(p > 0 && p < 0.01 ? 2 : 0)}%`;
}

function signed(value) {
  return `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(2)}`;
}

export function unitName(layer, k, labels) {
  if (layer.kind === "output") return `${layer.name} class ${labels[k] ?? k}`;
  return `${layer.name} ${layer.kind === "conv" ? "filter" : "neuron"} ${k}`;
}

export class UnitDetails {
  constructor() {
    this.dead = byId("unit-dead");
    this.facts = byId("unit-facts");
    this.missing = byId("unit-missing");
    this.examplesFigure = byId("examples-figure");
    this.examplesImage = byId("examples-image");
    this.examplesCaption = byId("examples-caption");
    this.weights = byId("unit-weights");
    this.kernels = byId("weights-grid");
    this.pushes = byId("unit-pushes");
  }

  clear() {
    for (const node of [this.dead, this.missing, this.examplesFigure, this.weights, this.pushes]) {
      node.hidden = true;
    }
    this.facts.replaceChildren();
  }

  // `entry`: the unit's line in GET /filters/{layer}; `stale()` is true once another unit was
  // chosen while this one's examples were on their way.
  async show(layer, entry, stale) {
    this.clear();
    if (!entry?.examples) {
      this.showOldBundle(entry);
      return;
    }
    const unit = await getJSON(entry.examples);
    if (stale()) return;
    this.showDead(unit.dead);
    this.showFacts(layer, unit);
    // A unit that no digit makes fire has no examples: its "best" nine are an arbitrary pick of
    // digits that all leave it at 0. (A logit is never off: its examples always mean something.)
    if (layer.kind === "output" || unit.best_degree > 0) this.showExamples(layer, entry, unit);
    if (unit.weights) this.showWeights(unit.weights);
    if (unit.pushes) this.showPushes(unit.pushes);
  }

  // Without dataset examples a picture that never made its unit fire proves nothing either way:
  // the optimisation may have started where the unit is off and never found a way up.
  showOldBundle(entry) {
    this.missing.textContent = REBUILD;
    this.missing.hidden = false;
    if (entry?.objective === 0) {
      this.facts.append(element("li", {textContent: "Its optimised picture never made it fire " +
        "(objective 0): it may be dead, or the optimisation missed what excites it."}));
    }
  }

  showDead(reason) {
    if (!reason) return;
    this.dead.replaceChildren(element("strong", {textContent: "Dead unit: "}), reason + ".");
    this.dead.hidden = false;
  }

  showFacts(layer, unit) {
    const count = unit.digits.count;
    const facts = [];
    if (unit.fire_rate !== null) {
      facts.push(layer.kind === "output"
        ? `The top class on ${percent(unit.fire_rate)} of the ${count} training digits.`
        : `Fires on ${percent(unit.fire_rate)} of the ${count} training digits` +
          (layer.kind === "conv" ? " (somewhere in its feature map)." : "."));
    }
    const best = unit.best_degree.toFixed(2);
    if (unit.fidelity === null) {
      // Not dead, so its picture does make it fire (a dead unit's note says the rest).
      if (!unit.dead) {
        facts.push("No training digit makes it fire, so it has no dataset examples; its " +
          "optimised picture does: it responds to something no training digit shows.");
      }
    } else if (unit.fidelity <= 0) {
      facts.push(`Its optimised picture does not make it fire, though training digits do ` +
        `(the best reaches a degree of activation of ${best}): the optimisation missed what excites it.`);
    } else {
      const times = unit.fidelity.toFixed(unit.fidelity < 1 ? 2 : 1);
      facts.push(`Its optimised picture reaches a degree of activation of ` +
        `${(unit.fidelity * unit.best_degree).toFixed(2)}: ${times}× that of the training digit ` +
        `that excites it most (${best})` +
        (unit.fidelity < 1 ? "; real digits beat the picture." : "."));
    }
    this.facts.replaceChildren(...facts.map((text) => element("li", {textContent: text})));
  }

  showExamples(layer, entry, unit) {
    const where = layer.kind === "conv"
      ? "; the orange box is the receptive field of the place where it fires most" : "";
    this.examplesImage.src = url(entry.examples);
    this.examplesImage.alt = `The ${unit.examples.length} training digits that excite ` +
      `${layer.name} ${unit.index} most: ` + unit.examples.map((e) => e.label).join(", ");
    this.examplesCaption.replaceChildren(
      element("ol", {className: "examples"}, unit.examples.map((e) => element("li", {}, [
        element("strong", {textContent: e.label}), ` · ${e.degree.toFixed(2)}`]))),
      `The ${unit.examples.length} training digits that excite it most, best first, row by ` +
      `row (label · degree of activation)${where}.`);
    this.examplesFigure.hidden = false;
  }

  // One grid per input channel, each weight as a cell shaded on this kernel's own symmetric
  // scale (as /filters/conv1/weights draws the layer): mid-grey 0, light positive, dark negative.
  showWeights(weights) {
    const peak = Math.max(...weights.flat(2).map(Math.abs), 1e-9);
    this.kernels.replaceChildren(...weights.map((rows, channel) => {
      const grid = element("div", {className: "kernel", role: "img"});
      grid.setAttribute("aria-label", `${weights.length > 1 ? `input channel ${channel}: ` : ""}` +
        rows.map((row) => row.map((w) => w.toFixed(2)).join(" ")).join("; "));
      for (const w of rows.flat()) {
        const shade = Math.round(255 * (0.5 + 0.5 * w / peak));
        const cell = element("span", {textContent: w.toFixed(2)});
        cell.style.background = `rgb(${shade}, ${shade}, ${shade})`;
        cell.style.color = shade > 140 ? "#000" : "#fff";
        grid.append(cell);
      }
      return grid;
    }));
    this.weights.hidden = false;
  }

  showPushes(pushes) {
    const list = (id, entries) => byId(id).replaceChildren(...entries.map((e) =>
      element("li", {}, [element("strong", {textContent: e.class}), ` ${signed(e.weight)}`])));
    list("pushes-up", pushes.up);
    list("pushes-down", pushes.down);
    this.pushes.hidden = false;
  }
}
