"""Request ids and trace context: validated, replaced when bad, sent only where allowed."""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import TracerProvider

import wsgi_pool
from tests.support import ROOT
from wsgi_pool import Client, PoolConfig, PoolMiddleware, UpstreamSettings
from wsgi_pool._propagation import (
    Propagation,
    check_request_id,
    check_traceparent,
    check_tracestate,
    from_environ,
)
from wsgi_pool.testing import GunicornServer, Upstream

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
FRESH_ID = re.compile(r"[0-9a-f]{32}")
FRESH_PARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00")


def handle(
    config: PoolConfig, urls: list[str], **incoming: str
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """One request through the middleware with ``incoming`` environ entries; the headers each URL saw."""
    seen: list[dict[str, str]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        http: Client = wsgi_pool.client_from(environ)
        seen.extend(http.get(url).json()["headers"] for url in urls)
        start_response("200 OK", [])
        return [b""]

    environ: dict[str, Any] = dict(incoming)
    setup_testing_defaults(environ)
    PoolMiddleware(app, config)(environ, lambda *a: lambda b: None)
    return seen, environ


def test_valid_context_goes_only_to_upstreams_allowed_to_see_it(
    upstream: Upstream, second_upstream: Upstream
) -> None:
    """The incoming id, traceparent and tracestate reach the configured upstream as they came; a third party sees none."""
    config = PoolConfig(upstreams={upstream.url: UpstreamSettings(propagate=True)})
    (own, third), environ = handle(
        config,
        [f"{upstream.url}/own", f"{second_upstream.url}/third"],
        HTTP_X_REQUEST_ID="req-42",
        HTTP_TRACEPARENT=TRACEPARENT,
        HTTP_TRACESTATE="congo=t61rcWkgMzE, rojo=00f067aa0ba902b7",
    )
    assert own["X-Request-ID"] == "req-42"
    assert own["traceparent"] == TRACEPARENT
    assert own["tracestate"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert not {"X-Request-ID", "traceparent", "tracestate"} & set(third)
    assert environ["wsgi_pool.request_id"] == "req-42"


def test_nothing_is_propagated_by_default(upstream: Upstream) -> None:
    """With the default config no upstream gets the id or the trace context."""
    (seen,), _ = handle(PoolConfig(), [f"{upstream.url}/x"], HTTP_X_REQUEST_ID="req-1")
    assert not {"X-Request-ID", "traceparent"} & set(seen)


def test_fresh_ids_when_none_came_in(upstream: Upstream) -> None:
    """No incoming id or trace: a fresh id and a fresh unsampled trace, the same for every call of the request."""
    config = PoolConfig(propagate=True)
    (first, second), environ = handle(config, [f"{upstream.url}/1", f"{upstream.url}/2"])
    assert FRESH_ID.fullmatch(first["X-Request-ID"])
    assert FRESH_PARENT.fullmatch(first["traceparent"])
    assert (second["X-Request-ID"], second["traceparent"]) == (
        first["X-Request-ID"],
        first["traceparent"],
    )
    assert environ["wsgi_pool.request_id"] == first["X-Request-ID"]


def test_invalid_values_are_replaced_and_logged(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad id or traceparent is replaced by a fresh one, never forwarded, and a warning names it."""
    config = PoolConfig(propagate=True)
    bad_id = "id\x01<script>" + "x" * 300
    with caplog.at_level(logging.WARNING, logger="wsgi_pool"):
        (seen,), _ = handle(
            config,
            [f"{upstream.url}/x"],
            HTTP_X_REQUEST_ID=bad_id,
            HTTP_TRACEPARENT=f"00-{TRACE.upper()}-{PARENT}-01",
            HTTP_TRACESTATE="k=v",
        )
    assert FRESH_ID.fullmatch(seen["X-Request-ID"])
    assert FRESH_PARENT.fullmatch(seen["traceparent"])
    assert TRACE not in seen["traceparent"]
    assert "tracestate" not in seen
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith(f"request_id={seen['X-Request-ID']}: incoming X-Request-ID header")
    assert "311 characters, starting 'id\\x01<script>xx" in lines[0]
    assert "\x01" not in lines[0]
    assert "incoming traceparent header rejected" in lines[1]


def test_an_invalid_tracestate_is_dropped_and_the_trace_kept(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad tracestate alone is dropped; the valid traceparent still goes on."""
    with caplog.at_level(logging.WARNING, logger="wsgi_pool"):
        (seen,), _ = handle(
            PoolConfig(propagate=True),
            [f"{upstream.url}/x"],
            HTTP_TRACEPARENT=TRACEPARENT,
            HTTP_TRACESTATE="Bad Key=v",
        )
    assert seen["traceparent"] == TRACEPARENT
    assert "tracestate" not in seen
    assert "incoming tracestate header rejected" in caplog.text


def test_the_request_id_header_is_configurable(upstream: Upstream) -> None:
    """request_id_header names the header read and sent."""
    config = PoolConfig(propagate=True, request_id_header="X-Correlation-ID")
    (seen,), _ = handle(config, [f"{upstream.url}/x"], HTTP_X_CORRELATION_ID="corr-7")
    assert seen["X-Correlation-ID"] == "corr-7"
    assert "X-Request-ID" not in seen


def test_a_caller_set_header_wins(upstream: Upstream) -> None:
    """Headers the handler set itself on a call are kept: one value per header, never two."""
    http = Client(PoolConfig(propagate=True), propagation=Propagation("req-1", TRACEPARENT, "a=b"))
    own = f"00-{'1' * 32}-{'2' * 16}-01"
    seen = http.get(f"{upstream.url}/x", headers={"traceparent": own, "X-Request-ID": "mine"})
    headers = seen.json()["headers"]
    assert (headers["traceparent"], headers["X-Request-ID"]) == (own, "mine")
    assert "tracestate" not in headers
    assert http.request_id == "req-1"
    assert repr(http.propagation) == f"<Propagation request_id='req-1' traceparent='{TRACEPARENT}'>"
    assert Client().request_id is None


@pytest.fixture
def otel() -> Iterator[trace.Tracer]:
    """OpenTelemetry's SDK with its requests instrumentation, removed afterwards."""
    provider = TracerProvider()
    instrumentor = RequestsInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider.get_tracer("tests")
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def test_opentelemetry_instrumentation_owns_the_trace_headers(
    upstream: Upstream, otel: trace.Tracer
) -> None:
    """With OpenTelemetry instrumenting requests, the upstream gets its traceparent only, and our request id."""
    http = Client(PoolConfig(propagate=True), propagation=Propagation("req-1", TRACEPARENT, "a=b"))
    with otel.start_as_current_span("handler") as span:
        headers = http.get(f"{upstream.url}/x").json()["headers"]
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert re.fullmatch(rf"00-{trace_id}-[0-9a-f]{{16}}-0[0-3]", headers["traceparent"])
    assert "tracestate" not in headers
    assert headers["X-Request-ID"] == "req-1"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param("req-42", True, id="simple"),
        pytest.param("3f2a8c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", True, id="uuid"),
        pytest.param("a" * 128, True, id="128-chars"),
        pytest.param("a" * 129, False, id="129-chars"),
        pytest.param("", False, id="empty"),
        pytest.param("caf\xe9", False, id="non-ascii"),
        pytest.param("a\tb", False, id="tab"),
        pytest.param("a b", False, id="space"),
        pytest.param("a\r\nX-Evil: 1", False, id="crlf"),
        pytest.param("a;b", False, id="semicolon"),
        pytest.param(None, False, id="absent"),
    ],
)
def test_request_id_grammar(value: str | None, valid: bool) -> None:
    """A request id is 1 to 128 characters of a small safe alphabet."""
    assert check_request_id(value) == (value if valid else None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(TRACEPARENT, TRACEPARENT, id="valid"),
        pytest.param(f" {TRACEPARENT}\t", TRACEPARENT, id="surrounding-whitespace"),
        pytest.param(f"01-{TRACE}-{PARENT}-01-extra", TRACEPARENT, id="later-version"),
        pytest.param(f"01-{TRACE}-{PARENT}-01x", None, id="later-version-bad-suffix"),
        pytest.param(f"00-{TRACE}-{PARENT}-01-extra", None, id="v00-with-suffix"),
        pytest.param(f"ff-{TRACE}-{PARENT}-01", None, id="version-ff"),
        pytest.param(f"00-{'0' * 32}-{PARENT}-01", None, id="zero-trace"),
        pytest.param(f"00-{TRACE}-{'0' * 16}-01", None, id="zero-parent"),
        pytest.param(f"00-{TRACE.upper()}-{PARENT}-01", None, id="upper-case"),
        pytest.param(f"00-{TRACE[:-1]}-{PARENT}-01", None, id="short-trace"),
        pytest.param("0" * 600, None, id="over-long"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_traceparent_grammar(value: str | None, expected: str | None) -> None:
    """W3C traceparent: version 00 exactly, later versions read as 00, no all-zero ids, lower-case hex."""
    assert check_traceparent(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("rojo=00f067aa0ba902b7", "rojo=00f067aa0ba902b7", id="one"),
        pytest.param("a=1 , ,b=2", "a=1,b=2", id="whitespace-and-empty-members"),
        pytest.param("tenant@vendor=x", "tenant@vendor=x", id="multi-tenant-key"),
        pytest.param("a=1,a=2", None, id="duplicate-key"),
        pytest.param("A=1", None, id="upper-case-key"),
        pytest.param("a=x,y", None, id="no-equals"),
        pytest.param("a=caf\xe9", None, id="non-ascii-value"),
        pytest.param(",".join(f"k{n}=v" for n in range(33)), None, id="33-members"),
        pytest.param("a=" + "v" * 600, None, id="over-long"),
        pytest.param(" , ", None, id="only-empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_tracestate_grammar(value: str | None, expected: str | None) -> None:
    """W3C tracestate: at most 32 members and 512 characters, keys and values per the grammar."""
    assert check_tracestate(value) == expected


def raw_request(server: GunicornServer, path: str, headers: list[bytes]) -> tuple[int, bytes]:
    """Send a request with exactly these header lines (any bytes); the status and body."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        head = b"\r\n".join([f"GET {path} HTTP/1.0".encode(), b"Host: test", *headers])
        sock.sendall(head + b"\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.fixture
def served(upstream: Upstream, second_upstream: Upstream) -> Iterator[GunicornServer]:
    """gunicorn (gthread) serving tests.apps, with propagation to ``upstream`` only and trust_env on."""
    env = {
        "UPSTREAM_URL": upstream.url,
        "WSGI_POOL_TRUST_ENV": "1",
        "WSGI_POOL_UPSTREAMS": json.dumps({upstream.url: {"propagate": True}}),
    }
    flags = ["-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "-k", "gthread", "--threads", "2"]
    with GunicornServer("tests.apps:app", flags, env=env, cwd=str(ROOT)) as server:
        yield server


def test_an_incoming_proxy_header_never_routes_a_call(
    served: GunicornServer, upstream: Upstream, second_upstream: Upstream
) -> None:
    """httpoxy through real gunicorn: Proxy: reaches the environ as HTTP_PROXY, and the call still goes direct."""
    evil = second_upstream.url.encode()
    status, body = raw_request(
        served, f"/seen?url={upstream.url}/direct", [b"Proxy: " + evil, b"X-Request-ID: r-1"]
    )
    seen = json.loads(body)
    assert status == 200
    assert seen["environ_proxy"] == second_upstream.url
    assert seen["upstream_path"] == "/direct"
    assert seen["upstream_headers"]["X-Request-ID"] == "r-1"
    assert second_upstream.stats().requests_served == 0


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"X-Request-ID: caf\xc3\xa9", id="non-ascii-utf8"),
        pytest.param(b"X-Request-ID: caf\xe9", id="non-ascii-latin1"),
        pytest.param(b"X-Request-ID: " + b"a" * 5000, id="over-long"),
        pytest.param(b"X-Request-ID: a\tb", id="tab"),
        pytest.param(b"traceparent: 00-" + b"z" * 32 + b"-" + b"1" * 16 + b"-01", id="bad-trace"),
    ],
)
def test_bad_incoming_values_never_become_outbound_bytes(
    served: GunicornServer, upstream: Upstream, header: bytes
) -> None:
    """Through real gunicorn: the request is served, the upstream gets a fresh value, the log names the header.

    gunicorn itself answers 400 to other control characters (DEL, NUL, CR, LF) in a header value;
    the in-process test above covers those for servers that let them through.
    """
    name = header.split(b":", 1)[0].decode()
    status, body = raw_request(served, f"/seen?url={upstream.url}/x", [header])
    assert status == 200, body
    seen = json.loads(body)["upstream_headers"]
    bad = header.split(b":", 1)[1].strip()
    assert FRESH_ID.fullmatch(seen["X-Request-ID"])
    assert FRESH_PARENT.fullmatch(seen["traceparent"])
    assert bad.decode("latin-1") not in seen.values()
    served.stop()
    assert f"incoming {name} header rejected" in served.log()


def test_the_trace_context_is_read_when_first_needed(caplog: pytest.LogCaptureFixture) -> None:
    """Arrival reads the request id only; the trace context is checked (and logged) once, on use."""
    environ = {"HTTP_TRACEPARENT": "00-bad", "HTTP_X_REQUEST_ID": "req-1"}
    with caplog.at_level(logging.WARNING, logger="wsgi_pool"):
        made = from_environ(environ, "X-Request-ID")
        assert made.request_id == "req-1"
        assert caplog.records == []
        first = made.traceparent
        assert FRESH_PARENT.fullmatch(first)
        assert (made.traceparent, made.tracestate) == (first, None)
    assert len(caplog.records) == 1
    assert "incoming traceparent header rejected" in caplog.text
    valid = from_environ(
        {"HTTP_TRACEPARENT": TRACEPARENT, "HTTP_TRACESTATE": "a=b"}, "X-Request-ID"
    )
    assert (valid.tracestate, valid.traceparent) == ("a=b", TRACEPARENT)
    assert FRESH_ID.fullmatch(valid.request_id)
