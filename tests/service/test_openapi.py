"""/openapi.json is a valid OpenAPI 3.1 document that covers every route with the bounds in force,
the contract check that every other test runs can fail, and /docs serves Swagger UI locally."""
from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate

from tests.service.conftest import LIMITS
from tests.service.http import Reply
from tests.service.openapi_record import RECORDED


def test_document_is_valid_openapi_3_1(contract):
    assert contract.document["openapi"].startswith("3.1")
    validate(contract.document)


def test_the_document_is_the_recorded_one(contract):
    """The published contract changes only on purpose: `python -m tests.service.openapi_record`
    records it again, and the diff of the recorded file shows the change."""
    assert contract.document == json.loads(RECORDED.read_text())


def test_every_route_is_documented_and_nothing_else(app, contract):
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static",) or rule.endpoint.startswith("docs."):
            continue
        served |= {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
                   for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, item in contract.document["paths"].items()
                  for method in item if path != "/docs/"}
    assert served == documented


def _parameter(document, path, method, name) -> dict:
    return next(p for p in document["paths"][path][method]["parameters"] if p["name"] == name)


def test_bounds_in_the_document_are_the_settings(contract):
    doc = contract.document
    assert _parameter(doc, "/dream", "post", "steps")["schema"]["maximum"] == LIMITS["max_dream_steps"]
    assert _parameter(doc, "/dream", "post", "time_budget")["schema"]["maximum"] == \
        LIMITS["dream_time_budget"]
    assert _parameter(doc, "/filters/{layer}/{item}", "get", "scale")["schema"]["maximum"] == \
        LIMITS["max_scale"]
    files = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert files["schema"]["properties"]["file"]["maxItems"] == LIMITS["max_batch"]


@pytest.mark.parametrize("reply, complaint", [
    (Reply(418, {"content-type": "application/json"}, b"{}"), "undocumented"),
    (Reply(200, {"content-type": "text/plain"}, b"ok"), "not one of"),
    (Reply(200, {"content-type": "application/json"}, b'{"status": "fine"}'), "'ok'"),
])
def test_the_contract_check_catches_what_the_document_does_not_say(contract, reply, complaint):
    with pytest.raises(Exception, match=complaint):
        contract.check("GET", "/healthz", reply)


def test_the_contract_check_catches_undocumented_parameters(contract):
    with pytest.raises(AssertionError, match="undocumented parameters"):
        contract.check("GET", "/healthz?verbose=1",
                       Reply(200, {"content-type": "application/json"}, b'{"status": "ok"}'))


def test_swagger_ui_is_served_from_the_package(api):
    page = api.get("/docs/")
    assert page.status == 200 and page.mimetype == "text/html"
    html = page.body.decode()
    scripts = re.findall(r'src="([^"]+)"', html)
    assert scripts and all(src.startswith("/docs/") for src in scripts)    # no CDN
    assert "/openapi.json" in html
    bundle = api.get("/docs/swagger-ui-bundle.js")
    assert bundle.status == 200 and len(bundle.body) > 100_000
