"""Schema fuzzing: schemathesis generates requests for every operation of the served
/openapi.json, valid and invalid ones, and sends them to a real gunicorn. No answer may be a 5xx,
and every answer must be one the document lists for its operation, with its content type, headers
and schema. Seeded and bounded, so a run is the same every time and takes about 30 s."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from service.settings import env_name
from tests.service.conftest import gunicorn_env, served_document, serving
from tests.service.http import Client

SEED = 1
EXAMPLES = 100   # per operation, on top of schemathesis' coverage cases: ~3,000 requests, ~30 s
TOKEN = "fuzz-admin-token"
# A short dream budget bounds the cost of the largest /dream the fuzzer may ask for (at the test
# limits, up to 10 s each); the document, and so what is fuzzed, states the same budget.
OVERRIDES = {"dream_time_budget": 0.5}

# schemathesis.pytest.from_fixture would load the live document inside a fixture, but fails on
# pytest 9 (it sets Node._nodeid, which pytest 9 no longer has); so the schema is this app's
# document at collection, and the first test checks that the live server serves the same.
DOCUMENT = served_document(**OVERRIDES)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict({
    "seed": SEED,
    # The admin token, so /admin/reload is fuzzed past its 401 and ignored_auth can check that
    # it is enforced (the token is configured on the server below).
    "auth": {"openapi": {"adminToken": {"bearer": TOKEN}}},
    "checks": {
        # Valid per the schema is not always valid: random bytes labelled image/png or random
        # base64 satisfy the document but are no image, and are rightly refused (400/422).
        "positive_data_acceptance": {"enabled": False},
        # Schemathesis' default list lacks 413, this API's documented answer to more images
        # than the batch limit (an invalid body by the document's maxItems).
        "negative_data_rejection": {
            "expected-statuses": ["400", "401", "404", "405", "406", "413", "415", "422"]},
    },
}))

# BMP is one of the accepted uploads; schemathesis sends its bytes as they are, as for the others.
schemathesis.serializer.alias("image/bmp", "application/octet-stream")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> str:
    """A real gunicorn with the test limits and OVERRIDES, and the admin endpoint on."""
    env = gunicorn_env(CNNLENS_ADMIN_TOKEN=TOKEN,
                       **{env_name(name): str(value) for name, value in OVERRIDES.items()})
    with serving(env, tmp_path_factory.mktemp("fuzz") / "gunicorn.log") as (_, base):
        yield base


def test_the_fuzzed_document_is_the_one_the_server_serves(fuzzed):
    assert Client(fuzzed).get("/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_every_operation_answers_as_documented(case, fuzzed):
    case.call_and_validate(base_url=fuzzed)
