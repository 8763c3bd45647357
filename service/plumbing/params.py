"""Parameters, each declared once with its type, default and bounds: handlers read them with
`Param.read` and /openapi.json describes them with `Param.openapi`, so the document states the
bounds that are enforced. A value of the wrong type is a 400; a well-formed value outside its
bounds is a 422; the detail says what is allowed.

A parameter comes in the query string or, with a multipart upload, as a form field beside the
file (`curl -F file=@7.png -F top_k=1`, as TorchServe and most upload APIs take it), with the same
bounds either way. Given in both with different values it is a 400 naming it: which one was meant
cannot be told. Given twice in one of them with different values, and not declared by its
operation at all, it is refused before the handler runs (service.endpoints.docs)."""
from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass

from flask import Request, request
from werkzeug.datastructures import MultiDict

from service.plumbing.problems import bad_request, unprocessable

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
_OPENAPI_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: type                        # int, float, bool or str
    default: object
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def read(self):
        return self.parse(given(self.name))

    def parse(self, raw: str | None):
        """The value of `raw` as given in the query or form (None: not given)."""
        if raw is None:
            return self.default
        value = {int: self._integer, float: self._number, bool: self._boolean,
                 str: self._string}[self.kind](raw)
        if self.low is not None and not self.low <= value <= self.high:
            raise unprocessable(f"{self.name}={value} is outside [{self.low}, {self.high}]")
        return value

    def openapi(self) -> dict:
        schema = {"type": _OPENAPI_TYPES[self.kind]}
        if self.default is not None:
            schema["default"] = self.default
        if self.low is not None:
            schema |= {"minimum": self.low, "maximum": self.high}
        if self.choices:
            schema["enum"] = list(self.choices)
        return {"name": self.name, "in": "query", "required": False,
                "description": self.description, "schema": schema}

    def _integer(self, raw: str) -> int:
        try:
            return int(raw)
        except ValueError:
            raise bad_request(f"{self.name}={raw!r} is not an integer") from None

    def _number(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise bad_request(f"{self.name}={raw!r} is not a number") from None
        if not math.isfinite(value):
            raise bad_request(f"{self.name}={raw!r} is not a finite number")
        return value

    def _boolean(self, raw: str) -> bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise bad_request(f"{self.name}={raw!r} is not true or false")

    def _string(self, raw: str) -> str:
        if self.choices and raw not in self.choices:
            raise unprocessable(f"{self.name}={raw!r} is not one of {', '.join(self.choices)}")
        return raw


def given(name: str) -> str | None:
    """The raw value of parameter `name`, from the query or the form; None when absent."""
    req = request._get_current_object()   # once: each access through the proxy costs ~0.8 µs
    return _given(name, req.args, form_fields(req))


def _given(name: str, query, form) -> str | None:
    # (not MultiDict.get, which raises and catches an exception for each parameter not given)
    in_query = query[name] if name in query else None
    in_form = form[name] if name in form else None
    if in_query is not None and in_form is not None and in_query != in_form:
        raise bad_request(f"{name} is given twice with different values: {in_query!r} in the "
                          f"query and {in_form!r} in the form; give it once")
    return in_query if in_query is not None else in_form


def form_fields(req: Request) -> dict[str, str] | MultiDict:
    """A multipart upload's text fields. Any other body's are none: a urlencoded body here is a
    mislabelled image or JSON, which the image reader refuses with a 415."""
    return req.form if req.mimetype == "multipart/form-data" else {}


def read_all(declared: list[Param]) -> dict:
    req = request._get_current_object()
    query, form = req.args, form_fields(req)
    return {param.name: param.parse(_given(param.name, query, form)) for param in declared}


def per_model(declare):
    """For an endpoint's `parameters(served)`: the list is made once per served model (a reload
    makes a new one), since its bounds and texts depend on the bundle, never on the request."""
    made = weakref.WeakKeyDictionary()

    @functools.wraps(declare)
    def declared(served) -> list[Param]:
        found = made.get(served)
        if found is None:
            found = made[served] = declare(served)
        return found
    return declared


def names(text: str) -> list[str]:
    """A comma-separated list, e.g. feature_maps=conv1,conv2."""
    return [part.strip() for part in text.split(",") if part.strip()]
