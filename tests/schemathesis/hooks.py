"""schemathesis hooks for rollgate: a serializer for `application/toml` policy bodies.

`PUT /api/v1/policies/{name}` takes a policy as JSON or as TOML (like the files in
`policies/`). schemathesis generates the same value for both media types; this writes a
generated object as TOML. A value TOML cannot hold (a top-level non-table, a null) is written
so that the server must refuse it: a top-level non-table as its JSON text, which is no TOML
document; a null member is left out, which is what `null` means in the JSON body too.
"""

import json
import math

import schemathesis


def _string(s):
    """A TOML basic string: control characters, DEL, quote and backslash escaped."""
    out = []
    for c in s:
        if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _key(k):
    if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k):
        return k
    return _string(k)


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        text = repr(v)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_scalar(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(type(v))


def to_toml(value):
    if not isinstance(value, dict):
        return json.dumps(value)
    lines = []
    for k, v in value.items():
        if v is not None:
            lines.append(f"{_key(k)} = {_scalar(v)}")
    return "\n".join(lines) + "\n"


@schemathesis.serializer("application/toml")
def toml_serializer(ctx, value):
    return to_toml(value).encode("utf-8")


# ---------------------------------------------------------------- reaching the server's logic
#
# A generated flag, segment or policy almost never names the same key as its path, nor uses
# variants that it declares, so the server answers 422 and nothing is ever created. For
# schema-valid (positive) cases only, these few cross-field rules are made to hold, so that
# creation, and the operations on what was created, are fuzzed too. The body stays
# schema-valid.

_TYPED = {"boolean": (False, True), "string": ("off", "on"), "number": (0, 1), "object": ({}, {"on": True})}
_KEYED = {
    "/api/v1/flags/{key}": ("key", "key"),
    "/api/v1/segments/{key}": ("key", "key"),
    "/api/v1/policies/{name}": ("name", "name"),
}


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive:
        return
    body = case.body
    if case.method.upper() != "PUT" or not isinstance(body, dict):
        return
    keyed = _KEYED.get(case.operation.path)
    if keyed is None:
        return
    param, field = keyed
    if isinstance(body.get(field), str) and body[field]:
        case.path_parameters = {**(case.path_parameters or {}), param: body[field]}
    if case.operation.path == "/api/v1/flags/{key}":
        values = _TYPED.get(body.get("type"))
        variants = body.get("variants")
        if values and isinstance(variants, dict):
            for name, value in zip((body.get("off_variant"), body.get("on_variant")), values):
                if isinstance(name, str):
                    variants[name] = value
            for name in list(variants):
                if name not in (body.get("off_variant"), body.get("on_variant")):
                    variants[name] = values[0]
