"""The dashboard under hostile requests: bad callback values get 400, big bodies 413, logs stay short."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from capacity_forecaster.config import DashboardConfig, Settings
from capacity_forecaster.report.dashboard import create_app, server_for
from capacity_forecaster.report.dashboard_guard import growth_value
from capacity_forecaster.report.dashboard_state import DashboardState
from capacity_forecaster.storage import Lake

GROWTH = [{"id": "growth", "property": "value"}]


@pytest.fixture(scope="module")
def app(report_lake: Lake) -> Any:
    settings = Settings(dashboard=DashboardConfig(max_request_bytes=64 * 1024))
    return create_app(report_lake, settings, warm=False)


@pytest.fixture(scope="module")
def client(app: Any) -> Any:
    return app.server.test_client()


def _post(client: Any, output: str, outputs: Any, inputs: list[dict[str, Any]],
          state: list[dict[str, Any]] | None = None) -> Any:
    payload = {"output": output, "outputs": outputs, "inputs": inputs, "state": state or [],
               "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"]}
    return client.post("/_dash-update-component", json=payload)


def _kpis(client: Any, growth: Any) -> Any:
    return _post(client, "kpis.children", {"id": "kpis", "property": "children"},
                 [{"id": "growth", "property": "value", "value": growth}])


def _pick(client: Any, cell: Any) -> Any:
    outputs = [{"id": "server-pick", "property": "value"}, {"id": "metric-pick", "property": "value"},
               {"id": "tabs", "property": "value"}]
    return _post(client, "..server-pick.value...metric-pick.value...tabs.value..", outputs,
                 [{"id": "risk-table", "property": "active_cell", "value": cell},
                  {"id": "cluster-graph", "property": "clickData", "value": None}],
                 [{"id": "metric-pick", "property": "value", "value": "cpu"}])


def test_good_callback_values_still_work(client: Any) -> None:
    assert _kpis(client, 10).status_code == 200
    assert _kpis(client, None).status_code == 200
    response = _pick(client, {"row": 0, "column": 0, "row_id": "srv-0002|memory"})
    assert response.status_code == 200 and b"srv-0002" in response.data


def test_growth_between_the_slider_steps_is_served_at_the_nearest_step(client: Any) -> None:
    """helper-52: 7.0001, 12.5, ... each ran a whole risk assessment; the slider only has 5 % steps."""
    assert growth_value(7.0001, -30, 50, 5.0) == 5.0 and growth_value(12.5, -30, 50, 5.0) == 10.0
    assert growth_value(-2.4, -30, 50, 5.0) == 0.0 and growth_value(49.9, -32, 50, 5.0) == 50.0
    assert _kpis(client, 7.0001).data == _kpis(client, 5).data


@pytest.mark.parametrize("growth", ["abc", [], {}, True, 1e308, float("nan"), -1000])
def test_bad_growth_is_answered_400(client: Any, growth: Any, caplog: pytest.LogCaptureFixture) -> None:
    response = _kpis(client, growth)
    assert response.status_code == 400
    assert response.data.decode().startswith("growth must be a number from -30 to 50")
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("cell", [{"row_id": "no-separator"}, {"row_id": 5}, [], {"row_id": ["a|b"]}, "x"])
def test_bad_row_selection_is_answered_400(client: Any, cell: Any) -> None:
    response = _pick(client, cell)
    assert response.status_code == 400
    assert "active_cell" in response.data.decode() and len(response.data) < 300


def test_bad_drill_down_values_are_answered_400(client: Any) -> None:
    inputs = [{"id": "server-pick", "property": "value", "value": ["srv-0002"]},
              {"id": "metric-pick", "property": "value", "value": "cpu"},
              {"id": "growth", "property": "value", "value": 0}]
    outputs = [{"id": "server-graph", "property": "figure"}, {"id": "server-facts", "property": "children"}]
    response = _post(client, "..server-graph.figure...server-facts.children..", outputs, inputs)
    assert response.status_code == 400 and response.data.decode().startswith("server must be a text")
    inputs[0]["value"], inputs[1]["value"] = "srv-0002", "gpu"
    response = _post(client, "..server-graph.figure...server-facts.children..", outputs, inputs)
    assert response.status_code == 400 and "metric must be one of cpu" in response.data.decode()


def test_big_value_under_the_limit_is_refused_and_logged_short(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        response = _kpis(client, "9" * 60_000)
    assert response.status_code == 400 and len(response.data) < 300
    assert max(len(r.getMessage()) for r in caplog.records) < 400


def test_internal_errors_are_logged_without_their_payload(client: Any, caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("x" * 50_000)

    monkeypatch.setattr(DashboardState, "kpi_values", fails)
    with caplog.at_level(logging.ERROR):
        response = _kpis(client, 10)
    assert response.status_code == 500 and len(response.data) < 300
    assert caplog.records and all(len(r.getMessage()) < 600 and r.exc_info is None for r in caplog.records)


@pytest.mark.parametrize(("body", "said"), [
    (b"[1, 2, 3]", "a callback request must be a JSON object, got [1, 2, 3]"),
    (b"{not json", "a callback request must be a JSON object, got None"),
    (b"[" * 30_000 + b"]" * 30_000, "a callback request must be a JSON object, got None"),  # deeper than the parser
    (b'{"pad": "x"}', "no callback of this dashboard has the output None"),
    (b'{"output": "evil.children", "inputs": []}', "no callback of this dashboard has the output 'evil.children'"),
    (b'{"output": "kpis.children", "outputs": {"id": "kpis", "property": "children"}}',
     "a callback request needs a list of inputs (and of state)"),
    (b'{"output": "kpis.children", "inputs": "' + b"x" * 50_000 + b'"}',
     "a callback request needs a list of inputs (and of state)"),
    (b'{"output": "kpis.children", "inputs": [1]}',
     "a callback input must be an object with an id and a property, got 1"),
    (b'{"output": "kpis.children", "inputs": [], "state": [7]}',
     "a callback input must be an object with an id and a property, got 7"),
    (b'{"output": "kpis.children", "inputs": [], "outputs": "x"}',
     "a callback request's outputs must be objects, got 'x'"),
    (b'{"output": "kpis.children", "inputs": [], "changedPropIds": 5}',
     "changedPropIds must be a list of texts, got 5"),
])
def test_malformed_callback_requests_are_answered_400(client: Any, body: bytes, said: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """helper-73: an array, an unknown output, no inputs or junk reached Dash and came back as 500s, each with an
    ERROR line; they are the request's fault."""
    with caplog.at_level(logging.WARNING):
        response = client.post("/_dash-update-component", data=body, content_type="application/json")
    assert response.status_code == 400 and response.data.decode() == said + "\n"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_inputs_that_match_no_callback_and_paths_dash_does_not_serve_are_client_errors(client: Any) -> None:
    response = _post(client, "kpis.children", {"id": "kpis", "property": "children"},
                     [{"id": "growth", "property": "value", "value": 1}, {"id": "nope", "property": "value"}])
    assert response.status_code == 400 and b"Inputs do not match callback definition" in response.data
    for path in ("/_dash-component-suites/dash/..%2f..%2f..%2fetc/passwd", "/_dash-component-suites/dash/none.js"):
        response = client.get(path)
        assert response.status_code == 404 and response.data == b"no such file\n"


def test_body_over_the_limit_is_413(client: Any) -> None:
    response = _kpis(client, "1" * 100_000)
    assert response.status_code == 413
    assert b"dashboard.max_request_bytes" in response.data


@pytest.fixture()
def served(app: Any) -> Iterator[int]:
    server = server_for(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_huge_body_is_refused_before_the_app_while_other_requests_are_served(
        served: int, caplog: pytest.LogCaptureFixture) -> None:
    # werkzeug discards (drains in 10 MB reads) what the client still sends after the 413 so that
    # the client sees the answer: what the dashboard owns is that no callback ever reads the body.
    size = 150 * 2**20
    sock = socket.create_connection(("127.0.0.1", served))
    head = (f"POST /_dash-update-component HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    stop = threading.Event()

    def push() -> None:
        chunk = b"9" * 2**20
        try:
            sock.sendall(head)
            for _ in range(size // len(chunk)):
                if stop.is_set():
                    break
                sock.sendall(chunk)
        except OSError:  # the server answered 413 and closed the connection: expected
            pass

    pusher = threading.Thread(target=push, daemon=True)
    with caplog.at_level(logging.WARNING, logger="capacity_forecaster"):
        pusher.start()
        try:
            for _ in range(5):
                conn = http.client.HTTPConnection("127.0.0.1", served, timeout=30)
                conn.request("GET", "/_dash-layout")
                assert conn.getresponse().status == 200
                conn.close()
            sock.settimeout(30)
            answer = sock.recv(4096).decode(errors="replace")
            assert answer.startswith("HTTP/1.1 413"), answer[:100]
        finally:
            stop.set()
            sock.close()
            pusher.join(timeout=30)
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused POST")]
    assert refused and f"{size:,} bytes" in refused[0]
