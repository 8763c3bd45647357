"""Checks every reply the tests get against /openapi.json: the path and method are documented,
the query parameters sent are declared, the status and content type are listed for the operation,
the headers it marks required are present, and JSON bodies validate against their schema."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

_ROOT = "urn:cnn-lens:openapi"
_IMPLICIT_METHODS = {"HEAD", "OPTIONS"}   # answered by Flask for every route
_UI_ASSETS = re.compile(r"^/docs/.+")     # Swagger UI's own scripts and styles, not the API


class Contract:
    def __init__(self, document: dict):
        self.document = document
        self.registry = Registry().with_resource(_ROOT, DRAFT202012.create_resource(document))
        self.routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"), template)
                       for template in document["paths"]]

    def check(self, method: str, url: str, reply) -> None:
        parts = urlsplit(url)
        if _UI_ASSETS.match(parts.path):
            return
        template = next((t for pattern, t in self.routes if pattern.match(parts.path)), None)
        if template is None:
            assert reply.status == 404, f"{method} {parts.path} is not documented"
            return self._validate_problem(reply)
        operation = self.document["paths"][template].get(method.lower())
        if operation is None:
            if method not in _IMPLICIT_METHODS:
                assert reply.status == 405, f"{method} {template} is not documented"
                self._validate_problem(reply)
            return
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        sent = set(parse_qs(parts.query, keep_blank_values=True))
        assert sent <= declared, f"{method} {template}: undocumented parameters {sent - declared}"
        response = operation["responses"].get(str(reply.status))
        assert response is not None, f"{method} {template} answered {reply.status}, undocumented"
        for header, spec in response.get("headers", {}).items():
            if spec.get("required"):
                assert header.lower() in reply.headers, f"{method} {template}: no {header} header"
        content = response.get("content", {})
        if not content:   # e.g. 304 Not Modified
            assert not reply.body, f"{method} {template} {reply.status}: a body, none documented"
            return
        assert reply.mimetype in content, (f"{method} {template} {reply.status}: "
                                           f"{reply.mimetype} is not one of {list(content)}")
        pointer = "/".join(_escape(key) for key in
                           ("paths", template, method.lower(), "responses", str(reply.status),
                            "content", reply.mimetype, "schema"))
        if "schema" in content[reply.mimetype] and reply.mimetype.endswith("json"):
            self._validate(json.loads(reply.body), pointer)
        if reply.mimetype == "image/png":
            assert reply.body.startswith(b"\x89PNG\r\n\x1a\n")

    def _validate_problem(self, reply) -> None:
        assert reply.mimetype == "application/problem+json"
        self._validate(json.loads(reply.body), "components/schemas/Problem")

    def _validate(self, instance, pointer: str) -> None:
        validator = Draft202012Validator({"$ref": f"{_ROOT}#/{pointer}"}, registry=self.registry)
        validator.validate(instance)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
