"""The seam guard: a tool that patches a public extension point the fast path skips sees every call.

For each group of seams, a counting wrapper (as a tracer or a mock would install it) is put
over one function the fast path skips; every call, on a reused connection too, must then pass
through it, and once it is removed the fast path is taken again. Whether the tool was set up
before or after wsgi_pool was imported makes no difference.
"""

from __future__ import annotations

import contextvars
import functools
import http.client as http_client
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
import requests
import requests.adapters
import requests.models
import urllib3.connection
import urllib3.connectionpool

import wsgi_pool
from tests.support import ROOT
from wsgi_pool._fast import seams
from wsgi_pool._fast import session as fast_session
from wsgi_pool.testing import Upstream


class Counted:
    """Calls through each wrapper installed by :meth:`wrap`, by the name it was installed as."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.calls: dict[str, int] = {}

    def wrap(self, owner: type, name: str) -> None:
        """Replace ``owner.name`` by a wrapper that counts and calls the original."""
        original = vars(owner)[name]
        key = f"{owner.__name__}.{name}"
        self.calls[key] = 0

        if isinstance(original, property):
            getter = original.fget
            assert getter is not None

            def counted_getter(this: Any) -> Any:
                self.calls[key] += 1
                return getter(this)

            self.monkeypatch.setattr(owner, name, property(counted_getter))
            return

        @functools.wraps(original)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[key] += 1
            return original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, counted)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    return Counted(monkeypatch)


@pytest.fixture
def http(upstream: Upstream) -> Iterator[wsgi_pool.Client]:
    """A client with one call made already: its connection is pooled, the next one reuses it."""
    client = wsgi_pool.client()
    assert client.get(f"{upstream.url}/warm").status_code == 200
    yield client
    client.close()


SEAMS: list[Any] = [
    pytest.param(requests.Session, "send", seams.SESSION, id="Session.send (OpenTelemetry)"),
    pytest.param(requests.Session, "request", seams.REQUEST, id="Session.request"),
    pytest.param(requests.Session, "prepare_request", seams.PREPARE, id="prepare_request"),
    pytest.param(
        requests.adapters.HTTPAdapter, "send", seams.ADAPTER, id="HTTPAdapter.send (responses)"
    ),
    pytest.param(
        requests.adapters.HTTPAdapter,
        "get_connection_with_tls_context",
        seams.ADAPTER,
        id="HTTPAdapter's pool choice",
    ),
    pytest.param(
        urllib3.connectionpool.HTTPConnectionPool,
        "urlopen",
        seams.URLOPEN,
        id="urlopen (OpenTelemetry urllib3, ddtrace)",
    ),
    pytest.param(
        http_client.HTTPConnection, "putrequest", seams.REQUEST_WRITE, id="putrequest (Sentry)"
    ),
    pytest.param(
        urllib3.connection.HTTPConnection, "request", seams.REQUEST_WRITE, id="urllib3 request"
    ),
    pytest.param(http_client.HTTPResponse, "begin", seams.HEAD, id="HTTPResponse.begin"),
    pytest.param(
        requests.adapters.HTTPAdapter, "build_response", seams.RESPONSE, id="build_response"
    ),
    pytest.param(requests.models.Response, "iter_content", seams.BODY, id="iter_content"),
    pytest.param(requests.models.Response, "content", seams.BODY, id="Response.content"),
]


@pytest.mark.parametrize(("owner", "name", "group"), SEAMS)
def test_a_patched_seam_sees_every_call(  # noqa: PLR0917  (three parameters, three fixtures)
    owner: type,
    name: str,
    group: seams.Group,
    counted: Counted,
    http: wsgi_pool.Client,
    upstream: Upstream,
) -> None:
    """While a wrapper replaces the function, each call passes through it, and answers right."""
    assert group.intact()
    counted.wrap(owner, name)
    assert not group.intact()
    for number in range(3):
        response = http.get(f"{upstream.url}/call/{number}")
        assert response.json()["path"] == f"/call/{number}"
    assert counted.calls[f"{owner.__name__}.{name}"] >= 3
    assert upstream.stats().connections_opened == 1  # the kept connection, reused throughout
    counted.monkeypatch.undo()
    assert group.intact()  # the library's own again: the fast path comes back


def test_a_replaced_connection_class_makes_every_new_connection(
    monkeypatch: pytest.MonkeyPatch, upstream: Upstream
) -> None:
    """A class put in urllib3's ``ConnectionCls`` (as vcrpy does) makes the pools' connections."""
    made: list[Any] = []

    class Recording(urllib3.connection.HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(urllib3.connectionpool.HTTPConnectionPool, "ConnectionCls", Recording)
    assert not seams.CONNECTION_CLASSES.intact()
    with wsgi_pool.client() as http:
        assert http.get(f"{upstream.url}/x").json()["path"] == "/x"
        assert http.get(f"{upstream.url}/y").json()["path"] == "/y"
    assert len(made) == 1
    monkeypatch.undo()
    assert seams.CONNECTION_CLASSES.intact()


def test_the_fast_path_is_taken_while_nothing_is_patched(
    monkeypatch: pytest.MonkeyPatch, http: wsgi_pool.Client, upstream: Upstream
) -> None:
    """With every seam intact, the fast session send runs and requests' own does not."""
    ours: list[int] = []
    real = fast_session.send

    def spy(*args: Any, **kwargs: Any) -> Any:
        ours.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fast_session, "send", spy)
    with mock.patch.object(requests.Session, "send", autospec=True) as theirs:
        theirs.side_effect = AssertionError("requests' send taken")
        assert not seams.SESSION.intact()  # the mock itself is a patch
    assert seams.SESSION.intact()
    http.get(f"{upstream.url}/x")
    assert ours == [1]


def _wraps(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


class _Proxy:
    """A wrapt-style proxy: it forwards every attribute, ``__code__`` included, to the original."""

    def __init__(self, wrapped: Any) -> None:
        self.__wrapped__ = wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__wrapped__, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)


def send(self: Any, request: Any, **kwargs: Any) -> Any:  # named like requests' own, elsewhere
    raise AssertionError


@pytest.mark.parametrize(
    "replacement",
    [
        pytest.param(_wraps, id="functools.wraps"),
        pytest.param(_Proxy, id="forwarding proxy"),
        pytest.param(lambda original: mock.MagicMock(wraps=original), id="mock"),
        pytest.param(lambda original: send, id="same name, another module"),
        pytest.param(functools.partial, id="partial"),
    ],
)
def test_any_replacement_is_a_patch(
    replacement: Callable[[Any], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever replaces requests' own function, the guard sees it is not requests' own."""
    seam = seams.Seam(
        requests.Session, "send", home=requests.sessions.merge_setting.__code__.co_filename
    )
    assert seam.intact()
    monkeypatch.setattr(requests.Session, "send", replacement(requests.Session.send))
    assert not seam.intact()
    assert not seam.intact()  # remembered, and still right
    monkeypatch.undo()
    assert seam.intact()


def test_a_removed_function_is_a_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A class whose function was deleted (falling back to a base class's) is patched too."""
    seam = seams.Seam(
        requests.adapters.HTTPAdapter,
        "build_response",
        home=requests.adapters._urllib3_request_context.__code__.co_filename,
    )
    monkeypatch.delattr(requests.adapters.HTTPAdapter, "build_response")
    assert not seam.intact()


def test_a_tool_set_up_before_wsgi_pool_is_imported_sees_every_call(upstream: Upstream) -> None:
    """In a fresh interpreter, a wrapper over ``Session.send`` installed before wsgi_pool is
    imported (as ``opentelemetry-instrument`` does) sees every call."""
    code = textwrap.dedent(
        f"""
        import functools, requests
        seen = []
        original = requests.Session.send

        @functools.wraps(original)
        def traced(self, request, **kwargs):
            seen.append(request.url)
            return original(self, request, **kwargs)

        requests.Session.send = traced
        import wsgi_pool

        http = wsgi_pool.client()
        for number in range(3):
            http.get("{upstream.url}/n/" + str(number))
        print(len(seen))
        """
    )
    found = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert found.stdout.strip() == "3"


def test_a_tools_own_response_class_is_kept(
    monkeypatch: pytest.MonkeyPatch, http: wsgi_pool.Client, upstream: Upstream
) -> None:
    """A ``build_response`` that returns a response class of its own: the caller gets that class."""

    class Recorded(requests.Response):
        pass

    real = requests.adapters.HTTPAdapter.build_response

    def build_response(self: Any, req: Any, resp: Any) -> Recorded:
        response = real(self, req, resp)
        response.__class__ = Recorded
        return response  # type: ignore[return-value]

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "build_response", build_response)
    response = http.get(f"{upstream.url}/own")
    assert type(response) is Recorded
    assert response.json()["path"] == "/own"


def test_a_group_with_a_deleted_function_is_judged_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A function deleted from a class fails the group's fetch: the group is patched, and its
    verdict is not remembered (it is right again once the function is back)."""
    group = seams.Group(
        seams.Seam(
            requests.adapters.HTTPAdapter,
            "build_response",
            home=requests.adapters._urllib3_request_context.__code__.co_filename,
        )
    )
    assert group.intact()
    monkeypatch.delattr(requests.adapters.HTTPAdapter, "build_response")
    assert not group.intact()
    assert not group.intact()
    monkeypatch.undo()
    assert group.intact()


def test_a_group_fetches_each_class_once() -> None:
    """Seams of one class are fetched together, however many the group names."""
    assert len(seams.WHOLE._fetch) == len({seam.owner for seam in seams.WHOLE.seams})


def test_a_wrapt_wrapper_installed_late_is_seen(upstream: Upstream) -> None:
    """A tool that wraps with ``wrapt`` (OpenTelemetry, ddtrace) after calls were made is seen
    at once: its wrapper compares equal to the function it wraps, and must not pass for it."""
    import wrapt  # noqa: PLC0415  (OpenTelemetry's instrumentations bring it)

    seen: list[str] = []

    def traced(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        seen.append(wrapped.__name__)
        return wrapped(*args, **kwargs)

    with wsgi_pool.client() as http:
        http.get(f"{upstream.url}/warm")
        http.get(f"{upstream.url}/warm")  # every group judged intact, and remembered
        assert seams.TRY.intact()
        assert seams.WHOLE.intact()
        originals = (
            vars(urllib3.connectionpool.HTTPConnectionPool)["urlopen"],
            vars(http_client.HTTPConnection)["getresponse"],
        )
        wrapt.wrap_function_wrapper(urllib3.connectionpool, "HTTPConnectionPool.urlopen", traced)
        wrapt.wrap_function_wrapper(http_client, "HTTPConnection.getresponse", traced)
        try:
            assert not seams.TRY.intact()
            assert not seams.WHOLE.intact()
            assert http.get(f"{upstream.url}/traced").json()["path"] == "/traced"
            assert seen == ["urlopen", "getresponse"]
        finally:
            urllib3.connectionpool.HTTPConnectionPool.urlopen = originals[0]  # type: ignore[method-assign]
            http_client.HTTPConnection.getresponse = originals[1]  # type: ignore[method-assign]
        assert seams.TRY.intact()
        assert seams.WHOLE.intact()


def _groups() -> dict[str, seams.Group]:
    return {name: value for name, value in vars(seams).items() if isinstance(value, seams.Group)}


def test_every_group_is_judged_for_a_call() -> None:
    """Each group the fast pieces ask is one of those a call judges at its start."""
    groups = [group for name, group in _groups().items() if name != "EVERY"]
    assert sorted(map(id, groups)) == sorted(map(id, seams.EVERY.groups))
    assert sorted(group.index for group in groups) == list(range(len(groups)))
    assert {id(seam) for group in groups for seam in group.seams} == {
        id(seam) for seam in seams.EVERY.seams
    }


@pytest.mark.parametrize(("owner", "name", "group"), SEAMS)
def test_a_calls_judgement_is_each_groups_own(
    owner: type, name: str, group: seams.Group, counted: Counted
) -> None:
    """With one function patched, the judgement held for a call gives every group the verdict
    the group gives on its own."""
    counted.wrap(owner, name)
    held = seams.hold()
    try:
        verdicts = {key: group.intact() for key, group in _groups().items() if key != "EVERY"}
    finally:
        seams.release(held)
    assert verdicts == {key: group.judged() for key, group in _groups().items() if key != "EVERY"}
    assert not verdicts[next(key for key, found in _groups().items() if found is group)]


def test_a_patch_made_during_a_call_is_seen_from_the_next_call(
    monkeypatch: pytest.MonkeyPatch, http: wsgi_pool.Client, upstream: Upstream
) -> None:
    """A response hook (running inside the call) patches the adapter's send: the call that is
    running keeps the verdict it started with, and the next call goes through the patch; once
    the call ends, the groups judge for themselves again."""
    counted = Counted(monkeypatch)

    def patch(response: requests.Response, **kwargs: Any) -> None:
        counted.wrap(requests.adapters.HTTPAdapter, "send")
        assert seams.ADAPTER.intact()  # this call's judgement, made at its start

    http.get(f"{upstream.url}/first", hooks={"response": patch})
    assert counted.calls["HTTPAdapter.send"] == 0
    assert not seams.ADAPTER.intact()  # no call running: judged now
    assert http.get(f"{upstream.url}/second").json()["path"] == "/second"
    assert counted.calls["HTTPAdapter.send"] == 1


def test_a_group_of_no_call_judges_itself_within_one() -> None:
    """A group made elsewhere (not among those a call judges) answers for itself in a call."""
    group = seams.Group(
        seams.Seam(
            requests.Session, "send", home=requests.sessions.merge_setting.__code__.co_filename
        )
    )
    held = seams.hold()
    try:
        assert group.index == -1
        assert group.intact()
        with mock.patch.object(requests.Session, "send"):
            assert not group.intact()
    finally:
        seams.release(held)


def test_calls_made_from_a_calls_hook_are_judged_for_themselves(
    http: wsgi_pool.Client, upstream: Upstream
) -> None:
    """A response hook installs a mock and calls again, through a client's request(), its
    send, and a requests session with wsgi_pool's adapter: the mock sees all three, though
    the call whose hook it is started before the mock was there."""
    import responses  # noqa: PLC0415  (a dev dependency)

    session = requests.Session()
    session.mount("http://", wsgi_pool.adapter())
    seen: dict[str, str] = {}

    def hook(response: requests.Response, **kwargs: Any) -> None:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
            mocked.get(f"{upstream.url}/n", body="mocked")
            seen["get"] = http.get(f"{upstream.url}/n").text
            seen["session"] = session.get(f"{upstream.url}/n").text
            prepared = http.prepare_request(requests.Request("GET", f"{upstream.url}/n"))
            seen["send"] = http.send(prepared).text

    assert http.get(f"{upstream.url}/outer", hooks={"response": hook}).status_code == 200
    assert seen == {"get": "mocked", "session": "mocked", "send": "mocked"}


def test_a_context_copied_during_a_call_judges_for_itself_after_it(
    http: wsgi_pool.Client, upstream: Upstream
) -> None:
    """A context copied while a call runs (as a task started from a hook copies it), used
    after the call ended once a mock is installed: its calls go through the mock."""
    import responses  # noqa: PLC0415  (a dev dependency)

    session = requests.Session()
    session.mount("http://", wsgi_pool.adapter())
    copied: list[contextvars.Context] = []
    http.get(
        f"{upstream.url}/outer",
        hooks={"response": lambda response, **kwargs: copied.append(contextvars.copy_context())},
    )
    prepared = http.prepare_request(requests.Request("GET", f"{upstream.url}/n"))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(f"{upstream.url}/n", body="mocked")
        assert copied[0].run(session.get, f"{upstream.url}/n").text == "mocked"
        assert copied[0].run(http.send, prepared).text == "mocked"
        assert copied[0].run(seams.SESSION.intact)  # responses patches no Session.send ...
        assert not copied[0].run(seams.ADAPTER.intact)  # ... but HTTPAdapter.send


def test_a_send_from_a_hook_sees_a_session_send_patched_in_it(
    monkeypatch: pytest.MonkeyPatch, http: wsgi_pool.Client, upstream: Upstream
) -> None:
    """A hook wraps requests' ``Session.send`` (as requests-mock and tracers do) and sends a
    request of its own through the client: the send goes through the wrapper."""
    counted = Counted(monkeypatch)
    answers: list[str] = []

    def hook(response: requests.Response, **kwargs: Any) -> None:
        counted.wrap(requests.Session, "send")
        prepared = http.prepare_request(requests.Request("GET", f"{upstream.url}/own"))
        answers.append(http.send(prepared).json()["path"])

    http.get(f"{upstream.url}/outer", hooks={"response": hook})
    assert answers == ["/own"]
    assert counted.calls["Session.send"] == 1


def test_a_request_sent_again_from_its_hook_is_judged_again(
    http: wsgi_pool.Client, upstream: Upstream
) -> None:
    """A hook that installs a mock and sends the call's own request again (as an auth refresh
    does), through the client and through the adapter: the mock sees both sends."""
    import responses  # noqa: PLC0415  (a dev dependency)

    seen: list[str] = []

    def hook(response: requests.Response, **kwargs: Any) -> None:
        if seen:
            return
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
            mocked.get(f"{upstream.url}/again", body="mocked")
            seen.append("hook")
            seen.append(http.send(response.request).text)
            seen.append(wsgi_pool.adapter().send(response.request).text)

    http.get(f"{upstream.url}/again", hooks={"response": hook})
    assert seen == ["hook", "mocked", "mocked"]


def test_a_copied_context_keeps_no_request_alive(
    http: wsgi_pool.Client, upstream: Upstream
) -> None:
    """A context copied during a call keeps neither the call's judgement nor its request."""
    copied: list[contextvars.Context] = []
    http.post(
        f"{upstream.url}/outer",
        data=b"x" * 1000,
        hooks={"response": lambda response, **kwargs: copied.append(contextvars.copy_context())},
    )
    held = copied[0].run(seams._held)
    assert held is not None
    assert (held.verdicts, held.request) == (None, None)


def test_each_send_judges_the_seams_once(
    monkeypatch: pytest.MonkeyPatch, http: wsgi_pool.Client, upstream: Upstream
) -> None:
    """Every seam is judged once per send: a client's get, its send of a prepared request, a
    requests session over wsgi_pool's adapter, and each hop of a redirect."""
    judged: list[int] = []
    real = seams.Every.judged

    def counting(self: seams.Every) -> Any:
        judged.append(1)
        return real(self)

    monkeypatch.setattr(seams.Every, "judged", counting)
    session = requests.Session()
    session.mount("http://", wsgi_pool.adapter())
    prepared = http.prepare_request(requests.Request("GET", f"{upstream.url}/sent"))
    for send, times in [
        (lambda: http.get(f"{upstream.url}/get"), 1),
        (lambda: http.send(prepared), 1),
        (lambda: session.get(f"{upstream.url}/session"), 1),
        (lambda: http.get(f"{upstream.url}/r?status=302&location=/there"), 2),
    ]:
        judged.clear()
        assert send().status_code == 200
        assert len(judged) == times
