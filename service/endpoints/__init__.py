"""The HTTP API: one blueprint per resource, each module owning its routes, the parameters they
read and their OpenAPI operations (targets.py is /dream's `targets` grammar).

Endpoints may import service.runtime, service.plumbing, service.observability, service.settings
and lens. Nothing imports an endpoint but the app factory, service.create_app."""
