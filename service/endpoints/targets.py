"""The `targets` parameter of /dream, parsed into lens objectives.

Grammar: terms separated by commas, each optionally weighted with `*w`:
    conv2          Deep Dream on a whole layer (mean squared activation)
    conv2:7        filter 7 of a conv layer, or unit 7 of a dense layer (its degree of activation)
    class:3        the logit of output class 3
e.g. `conv2:5*0.5,class:7`. Syntax errors are 400; names and indices the bundle does not have are
422 (lens.optvis.objectives.ObjectiveError, raised where they are checked).
"""
from __future__ import annotations

import math
import operator
from functools import reduce

from lens.optvis.objectives import Objective, channel, class_logit, deepdream
from service.plumbing.problems import bad_request

MAX_TERMS = 16
MAX_WEIGHT = 100.0


def parse(text: str, output_layer: str) -> Objective:
    terms = [term.strip() for term in text.split(",")]
    if not text.strip() or not all(terms):
        raise bad_request(f"targets={text!r}: give comma-separated terms such as conv2, "
                          "conv2:5, class:7, each optionally weighted (conv2:5*0.5)")
    if len(terms) > MAX_TERMS:
        raise bad_request(f"targets: {len(terms)} terms; the limit is {MAX_TERMS}")
    return reduce(operator.add, (_term(term, output_layer) for term in terms))


def _term(term: str, output_layer: str) -> Objective:
    spec, _, weight_text = term.partition("*")
    weight = _weight(term, weight_text) if weight_text else 1.0
    name, colon, index_text = spec.strip().partition(":")
    if not colon:
        objective = deepdream(name)
    else:
        if not index_text.strip().isdigit():
            raise bad_request(f"targets: {term!r}: the index after ':' must be a whole number")
        index = int(index_text)
        objective = class_logit(index, output_layer) if name == "class" else channel(name, index)
    return objective * weight if weight != 1.0 else objective


def _weight(term: str, text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise bad_request(f"targets: {term!r}: the weight after '*' is not a number") from None
    if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
        raise bad_request(f"targets: {term!r}: the weight must be finite and within "
                          f"[-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}]")
    return weight
