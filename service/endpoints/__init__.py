"""The HTTP API: one blueprint per resource, each module owning its routes, the parameters they
read and their OpenAPI operations (targets.py is /dream's `targets` grammar).

Endpoints may import service.runtime, service.plumbing, service.observability, service.settings
and lens, and not each other (but dream its targets). Nothing imports an endpoint but the app
factory, service.create_app (tests/test_imports.py)."""
