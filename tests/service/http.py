"""A minimal HTTP client over urllib for the tests against the real server (no requests
dependency), with multipart encoding from Werkzeug's test helpers."""
from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def mimetype(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def json(self):
        return json.loads(self.body)


class Client:
    """Talks to a real server. With a contract, every reply is checked against /openapi.json."""

    def __init__(self, base: str, contract=None):
        self.base, self.contract = base, contract

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        reply = self._send(method, path, body, headers or {})
        if self.contract:
            self.contract.check(method, path, reply)
        return reply

    def _send(self, method, path, body, headers) -> Reply:
        # No data rather than b"": urllib labels any data as a form unless told otherwise.
        request = urllib.request.Request(self.base + path, data=body or None, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Reply(response.status, _lower(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, _lower(error.headers), error.read())

    def get(self, path: str, **kwargs) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: bytes = b"", content_type: str | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        headers = dict(headers or {})
        if content_type:
            headers["Content-Type"] = content_type
        return self.request("POST", path, body, headers)

    def post_files(self, path: str, files: list[bytes], field: str = "file",
                   headers: dict[str, str] | None = None,
                   fields: dict[str, str | list[str]] | None = None) -> Reply:
        """`files` as parts named `field`, then `fields` as text fields, as curl -F sends them."""
        boundary, body = multipart(files, field, fields)
        return self.post(path, body, f"multipart/form-data; boundary={boundary}", headers)

    def post_json(self, path: str, document, headers: dict[str, str] | None = None) -> Reply:
        return self.post(path, json.dumps(document).encode(), "application/json", headers)


def multipart(files: list[bytes], field: str = "file",
              fields: dict[str, str | list[str]] | None = None) -> tuple[str, bytes]:
    """A field given a list is sent once per value."""
    parts = MultiDict([(field, FileStorage(io.BytesIO(data), filename=f"{i}.img",
                                           content_type="application/octet-stream"))
                       for i, data in enumerate(files)]
                      + [(name, value) for name, values in (fields or {}).items()
                         for value in (values if isinstance(values, list) else [values])])
    return encode_multipart(parts)


def _lower(headers) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


class InProcess(Client):
    """The same interface over Flask's test client, so one test runs against both."""

    def __init__(self, app, contract=None):
        super().__init__("", contract)
        self.test_client = app.test_client()

    def _send(self, method, path, body, headers) -> Reply:
        response = self.test_client.open(path, method=method, data=body, headers=headers)
        return Reply(response.status_code, _lower(response.headers), response.get_data())
