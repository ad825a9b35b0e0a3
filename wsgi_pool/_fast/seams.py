"""The seam guard: whether a public extension point of requests, urllib3 or http.client is patched.

Mocks, recorders, tracers and SDKs patch or replace functions of requests, urllib3 and
http.client (``responses`` patches ``HTTPAdapter.send``, OpenTelemetry ``Session.send``,
vcrpy urllib3's connection classes, Sentry ``HTTPConnection.putrequest``). A piece of the
fast path that skips such a function would make that tool silently stop seeing calls. So
before each call takes a fast piece, the piece's group here is asked whether every function
it skips is still the library's own; if not, the call takes the standard path through the
patched function.

A function is the library's own when it is a plain function whose code was compiled from
the module that defines it: a wrapper (``functools.wraps``, wrapt, ``mock.patch``), a mock
or a function from elsewhere is not, whichever was imported first. Each answer is remembered
against the object it was given for, so a check costs a dictionary look-up and a comparison.

A call judges every group once, at its start (:func:`hold`, :data:`EVERY`; a client's
``request()`` or ``send()``, else the adapter's send): the groups its layers ask answer that
judgement until the call ends, one comparison of every seam's value instead of one per group
asked. A patch installed while a call runs is seen from the next send on: a send made from
one of the call's hooks (its own request sent again included) is judged for itself, and a
context copied during the call judges for itself once it ends.
"""

from __future__ import annotations

import contextvars
import http.client
import operator
import types
from typing import Any, Final

import requests
import requests.adapters
import requests.models
import requests.sessions
import urllib3.connection
import urllib3.connectionpool
import urllib3.response


class Seam:
    """One attribute of one class: intact while it holds the library's own object."""

    __slots__ = ("_home", "_state", "expected", "name", "namespace", "owner")

    def __init__(self, owner: type, name: str, *, home: str = "", expected: Any = None) -> None:
        self.owner = owner
        self.namespace = vars(owner)  # the class's own attributes, live
        self.name = name
        self._home = home
        """The file the library's own function was compiled from."""
        self.expected = expected
        """For a class attribute that is no function (urllib3's ConnectionCls): the one expected."""
        self._state: tuple[object, bool] = (_UNSEEN, False)

    def intact(self) -> bool:
        value = self.namespace.get(self.name, _MISSING)
        state = self._state  # read once: another thread may replace it meanwhile
        if value is state[0]:
            return state[1]
        verdict = self._judge(value)
        self._state = (value, verdict)
        return verdict

    def _judge(self, value: Any) -> bool:
        if self.expected is not None:
            return value is self.expected
        if isinstance(value, property):
            value = value.fget
        return (
            type(value) is types.FunctionType
            and value.__code__.co_filename == self._home
            and value.__code__.co_name == self.name
        )


_UNSEEN: Final = object()
_MISSING: Final = object()


class Group:
    """The seams one fast piece skips: it may be taken only while every one is intact.

    The verdict is remembered against the seams' values, fetched with one ``itemgetter`` per
    class: a check is a few C calls and a comparison, whatever the group's size. Within a
    call that :func:`hold` judged every group for, the group answers that judgement.
    """

    __slots__ = ("_fetch", "_state", "index", "seams")

    def __init__(self, *seams: Seam) -> None:
        self.seams = seams
        names: dict[type, tuple[Any, list[str]]] = {}
        for seam in seams:  # one fetch per class
            names.setdefault(seam.owner, (seam.namespace, []))[1].append(seam.name)
        # itemgetter of two names or more gives a tuple; a lone name is asked twice for one
        self._fetch = tuple(
            (namespace, operator.itemgetter(*found, *found[:1] * (len(found) == 1)))
            for namespace, found in names.values()
        )
        self._state: tuple[list[Any], Any] = ([], False)
        self.index = -1
        """Where :data:`EVERY`'s verdict holds this group's (-1: a group of no call's)."""

    def intact(self) -> bool:
        held = _held()
        if held is not None and self.index >= 0:
            verdicts = held.verdicts
            if verdicts is not None:
                return verdicts[self.index]
        return self.judged()  # type: ignore[no-any-return]

    def judged(self) -> Any:
        """The verdict on the seams' values now (remembered while they stay the same)."""
        values: list[Any] | None = []
        try:
            for namespace, fetch in self._fetch:
                values.extend(fetch(namespace))  # type: ignore[union-attr]
        except KeyError:  # one was deleted: judged each time
            values = None
        state = self._state  # read once: another thread may replace it meanwhile
        # The very objects seen before (identity: a wrapt wrapper compares equal to the
        # function it wraps, and must not pass for it).
        seen = state[0]
        if values is not None and len(values) == len(seen) and all(map(operator.is_, values, seen)):
            return state[1]
        verdict = self._judge()
        if values is not None:
            self._state = (values, verdict)
        return verdict

    def _judge(self) -> Any:
        return all(seam.intact() for seam in self.seams)


class Every(Group):
    """Every group of a call at once: its verdict is each group's, by the group's ``index``.

    Checking the groups one by one costs a fetch and a comparison per group, eight of them
    per call; this is one fetch per class and one comparison of every seam's value.
    """

    __slots__ = ("groups",)

    def __init__(self, *groups: Group) -> None:
        unique = {id(seam): seam for group in groups for seam in group.seams}
        super().__init__(*unique.values())
        self.groups = groups
        for index, group in enumerate(groups):
            group.index = index

    def _judge(self) -> tuple[bool, ...]:
        return tuple(group._judge() for group in self.groups)


class Held:
    """One call's judgement of every group (``verdicts``, by index), while the call runs.

    ``request`` is the prepared request the judgement was made for, if known. ``verdicts``
    is emptied when the call ends, so that a context copied during the call (a task, a
    thread given a copy) judges for itself afterwards.
    """

    __slots__ = ("request", "token", "verdicts")

    def __init__(self, verdicts: tuple[bool, ...], request: object) -> None:
        self.verdicts: tuple[bool, ...] | None = verdicts
        self.request = request
        self.token = _holding.set(self)


_holding: contextvars.ContextVar[Held | None] = contextvars.ContextVar(
    "wsgi_pool.seams", default=None
)
_held: Final = _holding.get


def hold(request: object = None) -> Held:
    """Every group judged once, for the call about to run in this context (for ``request``,
    if known): its layers ask the groups, and the groups answer this judgement until
    :func:`release`. A patch installed while the call runs is seen from the next call on."""
    return Held(EVERY.judged(), request)


def release(held: Held) -> None:
    """The call ``held`` was taken for has ended: the groups judge for themselves again."""
    held.verdicts = None
    held.request = None
    _holding.reset(held.token)


def holds(request: object) -> bool:
    """Whether the call running here was judged for sending ``request``: else a send of it
    is a call of its own (made from a hook of the call, say), which judges for itself."""
    held = _held()
    return held is not None and held.request is request and held.verdicts is not None


def spend(request: object) -> bool:
    """:func:`holds`, and the judgement is then spent on this send of ``request``: a later
    send of the same request (a hook sending it again) judges for itself."""
    held = _held()
    if held is None or held.request is not request or held.verdicts is None:
        return False
    held.request = None
    return True


def _home(function: Any) -> str:
    """The file a module's functions were compiled from, read off one nothing patches."""
    return str(function.__code__.co_filename)


_SESSIONS: Final = _home(requests.sessions.merge_setting)
_MODELS: Final = _home(requests.models.RequestEncodingMixin._encode_params)
_ADAPTERS: Final = _home(requests.adapters._urllib3_request_context)
_POOLS: Final = _home(urllib3.connectionpool.connection_from_url)
_CONNECTIONS: Final = _home(urllib3.connection._url_from_connection)
_HTTP_CLIENT: Final = _home(http.client.parse_headers)
_URLLIB3_RESPONSES: Final = _home(urllib3.response._get_decoder)


def _of(owner: type, home: str, *names: str) -> tuple[Seam, ...]:
    return tuple(Seam(owner, name, home=home) for name in names)


SESSION: Final = Group(*_of(requests.Session, _SESSIONS, "send"))
"""``Client.send`` without requests' ``Session.send`` (OpenTelemetry and ddtrace wrap it;
requests-mock replaces it)."""

REQUEST: Final = Group(*_of(requests.Session, _SESSIONS, "request"))
"""``Client.request`` with its own signature (a ``deadline``) over requests' ``Session.request``."""

PREPARE: Final = Group(
    *_of(requests.Session, _SESSIONS, "prepare_request"),
    *_of(requests.models.Request, _MODELS, "prepare"),
    *_of(
        requests.models.PreparedRequest,
        _MODELS,
        "prepare",
        "prepare_cookies",
        "prepare_method",
        "prepare_body",
    ),
)
"""A request prepared without a ``requests.Request`` and without the cookie steps it needs not."""

ADAPTER: Final = Group(
    *_of(
        requests.adapters.HTTPAdapter,
        _ADAPTERS,
        "send",
        "get_connection_with_tls_context",
        "build_connection_pool_key_attributes",
        "cert_verify",
        "request_url",
        "add_headers",
        "proxy_headers",
    )
)
"""The shared adapter's send without requests' ``HTTPAdapter.send`` (responses patches it)."""

POOL: Final = Group(
    *_of(urllib3.connectionpool.HTTPConnectionPool, _POOLS, "_get_conn", "_put_conn")
)
"""The pools' queue of idle connections used directly, not through urllib3's ``_get_conn`` and
``_put_conn`` (``_pool``)."""

URLOPEN: Final = Group(*_of(urllib3.connectionpool.HTTPConnectionPool, _POOLS, "urlopen"))
"""A try without urllib3's ``urlopen`` (OpenTelemetry's and ddtrace's urllib3 integrations)."""

TRY: Final = Group(*ADAPTER.seams, *URLOPEN.seams)
"""A try by the pool's exchange: ``ADAPTER`` and ``URLOPEN`` both (asked once)."""

CONNECTION_CLASSES: Final = Group(
    Seam(
        urllib3.connectionpool.HTTPConnectionPool,
        "ConnectionCls",
        expected=urllib3.connection.HTTPConnection,
    ),
    Seam(
        urllib3.connectionpool.HTTPSConnectionPool,
        "ConnectionCls",
        expected=urllib3.connection.HTTPSConnection,
    ),
)
"""The pools' own connection classes rather than urllib3's (vcrpy replaces urllib3's)."""

REQUEST_WRITE: Final = Group(
    *_of(
        http.client.HTTPConnection,
        _HTTP_CLIENT,
        "putrequest",
        "putheader",
        "endheaders",
        "send",
        "_send_output",
        "request",
        "_send_request",
    ),
    *_of(urllib3.connection.HTTPConnection, _CONNECTIONS, "request", "putrequest", "putheader"),
)
"""A request head written in one send without http.client's writers (Sentry patches ``putrequest``)."""

HEAD: Final = Group(*_of(http.client.HTTPResponse, _HTTP_CLIENT, "begin", "_read_status"))
"""A response head read without the email parser, for http.client's ``begin``."""

RESPONSE: Final = Group(*_of(requests.adapters.HTTPAdapter, _ADAPTERS, "build_response"))
"""requests' response built directly, not by ``HTTPAdapter.build_response``."""

BODY: Final = Group(*_of(requests.models.Response, _MODELS, "content", "iter_content"))
"""A whole body read in one go, not through ``Response.iter_content``."""

WHOLE: Final = Group(
    *_of(urllib3.connectionpool.HTTPConnectionPool, _POOLS, "_make_request", "_validate_conn"),
    *_of(urllib3.connection.HTTPConnection, _CONNECTIONS, "getresponse"),
    *_of(http.client.HTTPConnection, _HTTP_CLIENT, "getresponse"),
    *_of(http.client.HTTPResponse, _HTTP_CLIENT, "__init__", "read", "readinto"),
    *_of(urllib3.response.HTTPResponse, _URLLIB3_RESPONSES, "__init__", "read", "stream"),
    *CONNECTION_CLASSES.seams,
    *HEAD.seams,
    *RESPONSE.seams,
    *BODY.seams,
)
"""An answer read whole from the socket, without http.client's and urllib3's responses, and
requests' response built with its body (``_fast.whole``)."""

EVERY: Final = Every(
    SESSION, REQUEST, PREPARE, ADAPTER, POOL, URLOPEN, TRY, CONNECTION_CLASSES, REQUEST_WRITE,
    HEAD, RESPONSE, BODY, WHOLE,
)  # fmt: skip
"""Every group, judged once per call by :func:`hold`."""
