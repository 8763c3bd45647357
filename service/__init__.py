"""cnn-lens's HTTP service: a Flask app over one model bundle, run on onnxruntime (never torch).

`create_app(settings)` builds it; gunicorn serves `service.wsgi:app` (see gunicorn.conf.py).
"""
from __future__ import annotations

from flask import Flask
from PIL import Image

from service.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Raises lens.bundle.BundleError (a bad bundle, or no default model) or
    service.settings.SettingsError."""
    # Imported here, flaskr style, so that gunicorn.conf.py can read service.settings in the
    # master without importing onnxruntime: workers forked from a process that imported it hang
    # or abort when they exit.
    from service.endpoints import (admin, docs, dream, explain, feature_maps, filters, health,
                                   models, page, predict, v2)
    from service.observability import register as observe
    from service.plumbing import cors, multipart, problems
    from service.plumbing.json_provider import OrjsonProvider
    from service.runtime.registry import Registry
    from service.runtime.served import EXTENSION

    settings = settings or Settings.from_env()
    # No implicit /static route: service.endpoints.page serves service/static, with its headers.
    app = Flask(__name__, static_folder=None)
    app.request_class = multipart.Request
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.debug = False   # whatever FLASK_DEBUG says: no debug behaviour in a served app
    app.json = OrjsonProvider(app)
    # Pillow's decompression-bomb guard, at our bound: it warns above it and refuses above twice
    # it, a second line behind the header check in service.plumbing.images.
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    app.extensions[EXTENSION] = Registry.load(settings)
    problems.register(app)
    cors.register(app, settings.allowed_origins)   # off unless CNNLENS_CORS_ORIGINS is set
    observe(app, settings.default_model)   # request ids, JSON log, request metrics, GET /metrics
    for module in (predict, dream, filters, health, models, admin, docs, v2, page, explain,
                   feature_maps):
        app.register_blueprint(module.blueprint)
    app.register_blueprint(docs.swagger_ui)
    return app
