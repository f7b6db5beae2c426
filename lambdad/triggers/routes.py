"""HTTP API route keys, as API Gateway defines them — pure logic.

A route key is ``METHOD /path`` or ``$default``. ``METHOD`` is an HTTP method or ``ANY``; the
path's segments are literal, ``{name}`` (one segment) or, last only, ``{name+}`` (greedy: the
rest of the path, at least one segment). Matching picks the **most specific** route, API
Gateway's rule: full literal matches first, then the route with the most literal leading
segments, a one-segment variable before a greedy one, an exact method before ``ANY``, and
``$default`` last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from lambdad.errors import InvalidParameterValue

METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})
_VAR: Final = re.compile(r"\{([A-Za-z0-9._-]+)(\+?)\}")
_LITERAL: Final = re.compile(r"[A-Za-z0-9._~!$&'()*,;=:@%-]+")


@dataclass(frozen=True)
class Route:
    """A parsed route key."""

    key: str  # as given: "GET /items/{id}" or "$default"
    method: str = ""  # "" for $default
    segments: tuple[str, ...] = ()  # literal text, or "{name}" / "{name+}"

    @property
    def default(self) -> bool:
        return self.key == "$default"

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        """The path parameters when this route takes the request, else None."""
        if self.default:
            return {}
        if self.method != "ANY" and self.method != method:
            return None
        params: dict[str, str] = {}
        for i, seg in enumerate(self.segments):
            var = _VAR.fullmatch(seg)
            if var and var.group(2):
                rest = segments[i:]
                if not rest or rest == [""]:
                    return None
                params[var.group(1)] = "/".join(rest)
                return params
            if i >= len(segments):
                return None
            if var:
                if segments[i] == "":
                    return None
                params[var.group(1)] = segments[i]
            elif seg != segments[i]:
                return None
        return params if len(segments) == len(self.segments) else None

    def rank(self) -> tuple[int, ...]:
        """Sort key: smaller is more specific."""
        if self.default:
            return (2,)
        kinds = []
        for seg in self.segments:
            var = _VAR.fullmatch(seg)
            kinds.append(2 if var and var.group(2) else 1 if var else 0)
        literal_prefix = next((i for i, k in enumerate(kinds) if k), len(kinds))
        all_literal = 0 if all(k == 0 for k in kinds) else 1
        return (0, all_literal, -literal_prefix, *kinds, 9, self.method == "ANY")


def parse(key: str) -> Route:
    """Parse a route key.

    Raises:
        InvalidParameterValue: naming the part that is wrong (``field="route"``).
    """
    if not isinstance(key, str):
        raise InvalidParameterValue(
            "route must be a string such as 'GET /items/{id}'", field="route"
        )
    if key == "$default":
        return Route(key)
    method, sep, path = key.partition(" ")
    if not sep or method not in METHODS:
        raise InvalidParameterValue(
            f"route {key!r}: expected 'METHOD /path' (METHOD one of {', '.join(sorted(METHODS))})"
            " or '$default'",
            field="route",
        )
    if not path.startswith("/"):
        raise InvalidParameterValue(f"route {key!r}: the path must start with '/'", field="route")
    segments = tuple(path[1:].split("/")) if path != "/" else ()
    names: set[str] = set()
    for i, seg in enumerate(segments):
        var = _VAR.fullmatch(seg)
        if var:
            if var.group(2) and i != len(segments) - 1:
                raise InvalidParameterValue(
                    f"route {key!r}: the greedy variable {seg} must be the last segment",
                    field="route",
                )
            if var.group(1) in names:
                raise InvalidParameterValue(
                    f"route {key!r}: variable {{{var.group(1)}}} appears twice", field="route"
                )
            names.add(var.group(1))
        elif not seg or _LITERAL.fullmatch(seg) is None:
            raise InvalidParameterValue(
                f"route {key!r}: invalid path segment {seg!r} (segment {i + 1})", field="route"
            )
    return Route(key, method, segments)


def best(
    routes: list[tuple[Route, object]], method: str, path: str
) -> tuple[Route, object, dict[str, str]] | None:
    """The most specific of ``routes`` (each with its payload object) that takes the request."""
    segments = path[1:].split("/") if path != "/" else []
    found = []
    for route, obj in routes:
        params = route.match(method, segments)
        if params is not None:
            found.append((route.rank(), route.key, route, obj, params))
    if not found:
        return None
    found.sort(key=lambda f: (f[0], f[1]))
    _, _, route, obj, params = found[0]
    return route, obj, params


__all__ = ["METHODS", "Route", "best", "parse"]
