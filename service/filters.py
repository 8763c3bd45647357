"""GET /filters...: the explainable layers, and what each of their filters has learned.

The pictures are the bundle's own (made at training time by activation maximisation); the first
conv layer's raw kernels are drawn from model.onnx.
"""
from __future__ import annotations

import io

import numpy as np
from flask import Blueprint, Response, jsonify, request
from PIL import Image

from service import grids
from service.params import Param
from service.problems import not_found
from service.served import Served, current
from service.weights import kernel_planes

blueprint = Blueprint("filters", __name__)
WEIGHTS_SCALE = 16   # a 3x3 kernel drawn at 1 pixel per weight is too small to see


def scale_param(served: Served, default: int | None) -> Param:
    return Param("scale", int, default, "upscale by this integer factor, nearest neighbour "
                 f"(default 1; {WEIGHTS_SCALE} for weights)", 1, served.settings.max_scale)


@blueprint.get("/filters")
def layers():
    served = current()
    return jsonify(model={"name": served.bundle.name, "version": served.bundle.manifest["version"]},
                   layers=[_describe(served, layer) for layer in served.bundle.layers])


@blueprint.get("/filters/<layer>")
def layer_filters(layer: str):
    served = current()
    described = _describe(served, _layer(served, layer))
    visual = served.bundle.manifest["visualizations"]["layers"].get(layer)
    described["filters"] = [
        {"index": k, "image": f"/filters/{layer}/{k}" if visual else None,
         "objective": visual["objective"][k] if visual else None}
        for k in range(described["channels"])]
    return jsonify(described)


@blueprint.get("/filters/<layer>/<item>")
def filter_image(layer: str, item: str):
    served = current()
    _layer(served, layer)
    if item == "weights":
        return _weights(served, layer)
    visual = served.bundle.manifest["visualizations"]["layers"].get(layer)
    if visual is None:
        raise not_found(f"the bundle has no pictures for layer {layer!r}")
    if item == "atlas":
        path = visual["atlas"]
    elif item.isdigit() and int(item) < visual["count"]:
        path = visual["filters"].format(index=int(item))
    else:
        raise not_found(f"layer {layer!r} has filters 0..{visual['count'] - 1}, 'atlas' and "
                        f"(first conv layer only) 'weights'; not {item!r}")
    scale = scale_param(served, 1).read()
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
    if name == _first_conv(served):
        links["weights"] = f"/filters/{name}/weights"
    return {key: layer[key] for key in ("name", "kind", "channels", "kernel", "stride",
                                        "receptive_field", "shape", "any_size")} | {"links": links}


def _first_conv(served: Served) -> str | None:
    return next((entry["name"] for entry in served.bundle.layers if entry["kind"] == "conv"), None)
