"""GET /filters...: the explainable layers, and what each of their filters has learned.

The pictures are the bundle's own (made at training time by activation maximisation), and so are
the dataset examples (the training digits that excite each unit most, OpenAI Microscope's
"dataset examples"); the first conv layer's raw kernels are drawn from model.onnx.
"""
from __future__ import annotations

import io

import numpy as np
from flask import Blueprint, Response, jsonify, request
from PIL import Image

from service.plumbing import grids
from service.plumbing.params import Param
from service.plumbing.problems import not_found
from service.runtime.served import Served, current
from service.runtime.weights import kernel_planes

blueprint = Blueprint("filters", __name__)
WEIGHTS_SCALE = 16   # a 3x3 kernel drawn at 1 pixel per weight is too small to see
NO_EXAMPLES = ("this bundle was built before dataset examples (no units.json); rebuild it with "
               "python -m training export")


def scale_param(served: Served, default: int | None) -> Param:
    return Param("scale", int, default, "upscale by this integer factor, nearest neighbour "
                 f"(default 1; {WEIGHTS_SCALE} for weights)", 1, served.settings.max_scale)


@blueprint.get("/filters")
def layers():
    served = current()
    return jsonify(model=_model(served),
                   layers=[_describe(served, layer) for layer in served.bundle.layers])


@blueprint.get("/filters/<layer>")
def layer_filters(layer: str):
    served = current()
    described = _describe(served, _layer(served, layer))
    visual = _visual(served, layer)
    units = (served.units or {}).get("layers", {}).get(layer)
    described["filters"] = [
        {"index": k, "image": f"/filters/{layer}/{k}" if visual else None,
         "objective": visual["objective"][k] if visual else None,
         "fidelity": _fidelity(visual, k), "dead": _dead(visual, k),
         "fire_rate": units[k].get("fire_rate") if units else None,
         "examples": f"/filters/{layer}/{k}/examples" if units else None}
        for k in range(described["channels"])]
    return jsonify(described)


@blueprint.get("/filters/<layer>/<item>")
def filter_image(layer: str, item: str):
    served = current()
    _layer(served, layer)
    if item == "weights":
        return _weights(served, layer)
    visual = _visual(served, layer)
    if visual is None:
        raise not_found(f"the bundle has no pictures for layer {layer!r}")
    index = _index(item, visual["count"])
    if item == "atlas":
        path = visual["atlas"]
    elif index is not None:
        path = visual["filters"].format(index=index)
    else:
        raise not_found(f"layer {layer!r} has filters 0..{visual['count'] - 1}, 'atlas' and "
                        f"(first conv layer only) 'weights'; not {item!r}")
    return _bundle_png(served, path, scale_param(served, 1).read())


@blueprint.get("/filters/<layer>/<index>/examples")
def unit_examples(layer: str, index: str):
    """The unit's dataset examples: JSON, or with Accept preferring image/png the bundle's sprite
    of them (one URL, so that what a page shows and what it reads cannot disagree)."""
    served = current()
    _layer(served, layer)
    scale = scale_param(served, 1).read()   # checked for JSON too: a bad value is always a 4xx
    units = _layer_units(served, layer)
    k = _index(index, len(units))
    if k is None:
        raise not_found(f"layer {layer!r} has units 0..{len(units) - 1}; not {index!r}")
    if request.accept_mimetypes.best_match(["application/json", "image/png"]) == "image/png":
        response = _bundle_png(served, served.bundle.manifest["units"]["sprites"]
                               .format(layer=layer, index=k), scale)
    else:
        response = jsonify(_unit(served, layer, units[k]))
    response.vary.add("Accept")
    return response


def _unit(served: Served, layer: str, unit: dict) -> dict:
    k = unit["index"]
    visual = _visual(served, layer)
    links = {"sprite": f"/filters/{layer}/{k}/examples"}
    if visual:
        links["picture"] = f"/filters/{layer}/{k}"
    answer = {"model": _model(served), "layer": layer, "index": k,
              "digits": served.units["digits"], "fire_rate": unit.get("fire_rate"),
              "best_degree": unit["best_degree"], "dead": _dead(visual, k),
              "fidelity": _fidelity(visual, k), "examples": unit["examples"]}
    if "pushes" in unit:
        answer["pushes"] = unit["pushes"]
    if layer == _first_conv(served) and served.first_conv_kernels is not None:
        answer["weights"] = served.first_conv_kernels[k]
        links["weights"] = f"/filters/{layer}/weights"
    return answer | {"links": links}


def _layer_units(served: Served, layer: str) -> list[dict]:
    if served.units is None:
        raise not_found(NO_EXAMPLES)
    units = served.units["layers"].get(layer)
    if units is None:
        raise not_found(f"the bundle has no dataset examples for layer {layer!r}")
    return units


def _index(text: str, count: int) -> int | None:
    """A unit index in 0..count-1, or None. ASCII digits only: str.isdigit also accepts '²',
    which int() refuses."""
    if text.isascii() and text.isdigit() and int(text) < count:
        return int(text)
    return None


def _visual(served: Served, layer: str) -> dict | None:
    return served.bundle.manifest["visualizations"]["layers"].get(layer)


def _fidelity(visual: dict | None, k: int) -> float | None:
    return visual["fidelity"][k] if visual and "fidelity" in visual else None


def _dead(visual: dict | None, k: int) -> str | None:
    return visual.get("dead", {}).get(str(k)) if visual else None


def _bundle_png(served: Served, path: str, scale: int) -> Response:
    if scale > 1:
        with Image.open(io.BytesIO(served.files[path])) as image:
            return _png(grids.upscale(image, scale))
    # The manifest's sha256 of the file is its strong ETag: a browser revalidating gets a 304.
    response = Response(served.files[path], mimetype="image/png")
    response.set_etag(served.bundle.manifest["files"][path]["sha256"])
    return response.make_conditional(request)


def _weights(served: Served, layer: str) -> Response:
    first_conv = _first_conv(served)
    kernels = served.first_conv_kernels
    if layer != first_conv or kernels is None:
        raise not_found(f"raw weights are viewable for the first conv layer ({first_conv}) only")
    scale = scale_param(served, WEIGHTS_SCALE).read()
    planes = kernel_planes(kernels)                    # out x in x kh x kw
    per_input = [grids.grid(planes[:, c]) for c in range(planes.shape[1])]
    picture = per_input[0] if len(per_input) != 3 else np.stack(per_input, axis=-1)
    return _png(grids.upscale(grids.to_image(picture), scale))


def _png(image) -> Response:
    return Response(grids.png(image), mimetype="image/png")


def _model(served: Served) -> dict:
    return {"name": served.bundle.name, "version": served.bundle.manifest["version"]}


def _layer(served: Served, name: str) -> dict:
    try:
        return served.bundle.layer(name)
    except KeyError:
        raise not_found(f"no layer {name!r}; layers: "
                        f"{', '.join(entry['name'] for entry in served.bundle.layers)}") from None


def _describe(served: Served, layer: dict) -> dict:
    name = layer["name"]
    links = {"self": f"/filters/{name}", "filter": f"/filters/{name}/{{index}}"}
    if name in served.bundle.manifest["visualizations"]["layers"]:
        links["atlas"] = f"/filters/{name}/atlas"
    if served.units is not None and name in served.units["layers"]:
        links["examples"] = f"/filters/{name}/{{index}}/examples"
    if name == _first_conv(served):
        links["weights"] = f"/filters/{name}/weights"
    return {key: layer[key] for key in ("name", "kind", "channels", "kernel", "stride",
                                        "receptive_field", "shape", "any_size")} | {"links": links}


def _first_conv(served: Served) -> str | None:
    return next((entry["name"] for entry in served.bundle.layers if entry["kind"] == "conv"), None)
