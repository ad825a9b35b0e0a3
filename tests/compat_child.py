"""One library users combine with requests, set up in a fresh interpreter, then wsgi_pool's calls.

    python -m tests.compat_child TOOL ORDER URL DIRECTORY

``ORDER`` is ``wsgi-pool-first`` (wsgi_pool imported and its pools built before the tool is
set up) or ``tool-first`` (as ``opentelemetry-instrument`` or a test's fixture does it). The
child makes three GETs of ``URL?n=0..2`` with ``wsgi_pool.client()`` and prints one JSON line:
the bodies it got and what the tool saw. ``DIRECTORY`` holds cassettes between two runs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

MOCKED = "mocked"


def calls(url: str) -> list[str]:
    import wsgi_pool  # noqa: PLC0415  (imported here in the tool-first order)

    with wsgi_pool.client() as http:
        return [http.get(f"{url}?n={n}").text for n in range(3)]


def with_responses(url: str, directory: str) -> dict[str, Any]:
    import responses  # noqa: PLC0415

    with responses.RequestsMock() as mock:
        for n in range(3):
            mock.add(responses.GET, f"{url}?n={n}", body=MOCKED)
        return {"bodies": calls(url), "seen": len(mock.calls)}


def with_requests_mock(url: str, directory: str) -> dict[str, Any]:
    import requests_mock  # noqa: PLC0415

    with requests_mock.Mocker() as mock:
        mock.get(url, text=MOCKED)
        return {"bodies": calls(url), "seen": mock.call_count}


def with_vcrpy(url: str, directory: str) -> dict[str, Any]:
    import vcr  # noqa: PLC0415

    cassette = os.path.join(directory, "cassette.yaml")
    mode = "none" if os.path.exists(cassette) else "once"  # the second run replays
    with vcr.use_cassette(cassette, record_mode=mode) as played:
        return {"bodies": calls(url), "seen": played.play_count if mode == "none" else 0}


def with_betamax(url: str, directory: str) -> dict[str, Any]:
    import betamax  # noqa: PLC0415

    import wsgi_pool  # noqa: PLC0415

    mode = "none" if os.listdir(directory) else "once"
    http = wsgi_pool.client()
    with betamax.Betamax(http, cassette_library_dir=directory).use_cassette("calls", record=mode):
        bodies = [http.get(f"{url}?n={n}").text for n in range(3)]
    http.close()
    return {"bodies": bodies, "seen": 0}


def with_opentelemetry(instrument: str) -> Callable[[str, str], dict[str, Any]]:
    def run(url: str, directory: str) -> dict[str, Any]:
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        if instrument == "requests":
            from opentelemetry.instrumentation.requests import (  # noqa: PLC0415
                RequestsInstrumentor,
            )

            RequestsInstrumentor().instrument()
        else:
            from opentelemetry.instrumentation.urllib3 import (  # noqa: PLC0415
                URLLib3Instrumentor,
            )

            URLLib3Instrumentor().instrument()
        bodies = calls(url)
        spans = [
            str(span.attributes.get("url.full") or span.attributes.get("http.url"))
            for span in exporter.get_finished_spans()
            if span.attributes is not None
        ]
        return {"bodies": bodies, "spans": spans, "header": "traceparent"}

    return run


def with_sentry(url: str, directory: str) -> dict[str, Any]:
    import sentry_sdk  # noqa: PLC0415
    from sentry_sdk.envelope import Envelope  # noqa: PLC0415
    from sentry_sdk.transport import Transport  # noqa: PLC0415

    spans: list[str] = []

    class Kept(Transport):  # events stay in this process: nothing is sent anywhere
        def capture_envelope(self, envelope: Envelope) -> None:
            for item in envelope.items:
                if item.type == "transaction" and item.payload.json is not None:
                    spans.extend(
                        f"{span['data'].get('url')}?{span['data'].get('http.query')}"
                        for span in item.payload.json.get("spans", [])
                        if span["op"] == "http.client"
                    )

    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", traces_sample_rate=1.0, transport=Kept)
    with sentry_sdk.start_transaction(name="handler"):
        bodies = calls(url)
    sentry_sdk.flush()
    return {"bodies": bodies, "spans": spans, "header": "sentry-trace"}


def with_ddtrace(integration: str) -> Callable[[str, str], dict[str, Any]]:
    def run(url: str, directory: str) -> dict[str, Any]:
        from ddtrace import patch  # noqa: PLC0415

        patch(**{integration: True})
        return {"bodies": calls(url), "spans": None, "header": "x-datadog-parent-id"}

    return run


TOOLS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "responses": with_responses,
    "requests-mock": with_requests_mock,
    "vcrpy": with_vcrpy,
    "betamax": with_betamax,
    "opentelemetry-requests": with_opentelemetry("requests"),
    "opentelemetry-urllib3": with_opentelemetry("urllib3"),
    "sentry": with_sentry,
    "ddtrace-requests": with_ddtrace("requests"),
    "ddtrace-urllib3": with_ddtrace("urllib3"),
}


def main() -> None:
    tool, order, url, directory = sys.argv[1:5]
    if order == "wsgi-pool-first":
        import wsgi_pool  # noqa: PLC0415

        wsgi_pool.client().pools  # noqa: B018  (the pools built before the tool is set up)
    print(json.dumps(TOOLS[tool](url, directory)))


if __name__ == "__main__":
    main()
