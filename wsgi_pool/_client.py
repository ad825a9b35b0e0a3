"""The client handlers use: the requests API over the process's shared pools, nothing else shared.

A :class:`Client` is a ``requests.Session`` that builds no pools of its own: its ``http://``
and ``https://`` adapters are :class:`~wsgi_pool._mounted.ProcessAdapter`, which send
through the pools of the process the call runs in. Each call gets its deadline here (the
call's, its upstream's or the config's, never past the incoming request's budget or an
enclosing ``wsgi_pool.deadline()`` block), and the incoming request's id and trace context
ride on each prepared request. Redirects are followed under the config's redirect policy
(``_redirects``). Where nothing has patched them, requests' preparation and ``Session.send``
are replaced by the fast path's (``_fast.prepare``, ``_fast.session``); otherwise requests'
own run, so a tool wrapping them sees every call.
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from requests.cookies import RequestsCookieJar
from requests.hooks import default_hooks
from requests.models import DEFAULT_REDIRECT_LIMIT
from requests.sessions import merge_hooks
from requests.structures import CaseInsensitiveDict
from urllib3.util import parse_url

from . import _deadline, _process, _redirects
from ._checks import seconds as check_seconds
from ._config import PoolConfig
from ._deadline import Deadline
from ._errors import RequestEnded, SharedStateError
from ._failures import TooManyRedirects
from ._fast import seams
from ._fast import session as fast_session
from ._fast.prepare import Headers, merge_setting, prepare
from ._mounted import ProcessAdapter
from ._origins import origin_of
from ._policy import Policy
from ._propagation import Propagation, serve, stop_serving
from ._worker import WorkerPools

MAX_ADAPTERS: Final = 64
"""Configs whose mountable adapter is kept for reuse; past that the memory starts again (they are
cheap to make: they hold no connection)."""

_adapters: dict[PoolConfig | None, ProcessAdapter] = {}


def adapter(config: PoolConfig | None = None) -> ProcessAdapter:
    """A requests transport adapter over this process's pools, for any ``requests.Session``:

        session.mount("https://", wsgi_pool.adapter())

    Safe at import and in the gunicorn master: each send finds the pools of the process it
    runs in. The session's cookies, headers and auth stay its own.
    """
    global _last_adapter
    last = _last_adapter  # read once: another thread may replace it meanwhile
    if last is not None and last[0] is config:
        return last[1]  # a process mostly asks for one config (whose hash covers every field)
    found = _adapters.get(config)
    if found is None:
        if len(_adapters) >= MAX_ADAPTERS:
            _adapters.clear()  # configs made per call: start again rather than grow
        found = _adapters.setdefault(config, ProcessAdapter(config))
    _last_adapter = (config, found)
    return found


_last_adapter: tuple[PoolConfig | None, ProcessAdapter] | None = None


def _holds_connection(response: requests.Response) -> bool:
    return getattr(response.raw, "connection", None) is not None


def _holds_body(response: requests.Response) -> bool:
    """Whether the caller has yet to read the body (so reading it later would find nothing)."""
    return response._content is False and not response._content_consumed


class _EndedBody:
    """A streamed body closed when its request ended: reading it raises, instead of giving
    ``b""`` under a ``Content-Length`` that promised more."""

    __slots__ = ("_raw", "_why")

    def __init__(self, raw: Any, why: str) -> None:
        self._raw = raw
        self._why = why

    def read(self, *args: Any, **kwargs: Any) -> Any:
        raise RequestEnded(f"a streamed body read after its request ended: {self._why}")

    stream = read1 = readinto = readline = readlines = read

    @property
    def data(self) -> Any:
        return self.read()

    def __iter__(self) -> Any:
        return self.read()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class DiscardingCookieJar(RequestsCookieJar):
    """A cookie jar that never stores what an upstream sets; cookies given by the caller still go out."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class Client(requests.Session):
    """The requests API (``get``, ``post``, ``request``, ... returning ``requests.Response``).

    Shares this process's pools and nothing else: its headers, auth, hooks, params, cookies
    and mounted adapters are its own, and the shared pools cannot be changed through it
    (:class:`SharedStateError`). It finds the pools by process id on every call, so one
    created before a fork uses the child's own pools after it. ``close()`` releases the
    streamed responses it returned that are still open; the shared pools stay open.
    Redirects follow the config's policy (see ``redirect_headers`` and ``max_redirects``).
    Cookies an upstream sets are kept only with ``keep_cookies=True`` (a request's own
    client keeps them for the request; a client kept longer must not).
    """

    # requests.Session.__init__ is skipped on purpose: it builds two adapters, each with pools
    # of its own. What it sets is here: the settings that are values as class defaults (set on
    # the client when changed), the ones that are containers made on first use (a middleware
    # makes a client per incoming request, and most use few of them).
    auth: Any = None
    stream = False
    verify: Any = True
    cert: Any = None
    max_redirects = DEFAULT_REDIRECT_LIMIT
    not_after: float | None = None
    """The incoming request's budget (a ``time.monotonic()`` moment): no call outlives it."""
    propagation: Propagation | None = None
    """The incoming request's id and trace context, sent to upstreams allowed to see them."""
    _policy: Policy | None = None  # the config's call settings, found on first use
    _streams: list[requests.Response] | None = None
    _ended: str | None = None  # its request ended (end()): that request's id
    _headers: CaseInsensitiveDict[Any] | None = None  # made on first use: see headers
    _jar: RequestsCookieJar | None = None  # made on first use: see cookies
    _own_pools: WorkerPools | None = None  # pools of the caller's own making, if given
    _settings: dict[str, Any] | None = None  # proxies, hooks, params, adapters once made

    def __init__(
        self,
        config: PoolConfig | None = None,
        *,
        pools: WorkerPools | None = None,
        keep_cookies: bool = False,
        not_after: float | None = None,
        propagation: Propagation | None = None,
    ) -> None:
        self._config = config
        self._pools = pools
        self._keeps_cookies = keep_cookies
        if not_after is not None:
            self.not_after = not_after
        if propagation is not None:
            self.propagation = propagation
        if pools is not None:
            if config is None and pools.config is not _process.effective(None):
                self._config = pools.config  # pools made for a config: calls keep it
            if not pools.registered:  # pools of the caller's own making: calls go through them
                self._own_pools = pools

    def _setting(self, name: str) -> Any:
        """One of requests' container settings, made on first use as Session.__init__ makes it."""
        made = self._settings
        if made is None:
            made = self._settings = {}
        found = made.get(name, _UNMADE)
        if found is _UNMADE:
            if name == "adapters":
                own = self._own_pools
                mounted = (
                    adapter(self._config) if own is None else ProcessAdapter(self._config, own)
                )
                found = OrderedDict([("https://", mounted), ("http://", mounted)])
            else:
                found = default_hooks() if name == "hooks" else {}
            made[name] = found
        return found

    def _set(self, name: str, value: Any) -> None:
        if self._settings is None:
            self._settings = {}
        self._settings[name] = value

    def _made(self, name: str) -> Any:
        """One of those settings if it was made (None: requests' default, not made yet)."""
        made = self._settings
        return None if made is None else made.get(name)

    @property
    def proxies(self) -> Any:
        """The client's proxies (requests' ``Session.proxies``; made on first use)."""
        return self._setting("proxies")

    @proxies.setter
    def proxies(self, value: Any) -> None:
        self._set("proxies", value)

    @property
    def hooks(self) -> Any:
        """The client's hooks (requests' ``Session.hooks``; made on first use)."""
        return self._setting("hooks")

    @hooks.setter
    def hooks(self, value: Any) -> None:
        self._set("hooks", value)

    @property
    def params(self) -> Any:
        """The client's query parameters (requests' ``Session.params``; made on first use)."""
        return self._setting("params")

    @params.setter
    def params(self, value: Any) -> None:
        self._set("params", value)

    @property
    def adapters(self) -> Any:
        """The mounted adapters (requests' ``Session.adapters``; made on first use): this
        process's pools for http and https, unless the client mounts its own."""
        return self._setting("adapters")

    @adapters.setter
    def adapters(self, value: Any) -> None:
        self._set("adapters", value)

    @property
    def headers(self) -> CaseInsensitiveDict[Any]:
        """The client's headers: requests' defaults until changed (made on first use, like requests')."""
        if self._headers is None:
            self._headers = Headers.defaults()
        return self._headers

    @headers.setter
    def headers(self, value: CaseInsensitiveDict[Any]) -> None:
        self._headers = value

    @property
    def cookies(self) -> RequestsCookieJar:
        """The client's cookie jar (one that keeps nothing an upstream sets, unless ``keep_cookies``)."""
        if self._jar is None:
            self._jar = RequestsCookieJar() if self._keeps_cookies else DiscardingCookieJar()
        return self._jar

    @cookies.setter
    def cookies(self, value: RequestsCookieJar) -> None:
        self._jar = value

    @property
    def trust_env(self) -> bool:
        """Always False: the environment (proxies, ``.netrc``, CA bundles) is never read per call."""
        return False

    @trust_env.setter
    def trust_env(self, value: bool) -> None:
        if value:
            raise SharedStateError(
                "a client never reads the environment per call (proxies, .netrc, CA bundles): "
                "set PoolConfig(trust_env=True) to read proxies once when the pools are built"
            )

    @property
    def request_id(self) -> str | None:
        """The incoming request's id (validated, or fresh), as upstreams allowed to see it get it."""
        return None if self.propagation is None else self.propagation.request_id

    @property
    def config(self) -> PoolConfig:
        """The settings this client's calls run under (completed by what the server reported)."""
        return self._call_policy().config

    def _call_policy(self) -> Policy:
        found = self._policy
        if found is None:
            found = self._policy = _process.policy(self._config)
        return found

    @property
    def pools(self) -> WorkerPools:
        """This process's pools, as this client uses them now."""
        self._pools = pools = _process.current(self._pools, self._config)
        return pools

    def request(  # noqa: PLR0917  (requests' signature)
        self,
        method: Any,
        url: str | bytes,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: bool | None = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
        *,
        deadline: float | None = None,
    ) -> requests.Response:
        """requests' ``request``, within a total deadline: ``deadline`` seconds, else the upstream's.

        The deadline covers the whole call: waiting for a pooled connection, connecting,
        retries and backoff, redirects, and reading the body (a streamed body: until it is
        read or closed). It never ends after the incoming request's budget.
        """
        if deadline is not None:
            check_seconds("deadline", deadline)
        if isinstance(url, bytes):
            url = url.decode("utf-8")
        token = self._bind_deadline(url, deadline)
        held = seams.hold()  # every seam judged once for the whole call
        try:
            if not seams.REQUEST.intact():  # a tool wraps requests' own: it sees the call
                return requests.Session.request(
                    self, method, url, params, data, headers, cookies, files, auth, timeout,
                    allow_redirects, proxies, hooks, stream, verify, cert, json,
                )  # fmt: skip
            method = method.upper()
            files, data, params = files or [], data or {}, params or {}
            if (
                cookies
                or hooks
                or self._jar
                or type(self).prepare_request is not _PREPARE
                or not seams.PREPARE.intact()
            ):
                prepared = self.prepare_request(
                    requests.Request(
                        method, url, headers, files, data, params, auth, cookies, hooks, json
                    )
                )
            else:  # what prepare_request makes of that Request, without making it
                prepared = self._prepared(method, url, params, headers, data, files, json, auth)
                hooks = self._made("hooks")
                if hooks and hooks.get("response"):  # the client's own hooks
                    prepared.prepare_hooks(hooks)
            held.request = prepared  # the judgement is this request's send
            settings = self.merge_environment_settings(
                prepared.url, proxies or {}, stream, verify, cert
            )
            return self.send(prepared, timeout=timeout, allow_redirects=allow_redirects, **settings)
        finally:
            seams.release(held)
            _deadline.unbind(token)

    def _bind_deadline(
        self, url: str | bytes | None, seconds: float | None
    ) -> contextvars.Token[Deadline | None]:
        if seconds is None:
            text = url.decode() if isinstance(url, bytes) else str(url or "")
            seconds = self._call_policy().deadline_for(origin_of(text))
        return _deadline.bind(_deadline.start_call(seconds, self.not_after))

    def merge_environment_settings(
        self, url: str | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        """Settings of the call over this client's, over the config's proxies; never the environment."""
        # Only config-derived data is read here, the same in every process: the process-id
        # check is the adapter's, once per call.
        pools = self._pools or self.pools
        base: Any = pools.proxies
        own = self._made("proxies")
        if not (base or proxies or own):
            merged: Any = {}  # what merging three empty settings makes
        else:
            if base and pools.no_proxy and pools.bypasses_proxy(parse_url(url or "").host):
                base = {}
            merged = merge_setting(proxies, merge_setting(own, base))
        return {
            "proxies": merged,
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """requests' preparation, less what a call without cookies does not need.

        The result is requests' own: a call with cookies (given, or kept from an earlier
        response) is prepared by requests; otherwise the settings are merged as requests
        merges them, and the cookie jar and URL credentials are looked at only if there are any.
        """
        if request.cookies or self._jar or not seams.PREPARE.intact():  # no jar: none kept
            return super().prepare_request(request)
        prepared = self._prepared(
            request.method,
            request.url,
            request.params,
            request.headers,
            request.data,
            request.files,
            request.json,
            request.auth,
        )
        prepared.prepare_hooks(merge_hooks(request.hooks, self.hooks))
        return prepared

    def _prepared(  # noqa: PLR0917  (a Request's fields)
        self,
        method: Any,
        url: Any,
        params: Any,
        headers: Any,
        data: Any,
        files: Any,
        json: Any,
        auth: Any,
    ) -> requests.PreparedRequest:
        return prepare(
            method,
            url,
            params,
            headers,
            data,
            files,
            json,
            auth,
            own_params=self._made("params"),
            own_headers=self._headers,
            own_auth=self.auth,
        )

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self._ended is not None:
            raise RequestEnded(self._why_ended())
        # The request's id and trace context reach the adapter in this thread's context.
        serving = None if self.propagation is None else serve(self.propagation)
        if "proxies" not in kwargs:  # a direct send(): requests would use only self.proxies
            kwargs["proxies"] = self.merge_environment_settings(
                request.url, None, None, None, None
            )["proxies"]
        token = self._bind_deadline(request.url, None) if _deadline.current() is None else None
        # The seams judged for this send, unless request() did: a send from a hook of a call
        # (or of one of its redirects) is judged for itself.
        held = None if seams.holds(request) else seams.hold(request)
        try:
            if seams.SESSION.intact():
                response = fast_session.send(self, request, **kwargs)
            else:  # an instrumentation wraps Session.send (OpenTelemetry's): it sees every call
                response = super().send(request, **kwargs)
        finally:
            if held is not None:
                seams.release(held)
            if serving is not None:
                stop_serving(serving)
            if token is not None:
                _deadline.unbind(token)
        if kwargs.get("stream", self.stream):
            # Held strongly: a streamed response the handler dropped unread still holds its
            # connection, and only close() can give it back. Released ones are pruned here.
            self._streams = [r for r in self._streams or () if _holds_connection(r)]
            self._streams.append(response)
        return response

    def resolve_redirects(  # noqa: PLR0917  (requests' signature)
        self,
        resp: requests.Response,
        req: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
        yield_requests: bool = False,
        **adapter_kwargs: Any,
    ) -> Any:
        """Follow redirects under the config's policy (``wsgi_pool._redirects``); requests' signature."""
        pools = self._pools or self.pools
        config = self.config
        limit = min(self.max_redirects, config.max_redirects)
        own_proxies = {k: v for k, v in (proxies or {}).items() if pools.proxies.get(k) != v}
        history: list[requests.Response] = []
        fragment = urlsplit(req.url or "").fragment
        location = self.get_redirect_target(resp)
        while location:
            resp.history = history[:]  # the hops before it, as requests' own loop sets them
            history.append(resp)
            _redirects.discard_body(resp)
            source = origin_of(resp.url)
            if len(history) > limit:
                raise TooManyRedirects(
                    f"more than {limit} redirects", upstream=source, request=req, response=resp
                )
            url, fragment = _redirects.target_of(resp, location, fragment)
            prepared = req.copy()
            prepared.url = url
            self.rebuild_method(prepared, resp)
            target = origin_of(url)
            _redirects.shape_hop(
                prepared,
                resp,
                source=source,
                target=target,
                keep=config.redirect_headers,
                cookies=self.cookies,
            )
            _redirects.rewind(prepared)
            hop_proxies = self.merge_environment_settings(url, own_proxies, None, None, None)
            req = prepared
            if yield_requests:
                yield req  # response.next: requests takes this one value and never resumes
                return  # pragma: no cover
            resp = self.send(
                req,
                stream=stream,
                timeout=timeout,
                verify=verify,
                cert=cert,
                proxies=hop_proxies["proxies"],
                allow_redirects=False,
                **adapter_kwargs,
            )
            location = self.get_redirect_target(resp)
            yield resp

    def close(self) -> None:
        """Release the streamed responses still open and close adapters this client mounted."""
        streams = self._streams
        if streams:
            self._streams = None
            for response in list(streams):
                response.close()
                if self._ended is not None and _holds_body(response):
                    response.raw = _EndedBody(response.raw, self._why_ended())
        mounted = self._made("adapters")  # none made: only this process's pools, nothing to close
        for each in (mounted or {}).values():
            each.close()

    def end(self) -> None:
        """The request this client belongs to has ended: it is closed, and any later call, or
        read of a body it streamed and left unread, raises :class:`RequestEnded`."""
        self._ended = (self.propagation.request_id if self.propagation else None) or "-"
        if self._streams or self._settings:  # else nothing streamed, no adapter mounted
            self.close()

    def _why_ended(self) -> str:
        return (
            f"the request {self._ended} this client belonged to has ended: its budget, id and "
            f"cookies were that request's (use wsgi_pool.client() outside a request, and read "
            f"a streamed body before returning the response)"
        )

    def __repr__(self) -> str:
        return f"<wsgi_pool.Client over {self.pools!r}>"

    def __getstate__(self) -> dict[str, Any]:
        """requests' attributes and the config. Not the incoming request's budget and trace
        context (they mean nothing in another process), nor pools (each process finds its own)."""
        state = super().__getstate__()
        state.update(config=self._config, keep_cookies=self._keeps_cookies)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        Client.__init__(self, state.pop("config"), keep_cookies=state.pop("keep_cookies"))
        super().__setstate__(state)


_PREPARE: Final = Client.prepare_request
_UNMADE: Final = object()
