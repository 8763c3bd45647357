"""POST /dream: gradient ascent on an image through gradient.onnx (lens.optvis.render).

Starts from the uploaded image (Deep Dream: amplify what the net sees there) or, with
start=noise|grey, from a synthetic image of `width` x `height` (activation maximisation). A colour
photo dreamed by a greyscale net keeps its size and colours: the net dreams on the luminance and
the photo's chroma is put back. Same seed and input, same output (unless the time budget cuts it).
A dream over CNNLENS_MAX_DREAM_WORK pixel-steps is refused before it starts (422), and it runs in
one of the worker's gradient slots (service.runtime.gradient_slots: 503 when none frees up).
"""
from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace

import numpy as np
from flask import Response, jsonify, request

from lens.optvis.objectives import Objective, ObjectiveError
from lens.optvis.render import Ascent, Progress, Result, Settings as RenderSettings, work
from service import observability
from service.endpoints import targets
from service.plumbing import colour, events, grids, images, openapi, params
from service.plumbing.params import Param
from service.plumbing.problems import Problem, unprocessable
from service.runtime import gradient_slots, preprocess
from service.runtime.served import Served, current

blueprint = openapi.Documented("dream", __name__)
log = logging.getLogger(__name__)
STARTS = ("image", "noise", "grey")
DEFAULT_TARGETS = "conv2"
# The longest a streamed dream goes without a progress event (a step at the largest size takes
# well under this on 2 cores).
PROGRESS_EVERY = 0.25
_DEFAULTS = RenderSettings()
_RENDER_FIELDS = ("step_size", "octave_scale", "jitter", "blur_sigma", "blur_every", "decay",
                  "seed", "time_budget")
# Asked for neither octaves nor steps, a conv target dreams over OCTAVES scales of OCTAVE_STEPS
# steps (as Mordvintsev et al.'s Deep Dream does): the coarse octaves grow larger, bolder patterns
# that follow the picture's shapes, and cost a fraction of full-size steps (a 512x512 photo: 0.36x
# the pixel-steps of one octave of TOTAL_STEPS, in under 4 s; docs/benchmarks.md shows both).
# Images too small for it keep one octave. Given octaves but not steps, a dream takes TOTAL_STEPS
# steps in all.
TOTAL_STEPS = 64
OCTAVES = 4
OCTAVE_STEPS = 12
OCTAVES_FROM_SIDE = 128
TARGETS_HELP = ("comma-separated terms, each optionally weighted with *w: a layer (Deep Dream: "
                "its mean squared activation), layer:k (filter or unit k), class:k (the logit "
                "of class k); layer.pre names a conv or dense layer before its ReLU "
                "(conv2.pre:5); e.g. conv2:5*0.5,class:7; at most {terms} terms, weights "
                "within ±{weight:g}. A unit that is off everywhere on the image is moved through "
                "its pre-activation (X-Dream-Redirected-Steps)").format(
    terms=targets.MAX_TERMS, weight=targets.MAX_WEIGHT)


@params.per_model
def parameters(served: Served) -> list[Param]:
    limits = served.settings
    spec = served.bundle.manifest["input"]
    return [
        Param("targets", str, DEFAULT_TARGETS, TARGETS_HELP),
        Param("start", str, None, "image: the uploaded image (the default when there is one); "
              "noise or grey: a synthetic width x height image (the default without a body)",
              choices=STARTS),
        Param("width", int, spec["width"], "width of a noise or grey start", spec["min_side"],
              _largest_side(served)),
        Param("height", int, spec["height"], "height of a noise or grey start", spec["min_side"],
              _largest_side(served)),
        Param("preprocess", str, "none", "none: dream on the image as it is, at its size; "
              "digit: MNIST-style 28x28 first (needed for dense and class targets)",
              choices=("none", "digit")),
        Param("steps", int, None, f"gradient steps per octave (default: {OCTAVE_STEPS} in the "
              f"default {OCTAVES} octaves, else {TOTAL_STEPS} over all octaves)", 1,
              limits.max_dream_steps),
        Param("step_size", float, _DEFAULTS.step_size, "pixel change per step, relative to the "
              "normalised gradient", 1e-4, 1.0),
        Param("octaves", int, None, "image scales, coarse to fine (conv targets only; default: "
              f"{OCTAVES} when steps is not given either, for conv targets on images of at least "
              f"{OCTAVES_FROM_SIDE} px a side, else 1)", 1, limits.max_dream_octaves),
        Param("octave_scale", float, _DEFAULTS.octave_scale, "size ratio between octaves", 1.0, 4.0),
        Param("jitter", int, _DEFAULTS.jitter, "largest random shift per step, in pixels", 0, 16),
        Param("blur_sigma", float, _DEFAULTS.blur_sigma, "Gaussian blur of the image every "
              "blur_every steps (0: none)", 0.0, 5.0),
        Param("blur_every", int, _DEFAULTS.blur_every, "steps between blurs", 1, 64),
        Param("decay", float, _DEFAULTS.decay, "L2 decay towards black per step", 0.0, 0.5),
        Param("seed", int, _DEFAULTS.seed, "random seed of the jitter and the noise start",
              0, 2**32 - 1),
        Param("time_budget", float, limits.dream_time_budget, "seconds; the dream stops and "
              "answers after this long (X-Dream-Budget-Exhausted: true)", 0.1,
              limits.dream_time_budget),
        Param("preview_every", int, 8, "with Accept: text/event-stream, steps between preview "
              "pictures", 1, limits.max_dream_steps),
    ]


@blueprint.post("/dream")
def dream():
    served = current()
    values = params.read_all(parameters(served))
    objective = targets.parse(values["targets"], _output_layer(served))
    settings = replace(_DEFAULTS, **{field: values[field] for field in _RENDER_FIELDS})
    has_image = bool(request.content_length) or request.mimetype in images.UPLOAD_TYPES
    start_kind = values["start"] or ("image" if has_image else "noise")
    if start_kind == "image":
        start, finish = _from_upload(served, values["preprocess"])
    else:
        if _sent_an_image():   # unused, but a malformed one is refused as anywhere else
            images.from_request(request, 1, served.settings.max_pixels,
                                max_side=_largest_side(served))
        start, finish = _synthetic(served, start_kind, objective, values)
    settings = _with_default_octaves(served, settings, objective, start.shape[1:], values)
    _check_work(start.shape[1:], settings, served.settings.max_dream_work)
    try:
        ascent = Ascent(served.graph, [objective], start[None], settings)
    except ObjectiveError as error:
        raise unprocessable(f"targets: {error}") from None
    wanted = request.accept_mimetypes.best_match(["image/png", "application/json", events.MIMETYPE])
    if wanted == events.MIMETYPE:
        return _stream(served, ascent, objective, finish, values["preview_every"])
    with gradient_slots.hold(served.settings, settings.time_budget):
        result = ascent.run()
    png = _finished(served, result, objective, finish)
    headers = {"X-Dream-Steps-Done": str(result.steps_done),
               "X-Dream-Redirected-Steps": str(int(result.redirected[0])),
               "X-Dream-Budget-Exhausted": str(result.budget_exhausted).lower()}
    if wanted == "application/json":
        return jsonify(_summary(result, objective, png)), 200, headers
    return Response(png, mimetype="image/png", headers=headers)


def _finished(served: Served, result: Result, objective: Objective, finish,
              endpoint: str | None = None) -> bytes:
    """The dream's PNG, counted in the metrics; a 422 Problem if the target never moved."""
    if result.steps_done and not result.moved[0]:
        raise unprocessable(f"targets: the gradient of {objective.description} is zero everywhere "
                            "on this image, even through the pre-activation of its layers: its "
                            "units are off here and nothing feeding them moves them (a dead unit "
                            "is marked in /filters/{layer}); try another image or target")
    observability.dreamed(served.bundle.name, result.steps_done, len(result.images), endpoint)
    return grids.png(grids.to_image(finish(result.images[0])))


def _stream(served: Served, ascent: Ascent, objective: Objective, finish, preview_every: int):
    """The dream as server-sent events: `progress` at least every PROGRESS_EVERY seconds (and at
    each octave's first and last step), `preview` (the picture so far) every `preview_every` steps,
    then `result` (the JSON answer, its PNG the very bytes of the non-streamed answer) or `error`
    (a problem). The gradient slot is taken before the first byte, so a busy worker still answers
    503; a client that goes away stops the dream before its next step and frees the slot."""
    slot = ExitStack()
    slot.enter_context(gradient_slots.hold(served.settings, ascent.settings.time_budget))
    # The stream runs after the request's context has ended (as the access log sees it, the
    # request took until its first byte): what it needs of the request is taken now.
    gone = events.client_gone(request.environ)
    endpoint = request.url_rule.rule

    def stream():
        try:
            yield from _events(served, ascent, objective, finish, preview_every, gone, endpoint)
        finally:   # the stream's end, or gunicorn closing it (a write to a gone client failed)
            slot.close()

    response = Response(stream(), mimetype=events.MIMETYPE, headers=events.HEADERS)
    # A stream that never starts (the client left before the first byte) is only ever closed.
    response.call_on_close(slot.close)
    return response


def _events(served: Served, ascent: Ascent, objective: Objective, finish, preview_every: int,
            gone, endpoint: str) -> Iterator[bytes]:
    started = last = time.monotonic()
    for progress in ascent:
        # The client may have gone during the step: then no more steps. If it goes while an event
        # is written, the write fails and the server closes this generator at that yield.
        if gone():
            _client_left(served, progress, endpoint)
            return
        try:
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY or progress.step in (1, ascent.settings.steps):
                last = now
                yield events.event("progress", _progress(progress, now - started))
            if progress.steps_done % preview_every == 0:
                picture = grids.png(grids.to_image(finish(progress.images()[0])))
                yield events.event("preview", {"steps_done": progress.steps_done,
                                               "image": base64.b64encode(picture).decode("ascii")})
        except GeneratorExit:
            _client_left(served, progress, endpoint)
            raise
    try:
        png = _finished(served, ascent.result, objective, finish, endpoint)
    except Problem as problem:
        yield events.event("error", problem.body())
        return
    yield events.event("result", _summary(ascent.result, objective, png))


def _client_left(served: Served, progress: Progress, endpoint: str) -> None:
    observability.dreamed(served.bundle.name, progress.steps_done, 0, endpoint)
    log.info("dream stopped after %d of %d steps: the client went away", progress.steps_done,
             progress.total_steps)


def _progress(progress: Progress, elapsed: float) -> dict:
    return {"octave": progress.octave, "octaves": progress.octaves, "step": progress.step,
            "steps_done": progress.steps_done, "total_steps": progress.total_steps,
            "objective": float(progress.objective[0]), "elapsed": round(elapsed, 3)}


def _with_default_octaves(served: Served, settings: RenderSettings, objective: Objective,
                          size: tuple[int, int], values: dict) -> RenderSettings:
    """The octaves and steps per octave asked for; where neither is, the default dream."""
    octaves, steps = values["octaves"], values["steps"]
    if octaves is None:
        multiscale = (steps is None and not served.graph.fixed_size_layers([objective])
                      and min(size) >= OCTAVES_FROM_SIDE)
        if multiscale:
            octaves, steps = min(OCTAVES, served.settings.max_dream_octaves), OCTAVE_STEPS
        else:
            octaves = 1
    if steps is None:
        steps = TOTAL_STEPS // octaves
    steps = max(1, min(steps, served.settings.max_dream_steps))
    return replace(settings, octaves=octaves, steps=steps)


def _check_work(size: tuple[int, int], settings: RenderSettings, limit: int) -> None:
    """422 before any gradient run when the dream would cost more than `limit` pixel-steps
    (lens.optvis.render.work), saying how many steps would fit."""
    cost = work(size, settings)
    if cost <= limit:
        return
    fixed = work(size, replace(settings, steps=0))
    fitting = (limit - fixed) // (work(size, replace(settings, steps=1)) - fixed)
    advice = (f"at this size and {settings.octaves} octave(s), steps={fitting} fits"
              if fitting >= 1 else f"one step at {settings.octaves} octave(s) does not fit")
    raise unprocessable(f"this dream is {cost} pixel-steps (steps x pixels, summed over "
                        f"octaves, plus 2 full-size runs); the limit is {limit}: use fewer "
                        f"steps or octaves or a smaller image ({advice})")


def _sent_an_image() -> bool:
    """A body that means to be an image: a multipart one with a file (else it carries only
    parameters), or any other that is not empty."""
    if request.mimetype == "multipart/form-data":
        return "file" in request.files
    return bool(request.content_length)


def _from_upload(served: Served, mode: str):
    """The start image (C x H x W) and how to turn the dreamed planes back into a picture."""
    limits = served.settings
    spec = served.bundle.manifest["input"]
    if mode == "digit":
        start = preprocess.from_request(request, spec, "digit", 1, limits.max_pixels)[0]
        return start, _planes_to_picture
    decoded = images.from_request(request, 1, limits.max_pixels, max_side=_largest_side(served))[0]
    height, width = decoded.rgb.shape[:2]
    if min(height, width) < spec["min_side"]:
        raise unprocessable(f"the image is {width}x{height}; this model's conv layers need sides "
                            f"of at least {spec['min_side']} pixels (preprocess=digit makes any "
                            f"image {spec['width']}x{spec['height']})")
    if spec["channels"] == 3:
        return decoded.rgb.transpose(2, 0, 1), _planes_to_picture
    start = decoded.luminance[None]
    if decoded.grey:
        return start, _planes_to_picture
    return start, lambda planes: colour.with_luminance(decoded.rgb, planes[0])


def _synthetic(served: Served, kind: str, objective: Objective, values: dict):
    shape = (served.bundle.manifest["input"]["channels"], values["height"], values["width"])
    if kind == "grey":
        return np.full(shape, 0.5, np.float32), _planes_to_picture
    low, high = _noise_range(served, objective)
    noise = np.random.default_rng(values["seed"]).uniform(low, high, shape).astype(np.float32)
    return noise, _planes_to_picture


def _noise_range(served: Served, objective: Objective) -> tuple[float, float]:
    """The start noise the bundle's own filter pictures used for this kind of layer (dense layers
    and logits start from faint noise, conv filters from full-range noise)."""
    ranges = served.bundle.manifest["visualizations"]["method"]["start_noise"]
    kinds = {served.bundle.layer(name)["kind"] for name in objective.layers
             if name in {layer["name"] for layer in served.bundle.layers}}
    fixed = sorted(kinds - {"conv"})
    return tuple(ranges.get(fixed[0] if fixed else "conv", (0.0, 1.0)))


def _largest_side(served: Served) -> int:
    """The smaller of the service's limit and the largest side the model's graph is made for."""
    return min(served.settings.max_dream_side, served.bundle.manifest["input"]["max_side"])


def _planes_to_picture(planes: np.ndarray) -> np.ndarray:
    return planes[0] if planes.shape[0] == 1 else planes.transpose(1, 2, 0)


def _output_layer(served: Served) -> str:
    return next(layer["name"] for layer in served.bundle.layers if layer["kind"] == "output")


def _summary(result: Result, objective: Objective, png: bytes) -> dict:
    return {"image": base64.b64encode(png).decode("ascii"),
            "targets": objective.description,
            "objective_before": float(result.objective_before[0]),
            "objective_after": float(result.objective_after[0]),
            "history": [step[0] for step in result.history],
            "steps_done": result.steps_done,
            "redirected_steps": int(result.redirected[0]),
            "budget_exhausted": result.budget_exhausted}


@blueprint.openapi
def _openapi(served, models: list[str]) -> openapi.Part:
    """/dream for /openapi.json."""
    model = openapi.model_parameter(served, models)
    spec = served.bundle.manifest["input"]
    paths = {
        "/dream": {"post": {
            "summary": "Deep Dream an uploaded image, or maximise a target from noise or grey",
            "parameters": [model] + [p.openapi() for p in parameters(served)],
            "requestBody": openapi.upload_body(
                served, False, 1, f"sides from {spec['min_side']} to {_largest_side(served)} pixels "
                "(any size with preprocess=digit)"),
            "responses": {
                "200": {"description": "the dreamed image (PNG, or JSON by Accept); with "
                                       "Accept: text/event-stream, the dream as it goes, as "
                                       "server-sent events: `progress` (a DreamProgress) at "
                                       "least every 0.25 s and at each octave's first and last "
                                       "step, `preview` (a DreamPreview) every preview_every "
                                       "steps, then `result` (a Dream, its image the very bytes "
                                       "of the non-streamed PNG) or `error` (a Problem). "
                                       "Closing the connection stops the dream before its next "
                                       "step",
                        # Not on a streamed answer, whose headers go before the dream runs.
                        "headers": {"X-Dream-Steps-Done": {"schema": {"type": "integer"}},
                                    "X-Dream-Redirected-Steps": {
                                        "schema": {"type": "integer"},
                                        "description": "steps taken on a pre-activation "
                                                       "because the target was off everywhere"},
                                    "X-Dream-Budget-Exhausted": {
                                        "schema": {"type": "string", "enum": ["true", "false"]},
                                        "description": "true: the time budget cut it short"}},
                        "content": openapi.png_response("")["content"] | {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Dream"}},
                            "text/event-stream": {"schema": {"type": "string"}}}}}
                         | openapi.upload_problems() | openapi.UNKNOWN_MODEL | openapi.UNEXPECTED
                         | {"422": openapi.problem_response(
                             "not a decodable image, a parameter outside its bounds, a target "
                             "the model does not have, or more work (steps x pixels, summed "
                             f"over octaves) than {served.settings.max_dream_work} pixel-steps"),
                            "503": openapi.busy_response("every gradient slot of the worker stayed "
                                                 "busy; retry after Retry-After seconds")}}}}
    schemas = {
        "Dream": {"type": "object",
                  "required": ["image", "targets", "objective_before", "objective_after",
                               "history", "steps_done", "redirected_steps",
                               "budget_exhausted"],
                  "properties": {"image": openapi.PNG_BASE64, "targets": {"type": "string"},
                                 "objective_before": {"type": "number"},
                                 "objective_after": {"type": "number"},
                                 "history": openapi.NUMBER_LIST,
                                 "steps_done": {"type": "integer"},
                                 "redirected_steps": {"type": "integer"},
                                 "budget_exhausted": {"type": "boolean"}}},
        "DreamProgress": {"type": "object",
                          "required": ["octave", "octaves", "step", "steps_done", "total_steps",
                                       "objective", "elapsed"],
                          "properties": {"octave": {"type": "integer", "minimum": 1},
                                         "octaves": {"type": "integer", "minimum": 1},
                                         "step": {"type": "integer", "minimum": 1,
                                                  "description": "within the octave"},
                                         "steps_done": {"type": "integer", "minimum": 1},
                                         "total_steps": {"type": "integer", "minimum": 1},
                                         "objective": {"type": "number", "description":
                                                       "before this step"},
                                         "elapsed": {"type": "number", "description":
                                                     "seconds since the first step began"}}},
        "DreamPreview": {"type": "object", "required": ["steps_done", "image"],
                         "properties": {"steps_done": {"type": "integer", "minimum": 1},
                                        "image": openapi.PNG_BASE64}}}
    return openapi.Part(paths, schemas)
