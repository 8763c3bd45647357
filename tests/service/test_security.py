"""Security: no debug mode or internals in any answer, even with FLASK_DEBUG set; security headers
on every answer; the admin endpoint's token; CORS off by default and exact when configured.

tests/service/test_models.py covers the admin endpoint's basics (404 without a token, 401 without
a header, with a wrong token and with another scheme); tests/browser the playground's headers as
chromium sees them.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from service import create_app
from service.settings import Settings, SettingsError
from tests.service.conftest import LIMITS, ROOT, gunicorn, gunicorn_env, serving
from tests.service.http import Client, InProcess
from tests.service.reference import MODEL_DIR

TOKEN = "correct-horse-battery-staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ORIGINS = ("https://lens.example", "http://localhost:3000")
# What a stack trace, Werkzeug's debugger or a leaked path would show.
INTERNALS = re.compile(r"Traceback|File \"|werkzeug|debugger|__debugger__|\.py\b|" +
                       re.escape(str(ROOT)), re.I)


# --- a real gunicorn told to debug -----------------------------------------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("security") / "models"
    shutil.copytree(MODEL_DIR, folder / MODEL_DIR.name)
    return folder


@pytest.fixture(scope="module")
def debugging(models, tmp_path_factory) -> Client:
    """gunicorn with every debug switch Flask knows in its environment, and an admin token."""
    env = gunicorn_env(FLASK_DEBUG="1", FLASK_ENV="development", FLASK_RUN_DEBUG="1",
                       CNNLENS_MODELS_DIR=str(models), CNNLENS_ADMIN_TOKEN=TOKEN)
    log = tmp_path_factory.mktemp("debugging") / "gunicorn.log"
    with serving(env, log) as (_, base):
        yield Client(base)


def _assert_bare_problem(reply, status: int) -> None:
    assert reply.status == status, reply.body
    assert reply.mimetype == "application/problem+json"
    assert reply.json()["status"] == status
    assert not INTERNALS.search(reply.body.decode()), reply.body


def test_flask_debug_in_the_environment_does_not_turn_on_debug_mode(monkeypatch, settings):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = create_app(settings)
    assert app.debug is False and not app.config["PROPAGATE_EXCEPTIONS"]


@pytest.mark.parametrize("method, path, body, content_type, status", [
    ("GET", "/no/such/route", None, None, 404),
    ("DELETE", "/predict", None, None, 405),
    ("GET", "/filters/conv1/0?scale=abc", None, None, 400),
    ("POST", "/predict", b"hello", "text/plain", 415),
    ("GET", "/filters/conv1/9999", None, None, 404),
    ("GET", "/filters/conv1/0?scale=10000", None, None, 422),
    ("GET", "/console", None, None, 404),   # Werkzeug's debugger console, if it were on
])
def test_errors_under_flask_debug_are_bare_problems(debugging, method, path, body, content_type,
                                                    status):
    headers = {"Content-Type": content_type} if content_type else {}
    _assert_bare_problem(debugging.request(method, path, body, headers), status)


def test_no_debugger_resources_under_flask_debug(debugging):
    """The debugger middleware answers ?__debugger__=yes&cmd=resource with its own script."""
    reply = debugging.get("/?__debugger__=yes&cmd=resource&f=debugger.js")
    assert reply.status == 200 and reply.mimetype == "text/html"   # the playground, as always
    assert b"debugger" not in reply.body.lower()


def test_an_unexpected_error_under_flask_debug_is_a_bare_500(debugging, models):
    """A reload whose models directory has gone is an error the code does not expect."""
    moved = models.with_name("moved")
    models.rename(moved)
    try:
        _assert_bare_problem(debugging.post("/admin/reload", headers=AUTH), 500)
    finally:
        moved.rename(models)
    assert debugging.post("/admin/reload", headers=AUTH).status == 200


def test_server_header_names_no_version(api):
    reply = api.get("/healthz")
    server = reply.headers.get("server", "")   # gunicorn says "gunicorn"; the test client nothing
    assert not re.search(r"\d|python|werkzeug", server, re.I), server
    assert "x-powered-by" not in reply.headers


# --- security headers ------------------------------------------------------------------------

def _directives(csp: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (part.split() for part in csp.split(";"))}


@pytest.mark.parametrize("method, path", [
    ("GET", "/"), ("GET", "/static/app.js"), ("GET", "/openapi.json"), ("GET", "/models"),
    ("GET", "/filters/conv1/0"), ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/v2"),
    ("GET", "/no/such/route"), ("POST", "/predict"), ("DELETE", "/predict"),
])
def test_every_answer_is_nosniff(api, method, path):
    assert api.request(method, path).headers["x-content-type-options"] == "nosniff"


def test_the_page_allows_no_inline_script_and_no_framing(api):
    headers = api.get("/").headers
    csp = _directives(headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"


class _InlineScripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self._inside = [], False

    def handle_starttag(self, tag, attrs):
        self._inside = tag == "script" and "src" not in dict(attrs)
        if self._inside:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._inside = False

    def handle_data(self, data):
        if self._inside:
            self.scripts[-1] += data


@pytest.mark.parametrize("where", ["flask", "gunicorn"])
def test_the_swagger_ui_allows_exactly_its_own_inline_script(where, request):
    client = InProcess(request.getfixturevalue("app")) if where == "flask" else \
        Client(request.getfixturevalue("server").base)
    reply = client.get("/docs/")
    assert reply.status == 200 and reply.mimetype == "text/html"
    parser = _InlineScripts()
    parser.feed(reply.body.decode())
    assert parser.scripts, "Swagger UI's page has an inline script"
    hashes = {"'sha256-%s'" % base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()
              for s in parser.scripts}
    csp = _directives(reply.headers["content-security-policy"])
    assert set(csp["script-src"]) == {"'self'"} | hashes
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert reply.headers["x-content-type-options"] == "nosniff"


# --- admin -----------------------------------------------------------------------------------

@pytest.mark.parametrize("credential", [
    f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Bearer {TOKEN.upper()}", "Bearer ",
    f"Bearer  {TOKEN}", f"Bearer{TOKEN}", TOKEN,
])
def test_admin_refuses_every_near_miss_of_the_token(debugging, credential):
    reply = debugging.post("/admin/reload", headers={"Authorization": credential})
    assert reply.status == 401 and reply.headers["www-authenticate"].startswith("Bearer")


def test_admin_compares_the_token_in_constant_time():
    """Statically: admin.py compares with hmac/secrets.compare_digest, never with == or !=."""
    tree = ast.parse((ROOT / "service" / "endpoints" / "admin.py").read_text())
    calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert any(isinstance(f, ast.Attribute) and f.attr == "compare_digest" and
               isinstance(f.value, ast.Name) and f.value.id in ("hmac", "secrets") for f in calls)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert not names & {"token", "given"}, ast.unparse(node)


# --- CORS ------------------------------------------------------------------------------------

def _cors_headers(reply) -> dict[str, str]:
    return {k: v for k, v in reply.headers.items() if k.startswith("access-control-")}


def _preflight(client, path: str, origin: str, method: str = "POST"):
    return client.request("OPTIONS", path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type"})


def test_cors_is_off_by_default(api):
    assert _cors_headers(api.get("/models", headers={"Origin": ORIGINS[0]})) == {}
    preflight = _preflight(api, "/predict", ORIGINS[0])
    assert preflight.status == 200 and _cors_headers(preflight) == {}
    assert "origin" not in api.get("/models").headers.get("vary", "").lower()


@pytest.fixture(scope="module", params=["flask", "gunicorn"])
def cors(request, tmp_path_factory) -> Client:
    """The service with CNNLENS_CORS_ORIGINS naming two origins (spaces and a trailing slash
    included, as people write them), on the test client and on gunicorn."""
    value = f" {ORIGINS[0]}/ ,{ORIGINS[1]}"
    if request.param == "flask":
        yield InProcess(create_app(Settings(models_dir=MODEL_DIR, cors_origins=value,
                                            admin_token=TOKEN, **LIMITS)))
        return
    log = tmp_path_factory.mktemp("cors") / "gunicorn.log"
    with serving(gunicorn_env(CNNLENS_CORS_ORIGINS=value, CNNLENS_ADMIN_TOKEN=TOKEN), log) as (_, base):
        yield Client(base)


def _vary(reply) -> set[str]:
    return {v.strip().lower() for v in reply.headers.get("vary", "").split(",")}


@pytest.mark.parametrize("path, method, status", [
    ("/models", "GET", 200), ("/no/such/route", "GET", 404), ("/predict", "DELETE", 405),
])
def test_cors_echoes_an_allowed_origin_on_answers_and_errors(cors, path, method, status):
    for origin in ORIGINS:
        reply = cors.request(method, path, headers={"Origin": origin})
        assert reply.status == status
        assert reply.headers["access-control-allow-origin"] == origin
        assert "origin" in _vary(reply)
        assert "access-control-allow-credentials" not in reply.headers
        exposed = {h.strip().lower() for h in
                   reply.headers["access-control-expose-headers"].split(",")}
        assert "x-request-id" in exposed


@pytest.mark.parametrize("origin", [None, "https://evil.example", "https://lens.example.evil",
                                    "http://lens.example", "https://lens.example:8443", "null"])
def test_cors_tells_other_origins_nothing(cors, origin):
    reply = cors.get("/models", headers={"Origin": origin} if origin else {})
    assert reply.status == 200 and _cors_headers(reply) == {}
    assert "origin" in _vary(reply)   # the answer depends on Origin: caches must know


def test_cors_preflight_of_an_allowed_origin(cors):
    reply = _preflight(cors, "/predict", ORIGINS[0])
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == ORIGINS[0]
    methods = {m.strip() for m in reply.headers["access-control-allow-methods"].split(",")}
    assert "POST" in methods and "GET" not in methods   # the route's own methods
    allowed = {h.strip().lower() for h in reply.headers["access-control-allow-headers"].split(",")}
    assert "content-type" in allowed and "authorization" not in allowed
    assert 0 < int(reply.headers["access-control-max-age"]) <= 7200   # Chromium's cap
    assert "access-control-allow-credentials" not in reply.headers


def test_cors_preflight_of_another_origin_gets_nothing(cors):
    assert _cors_headers(_preflight(cors, "/predict", "https://evil.example")) == {}


def test_the_admin_endpoint_is_never_offered_to_pages(cors):
    assert _cors_headers(_preflight(cors, "/admin/reload", ORIGINS[0])) == {}
    reply = cors.post("/admin/reload", headers={"Origin": ORIGINS[0], **AUTH})
    assert reply.status == 200 and _cors_headers(reply) == {}


def test_cors_for_every_origin():
    client = InProcess(create_app(Settings(models_dir=MODEL_DIR, cors_origins="*", **LIMITS)))
    for origin in ORIGINS + ("https://anyone.example",):
        reply = client.get("/models", headers={"Origin": origin})
        assert reply.headers["access-control-allow-origin"] == "*"
    preflight = _preflight(client, "/dream", "https://anyone.example")
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]


@pytest.mark.parametrize("value", ["lens.example", "https://lens.example/app", "ftp://lens.example",
                                   "*, https://lens.example", "https://", "https://lens example"])
def test_a_malformed_cors_setting_names_the_variable(value):
    with pytest.raises(SettingsError, match="CNNLENS_CORS_ORIGINS"):
        Settings.from_env({"CNNLENS_CORS_ORIGINS": value})


def test_a_malformed_cors_setting_stops_gunicorn(tmp_path):
    with open(tmp_path / "log", "wb") as log:
        process = gunicorn(gunicorn_env(CNNLENS_BIND="127.0.0.1:0",
                                        CNNLENS_CORS_ORIGINS="lens.example"), log)
    try:
        assert process.wait(timeout=30) != 0
    finally:
        process.kill()
    assert "CNNLENS_CORS_ORIGINS: 'lens.example' is not an origin" in (tmp_path / "log").read_text()
