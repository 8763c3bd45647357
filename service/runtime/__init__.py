"""The model runtime: the registry of served bundles, one bundle's onnxruntime sessions and
gradient graph, preprocessing an image into what the model takes, reading out its answers (top-k
labels, degrees of activation), gradient slots (load shedding), the first conv layer's raw
weights, and gunicorn's worker class.

Runtime may import service.plumbing, service.observability, service.settings and lens; never
service.endpoints (tests/test_imports.py)."""
