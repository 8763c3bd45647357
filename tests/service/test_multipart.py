"""service.plumbing.multipart against werkzeug's own streaming parser, the reference it replaces."""
from __future__ import annotations

import io

import numpy as np
import pytest
import urllib3
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser
from werkzeug.test import encode_multipart

from service.plumbing import multipart
from service.plumbing.multipart import FormDataParser


def _werkzeug(body: bytes, boundary: str):
    form, files = MultiPartParser().parse(io.BytesIO(body), boundary.encode(), len(body))
    return _plain(form, files)


def _ours(body: bytes, boundary: str, max_parts: int | None = None):
    parser = FormDataParser(max_form_parts=max_parts)
    _, form, files = parser.parse(io.BytesIO(body), "multipart/form-data", len(body),
                                  {"boundary": boundary})
    return _plain(form, files)


def _plain(form, files):
    return (list(form.items(multi=True)),
            [(name, f.filename, f.content_type, f.read()) for name, f in files.items(multi=True)])


def _tricky_payloads():
    """Binary payloads full of what a parser could mistake for structure."""
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b"\r\n-ab\x00\xff", np.uint8)
    return [b"", b"\r\n", b"--", b"\r\n--", b"\r\n\r\n"] + [
        rng.choice(alphabet, size).tobytes() for size in (1, 7, 100, 5000)]


@pytest.mark.parametrize("payload", _tricky_payloads())
def test_files_and_fields_as_werkzeug_reads_them(payload):
    fields = {"note": "grüße", "file": ("7.png", payload, "image/png"),
              "other": ("x.bin", payload[::-1], "application/octet-stream")}
    body, content_type = urllib3.encode_multipart_formdata(fields)
    boundary = content_type.split("boundary=")[1]
    assert _ours(body, boundary) == _werkzeug(body, boundary)
    assert _ours(body, boundary)[1][0][3] == payload


def test_werkzeug_test_client_bodies():
    boundary, body = encode_multipart(MultiDict([
        ("file", FileStorage(io.BytesIO(b"\x89PNG"), "a.png")),
        ("file", FileStorage(io.BytesIO(b"GIF8"), "b.gif")), ("k", "v")]))
    assert _ours(body, boundary) == _werkzeug(body, boundary)
    assert [f[3] for f in _ours(body, boundary)[1]] == [b"\x89PNG", b"GIF8"]


def test_preamble_epilogue_transport_padding_and_folded_headers():
    body = (b"ignored preamble\r\n--XyZ  \r\n"
            b"Content-Disposition: form-data;\r\n\tname=\"file\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\nPIXELS\r\n--XyZ--\r\nignored epilogue")
    assert _ours(body, "XyZ") == _werkzeug(body, "XyZ") == (
        [], [("file", "a.png", "image/png", b"PIXELS")])


@pytest.mark.parametrize("body", [
    b"",
    b"no boundary anywhere",
    b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
    b"--XyZjunk\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--XyZ--",
    b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nv\r\n--XyZ--",   # no blank line
    b"--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--",                # no name
    b"--XyZ\r\nnot a header\r\n\r\nv\r\n--XyZ--",
])
def test_malformed_bodies_are_bad_requests(body):
    with pytest.raises(BadRequest):
        _ours(body, "XyZ")


def test_part_count_limit():
    fields = [("file", (f"{i}.png", b"x")) for i in range(5)]
    body, content_type = urllib3.encode_multipart_formdata(fields)
    boundary = content_type.split("boundary=")[1]
    assert len(_ours(body, boundary, max_parts=5)[1]) == 5
    with pytest.raises(RequestEntityTooLarge):
        _ours(body, boundary, max_parts=4)


def test_flask_requests_use_it(app):
    assert app.request_class is multipart.Request
