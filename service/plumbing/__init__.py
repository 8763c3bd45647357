"""HTTP plumbing that knows no model: multipart parsing, query and form parameters, problem
details, JSON, CORS, server-sent events, images in (decoding uploads) and out (PNG grids, colour),
and the OpenAPI document's shared parts and assembly.

Plumbing may import service.settings and lens; never service.observability, service.runtime or
service.endpoints (tests/test_imports.py)."""
