"""Parameters as people send them: in the query or as multipart form fields beside the file, with
the same bounds and errors; the same one both ways with different values is a 400 naming it; and
on the native API a parameter an operation does not take is a 400 naming those it does (a typo
must not pass silently), while the playground's pages and the /v2 protocol take what they are
given. Each runs on Flask's test client and on gunicorn."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from tests.service import imagefiles
from tests.service.http import Client, InProcess

PATH_EXAMPLES = {"layer": "conv1", "item": "0", "index": "0", "name": "mnist-cnn"}


@pytest.fixture(params=["flask", "gunicorn"])
def lax_api(request) -> Client:
    """A client that may send what the document does not declare (the contract check refuses)."""
    if request.param == "flask":
        return InProcess(request.getfixturevalue("app"))
    return Client(request.getfixturevalue("server").base)


@pytest.fixture(scope="module")
def seven(digits) -> bytes:
    pixels, labels = digits
    return imagefiles.mnist_png(pixels[list(labels).index(7)])


def test_a_form_field_is_read_like_the_query(api, seven):
    by_form = api.post_files("/predict", [seven], fields={"top_k": "1", "activations": "true"})
    by_query = api.post_files("/predict?top_k=1&activations=true", [seven])
    assert by_form.status == by_query.status == 200, by_form.body
    assert by_form.json() == by_query.json()
    assert len(by_form.json()["results"][0]["top_k"]) == 1
    assert "activations" in by_form.json()["results"][0]


@pytest.mark.parametrize("value, status, said", [("0", 422, "outside"), ("99", 422, "outside"),
                                                 ("one", 400, "not an integer")])
def test_a_form_field_has_the_query_parameters_bounds(api, seven, value, status, said):
    reply = api.post_files("/predict", [seven], fields={"top_k": value})
    assert reply.status == status
    assert said in reply.json()["detail"] and "top_k" in reply.json()["detail"]


def test_dream_parameters_as_form_fields(api, seven):
    reply = api.post_files("/dream", [seven], fields={"octaves": "1", "steps": "3"})
    assert reply.status == 200, reply.body
    assert reply.headers["x-dream-steps-done"] == "3"


def test_the_model_as_a_form_field(api, seven):
    assert api.post_files("/predict", [seven], fields={"model": "mnist-cnn"}).status == 200
    unknown = api.post_files("/predict", [seven], fields={"model": "nope"})
    assert unknown.status == 404 and "'nope'" in unknown.json()["detail"]


def test_the_same_parameter_both_ways_with_different_values_is_a_400_naming_it(api, seven):
    reply = api.post_files("/predict?top_k=1", [seven], fields={"top_k": "2"})
    assert reply.status == 400
    assert reply.mimetype == "application/problem+json"
    assert re.search(r"top_k is given twice .*'1' in the query and '2' in the form",
                     reply.json()["detail"])
    assert api.post_files("/predict?top_k=1", [seven], fields={"top_k": "1"}).status == 200


@pytest.mark.parametrize("query, fields", [
    ("top_k=1&top_k=2", {}), ("model=mnist-cnn&model=other", {}),
    ("", {"top_k": ["1", "2"]}), ("preprocess=digit&preprocess=none", {}),
])
def test_a_parameter_repeated_with_different_values_is_a_400_naming_it(api, seven, query, fields):
    """Which one was meant cannot be told (the first would win silently); the same value twice
    says nothing else and is taken."""
    reply = api.post_files(f"/predict?{query}", [seven], fields=fields)
    assert reply.status == 400 and reply.mimetype == "application/problem+json"
    name = (query or next(iter(fields))).split("=")[0]
    assert reply.json()["detail"].startswith(f"{name} is given more than once with different "
                                              "values")
    assert api.post_files("/predict?top_k=2&top_k=2", [seven]).status == 200


def _strict_operations(document: dict) -> list[tuple[str, str, list[str]]]:
    """(METHOD, URL, query parameters) of every operation whose document says it refuses
    parameters it does not take, its path filled in."""
    return [(method.upper(), re.sub(r"\{(\w+)\}", lambda m: PATH_EXAMPLES[m.group(1)], path),
             [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"])
            for path, item in document["paths"].items() for method, operation in item.items()
            if "does not take" in operation["responses"].get("400", {}).get("description", "")]


def test_every_native_operation_is_checked(contract):
    checked = {url for _, url, _ in _strict_operations(contract.document)}
    native = {path for path in contract.document["paths"]
              if not path.startswith(("/v2", "/static", "/docs", "/admin")) and path != "/"}
    assert {re.sub(r"\{(\w+)\}", lambda m: PATH_EXAMPLES[m.group(1)], path)
            for path in native} == checked


def test_an_unknown_query_parameter_is_a_400_naming_the_valid_ones(lax_api, contract):
    for method, url, declared in _strict_operations(contract.document):
        reply = lax_api.request(method, url + "?topk=1")
        assert reply.status == 400, (method, url, reply.body)
        assert reply.mimetype == "application/problem+json"
        detail = reply.json()["detail"]
        assert "'topk'" in detail, detail
        assert all(name in detail for name in declared), (detail, declared)


def test_a_typo_beside_a_good_parameter_is_still_refused(lax_api, seven):
    reply = lax_api.post_files("/predict?top_k=1&activation=true", [seven])
    assert reply.status == 400
    assert "'activation'" in reply.json()["detail"]
    assert "activations" in reply.json()["detail"]


def test_an_unknown_form_field_is_a_400(lax_api, seven):
    reply = lax_api.post_files("/predict", [seven], fields={"topk": "1"})
    assert reply.status == 400
    assert "'topk'" in reply.json()["detail"] and "top_k" in reply.json()["detail"]


@pytest.mark.parametrize("url", ["/?utm_source=newsletter", "/static/app.js?v=2",
                                 "/v2/health/live?verbose=1", "/v2/models/mnist-cnn?x=1"])
def test_pages_and_the_v2_protocol_take_what_they_are_given(lax_api, url):
    assert lax_api.get(url).status == 200


def test_the_document_lists_an_uploads_parameters_as_form_fields(contract):
    operation = contract.document["paths"]["/predict"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    for parameter in operation["parameters"]:
        field = dict(form[parameter["name"]])
        assert field.pop("description").endswith(parameter["description"])
        assert field == parameter["schema"]


def test_a_urlencoded_body_is_not_a_form_of_parameters(api):
    """`curl -d` labels anything as a form: that is a mislabelled body (415), not parameters."""
    reply = api.post("/predict", b'{"image": "iVBORw0KGgo="}', "application/x-www-form-urlencoded")
    assert reply.status == 415


def test_a_dream_from_form_fields_alone(api):
    reply = api.post_files("/dream", [], fields={"start": "noise", "targets": "conv1:0",
                                                 "width": "32", "height": "24", "steps": "2"})
    assert reply.status == 200, reply.body
    assert Image.open(io.BytesIO(reply.body)).size == (32, 24)


def test_admin_stays_absent_whatever_is_asked(lax_api):
    """Off (no CNNLENS_ADMIN_TOKEN in the tests), /admin/reload is a 404 with parameters too."""
    assert lax_api.post("/admin/reload?verbose=1").status == 404


def test_a_form_field_over_flasks_limit_is_a_413_naming_it(api, seven):
    reply = api.post_files("/predict", [seven], fields={"top_k": "1" * 600_000})
    assert reply.status == 413
    assert "'top_k'" in reply.json()["detail"]
