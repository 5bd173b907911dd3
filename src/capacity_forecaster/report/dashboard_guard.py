"""What the dashboard does with hostile requests: size limit (413), input checks (400), short error logs.

The callbacks take their values from the browser, so anything can arrive there: a number as text,
a list where a dict is expected, a 150 MB string. Bodies over ``dashboard.max_request_bytes`` are
refused before they are read; callback values are checked and a bad one is answered with 400 and
one short line; any other failure is logged with its message cut short (never a whole payload)
and answered with a plain 500.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Container, Iterable
from typing import Any

from dash.exceptions import CallbackException, DependencyException
from flask import Flask, request
from werkzeug.exceptions import BadRequest, HTTPException, NotFound

log = logging.getLogger(__name__)

# Characters of a bad value or an exception message that reach a response or the log.
SHOWN_CHARS = 80
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BadInput(BadRequest):
    """A callback value the dashboard cannot use (answered with 400 and the description)."""


def shorten(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was (never the whole payload)."""
    text = repr(value) if not isinstance(value, str) else repr(value[: limit + 1])
    size = len(value) if isinstance(value, str | bytes | list | dict) else None
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({size:,} long)" if size is not None else f"{text[:limit]}..."


def growth_value(value: Any, low: float, high: float, step: float) -> float:
    """The what-if growth from the slider: a finite number within [low, high], rounded to a multiple of ``step``
    (each distinct value costs a whole risk assessment: a client sending 7.0001, 7.0002, ... gets the slider's
    positions, not one assessment each); None is 0.

    Raises:
        BadInput: anything else.
    """
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise BadInput(f"growth must be a number from {low:g} to {high:g}, got {shorten(value)}")
    return float(min(max(round(value / step) * step, low), high)) + 0.0


def text_value(name: str, value: Any, allowed: Iterable[str] | None = None, limit: int = 200) -> str | None:
    """A dropdown value: None, or a string of at most ``limit`` characters (one of ``allowed``).

    Raises:
        BadInput: anything else.
    """
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadInput(f"{name} must be a text of at most {limit} characters, got {shorten(value)}")
    if allowed is not None and value not in set(allowed):
        raise BadInput(f"{name} must be one of {', '.join(sorted(allowed))}, got {shorten(value)}")
    return value


def active_cell_series(value: Any) -> tuple[str, str] | None:
    """``(server, metric)`` from a risk-table ``active_cell`` (``row_id`` = ``server|metric``); None if empty.

    Raises:
        BadInput: not a dict, or ``row_id`` not of the form ``server|metric``.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadInput(f"active_cell must be an object, got {shorten(value)}")
    row_id = value.get("row_id")
    if row_id is None:
        return None
    if not isinstance(row_id, str) or "|" not in row_id or len(row_id) > 200:
        raise BadInput(f"active_cell.row_id must be 'server|metric', got {shorten(row_id)}")
    server, metric = row_id.split("|", 1)
    return server, metric


def clicked_server(value: Any) -> str | None:
    """The server of a cluster-map ``clickData`` (first point's customdata or text); None if empty.

    Raises:
        BadInput: not ``{"points": [{...}, ...]}`` with a text server.
    """
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("points", []), list):
        raise BadInput(f"clickData must be an object with a list of points, got {shorten(value)}")
    points = value.get("points") or []
    if not points:
        return None
    point = points[0]
    if not isinstance(point, dict):
        raise BadInput(f"clickData.points[0] must be an object, got {shorten(point)}")
    custom = point.get("customdata")
    server = custom[0] if isinstance(custom, list) and custom else point.get("text")
    return text_value("clickData server", server)


CALLBACK_PATH = "/_dash-update-component"


def callback_envelope(body: Any, callbacks: Container[str]) -> None:
    """Check a callback request's envelope before Dash reads it: a JSON object naming one of the dashboard's
    callbacks (``output``) with lists of inputs and state (helper-73: an array, an unknown output or no inputs
    reached Dash and came back as 500s with an ERROR line each).

    Raises:
        BadInput: anything else.
    """
    if not isinstance(body, dict):
        raise BadInput(f"a callback request must be a JSON object, got {shorten(body)}")
    output = body.get("output")
    if not isinstance(output, str) or output not in callbacks:
        raise BadInput(f"no callback of this dashboard has the output {shorten(output)}")
    if not isinstance(body.get("inputs"), list) or not isinstance(body.get("state", []), list):
        raise BadInput("a callback request needs a list of inputs (and of state)")
    # Each item as Dash reads it (helper-74: inputs [1], state [7], outputs "x" or changedPropIds 5 still failed
    # inside Dash with a 500).
    for item in (*body["inputs"], *body.get("state", [])):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str | dict) \
                or not isinstance(item.get("property"), str):
            raise BadInput(f"a callback input must be an object with an id and a property, got {shorten(item)}")
    outputs = body.get("outputs", {})
    if not all(isinstance(o, dict) for o in (outputs if isinstance(outputs, list) else [outputs])):
        raise BadInput(f"a callback request's outputs must be objects, got {shorten(outputs)}")
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        raise BadInput(f"changedPropIds must be a list of texts, got {shorten(changed)}")


def body_limit(app: WsgiApp, max_bytes: int) -> WsgiApp:
    """WSGI middleware: answer 413 to a request whose declared body exceeds ``max_bytes``.

    No callback reads such a body: the answer goes out from its headers. werkzeug's server then
    discards, in 10 MB reads, what the client still sends so that the client sees the 413 rather
    than a reset; nothing of it is kept. Chunked bodies (no Content-Length) are capped by Flask's
    ``MAX_CONTENT_LENGTH`` instead.
    """

    def limited(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = -1
        if declared < 0 or declared > max_bytes:
            body = (f"request body too large: {declared:,} bytes, the dashboard accepts at most {max_bytes:,} "
                    "(dashboard.max_request_bytes)\n" if declared >= 0 else "bad Content-Length\n").encode()
            status = "413 Request Entity Too Large" if declared >= 0 else "400 Bad Request"
            log.warning("refused %s %s: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                        body.decode().strip())
            # Tell the client (and werkzeug) not to keep the connection: the body is never parsed.
            start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                    ("Content-Length", str(len(body))), ("Connection", "close")])
            return [body]
        return app(environ, start_response)

    return limited


def install(server: Flask, max_bytes: int, callbacks: Container[str] = ()) -> None:
    """Add the size limit, the callback envelope check (``callbacks``: the outputs of the dashboard's callbacks),
    the 400 answer for bad input, 404 for an unknown packaged file and the short 500 log to its Flask app."""
    server.config["MAX_CONTENT_LENGTH"] = max_bytes
    server.wsgi_app = body_limit(server.wsgi_app, max_bytes)  # type: ignore[method-assign,assignment]

    @server.before_request
    def _envelope() -> None:
        if request.method == "POST" and request.path.endswith(CALLBACK_PATH):
            try:
                body = request.get_json(silent=True)
            except RecursionError:  # (JSON nested deeper than the parser goes)
                body = None
            callback_envelope(body, callbacks)

    @server.errorhandler(DependencyException)
    def _no_file(err: DependencyException) -> tuple[str, int, dict[str, str]]:
        # Dash's answer to a path it does not serve (``../../etc/passwd`` included): its message lists every file.
        return _http_error(NotFound("no such file"))

    @server.errorhandler(CallbackException)
    def _bad_callback(err: CallbackException) -> tuple[str, int, dict[str, str]]:
        if type(err) is not CallbackException:  # (an invalid return value and the like are the dashboard's bugs)
            return _internal_error(err)
        # "Inputs do not match callback definition": the request's fault.
        return _http_error(BadInput(" ".join(str(err).split())[:2 * SHOWN_CHARS]))

    @server.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> tuple[str, int, dict[str, str]]:
        description = err.description or err.name
        if isinstance(err, BadInput):
            log.warning("bad dashboard input: %s", description)
        return f"{description}\n", err.code or 400, {"Content-Type": "text/plain; charset=utf-8"}

    @server.errorhandler(Exception)
    def _internal_error(err: Exception) -> tuple[str, int, dict[str, str]]:
        message = " ".join(str(err).split())
        if len(message) > 2 * SHOWN_CHARS:
            message = f"{message[:2 * SHOWN_CHARS]}... ({len(message):,} characters)"
        frame = err.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f" at {frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame is not None else ""
        log.error("dashboard request failed: %s: %s%s", type(err).__name__, message, where)
        return "internal error (see the dashboard's log)\n", 500, {"Content-Type": "text/plain; charset=utf-8"}
