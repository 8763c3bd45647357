"""multipart/form-data (RFC 7578) parsed in one pass over the whole body.

Werkzeug's streaming parser compiles two regular expressions for every new boundary, and real
clients (curl, browsers, requests) send a new random boundary with every request: that compile
was 1.2 ms of the 3 ms a one-image /predict cost. The body is already capped by
MAX_CONTENT_LENGTH (CNNLENS_MAX_REQUEST_BYTES), so it can be read at once and cut with
bytes.find, which is linear and needs no per-boundary work. The result is what werkzeug gives:
`request.files` holds FileStorage objects, `request.form` the text fields. `Request`, the app's
request class, parses forms so and reads every body, multipart or not, as gunicorn delivers it
(`Request.stream`).
"""
from __future__ import annotations

import io
import re

from flask import Request as FlaskRequest
from werkzeug.datastructures import FileStorage, Headers
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser as WerkzeugFormDataParser
from werkzeug.http import parse_options_header
from werkzeug.utils import cached_property

from service.plumbing.problems import body_too_large

CRLF = b"\r\n"
_FOLDED = re.compile(rb"\r\n[ \t]+")   # obsolete header line folding (RFC 5322), as werkzeug takes it


class FormDataParser(WerkzeugFormDataParser):
    def _parse_multipart(self, stream, mimetype, content_length, options):
        boundary = options.get("boundary", "").encode("ascii", "replace")
        if not boundary:
            raise BadRequest("multipart/form-data without a boundary parameter")
        form, files = [], []
        for headers, payload in parts(stream.read(), boundary, self.max_form_parts):
            _, extra = parse_options_header(headers.get("content-disposition"))
            name, filename = extra.get("name"), extra.get("filename")
            if name is None:
                raise BadRequest("a multipart part has no Content-Disposition with a name")
            if filename is None:
                if self.max_form_memory_size is not None and len(payload) > self.max_form_memory_size:
                    raise RequestEntityTooLarge(f"the form field {name!r} is over "
                                                f"{self.max_form_memory_size} bytes")
                form.append((name, payload.decode("utf-8", "replace")))
            else:
                files.append((name, FileStorage(io.BytesIO(payload), filename, name,
                                                headers=headers)))
        return stream, self.cls(form), self.cls(files)


class Request(FlaskRequest):
    form_data_parser_class = FormDataParser

    @cached_property
    def stream(self):
        """The body. gunicorn ends it at its Content-Length, or at the last chunk of a chunked one
        (wsgi.input_terminated), so: a declared length within the limit is read as it comes,
        without werkzeug's wrapper that counts its bytes against the limit (about 10 µs a request
        in a loaded worker); a chunked body is read up to one byte past the limit and refused (413)
        if it has that byte, where werkzeug's wrapper cuts it at the limit and passes it on as if
        whole. A body that ends before its declared length (its client stopped sending) or a
        chunked one that the server cannot read to its end is refused (400), as werkzeug's
        wrapper refuses them."""
        limit, length = self.max_content_length, self.content_length
        if limit is None or not self.environ.get("wsgi.input_terminated"):
            return super().stream
        if length is None:
            try:
                body = self.environ["wsgi.input"].read(limit + 1)
            except Exception as error:   # the server's reader: a malformed or unfinished chunk
                raise BadRequest(f"the chunked request body cannot be read: {error}") from None
            if len(body) > limit:
                raise RequestEntityTooLarge(body_too_large(limit))
            return io.BytesIO(body)
        return _Declared(self.environ["wsgi.input"], length) if length <= limit else super().stream


class _Declared:
    """A body of a declared length, as the server reads it: what it reads short (the client sent
    fewer bytes and stopped) is a 400, not a body that merely happens to be shorter."""

    def __init__(self, source, length: int):
        self.source, self.left = source, length

    def read(self, size: int | None = -1) -> bytes:
        data = self.source.read(size)
        self.left -= len(data)
        if self.left > 0 and (size is None or size < 0 or len(data) < size):
            raise BadRequest(f"the request body ended {self.left} bytes before its "
                             "Content-Length")
        return data


def parts(body: bytes, boundary: bytes, max_parts: int | None = None) -> list[tuple[Headers, bytes]]:
    """The (headers, payload) of each part. Raises BadRequest for a body that is not multipart
    with this boundary, RequestEntityTooLarge for more than `max_parts` parts."""
    opening = b"--" + boundary
    delimiter = CRLF + opening
    if body.startswith(opening):
        start = len(opening)
    else:   # a preamble, which RFC 2046 says to ignore
        found = body.find(delimiter)
        if found < 0:
            raise BadRequest("the multipart body does not contain its boundary")
        start = found + len(delimiter)
    found_parts = []
    while not body.startswith(b"--", start):   # "--boundary--" closes the body
        line_end = body.find(CRLF, start)
        if line_end < 0 or body[start:line_end].strip(b" \t"):
            raise BadRequest("the multipart body has a malformed boundary line")
        end = body.find(delimiter, line_end)
        if end < 0:
            raise BadRequest("the multipart body ends without its closing boundary")
        if max_parts is not None and len(found_parts) >= max_parts:
            raise RequestEntityTooLarge(f"more than {max_parts} multipart parts")
        found_parts.append(_part(body[line_end + len(CRLF):end]))
        start = end + len(delimiter)
    return found_parts


def _part(raw: bytes) -> tuple[Headers, bytes]:
    if raw.startswith(CRLF):   # no headers at all
        return Headers(), raw[len(CRLF):]
    head, separator, payload = raw.partition(CRLF + CRLF)
    if not separator:
        raise BadRequest("a multipart part has no blank line after its headers")
    headers = Headers()
    for line in _FOLDED.sub(b" ", head).decode("utf-8", "replace").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            raise BadRequest("a multipart part has a malformed header line")
        headers.add(name.strip(" \t"), value.strip(" \t"))
    return headers, payload
