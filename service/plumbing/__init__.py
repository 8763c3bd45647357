"""HTTP plumbing that knows no model: multipart parsing, query and form parameters, problem
details, JSON, CORS, server-sent events, images in (decoding uploads) and out (PNG grids, colour),
and the OpenAPI document's shared parts and assembly.

Plumbing may import service.settings and service.observability, and lens for its data types;
never service.runtime or service.endpoints."""
