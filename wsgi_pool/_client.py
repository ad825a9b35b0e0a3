"""The client handlers use: the requests API over the process's shared pools, nothing else shared."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import timedelta
from typing import Any, Final, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.exceptions import InvalidSchema
from requests.hooks import default_hooks, dispatch_hook
from requests.models import DEFAULT_REDIRECT_LIMIT
from requests.sessions import merge_hooks
from requests.structures import CaseInsensitiveDict
from requests.utils import default_headers
from urllib3.util import parse_url

from . import _deadline, _process, _redirects
from ._config import PoolConfig, check_seconds
from ._deadline import Deadline
from ._errors import SharedStateError
from ._failures import TooManyRedirects
from ._pools import TRACE_ATTRIBUTE, WorkerPools, origin_of, read_body
from ._propagation import Propagation
from ._transport import prepared_url, sets_cookie

_block_ends: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "wsgi_pool.block_deadline", default=None
)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every call in the block ends within ``seconds`` of entering it (blocks nest: the sooner wins).

        with wsgi_pool.deadline(2.0):
            user = http.get(f"{USERS}/42").json()
            cart = http.get(f"{CARTS}/{user['cart']}").json()

    It only shortens: each call also keeps its own deadline and the incoming request's budget.
    """
    check_seconds("deadline", seconds)
    ends = time.monotonic() + seconds
    outer = _block_ends.get()
    token = _block_ends.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _block_ends.reset(token)


_SESSION_SEND: Final = requests.Session.send
"""requests' own ``Session.send``; an instrumentation that replaces it gets requests' send path."""


def _merged(
    call_setting: Any,
    client_setting: Any,
    dict_class: Callable[[Any], MutableMapping[Any, Any]] = OrderedDict,
) -> Any:
    """requests' ``merge_setting``: the call's setting over the client's, None values removed."""
    if client_setting is None:
        return call_setting
    if call_setting is None:
        return client_setting
    if not (isinstance(client_setting, Mapping) and isinstance(call_setting, Mapping)):
        return call_setting
    merged = dict_class(client_setting.items())
    merged.update(call_setting.items())
    for key in [key for key, value in merged.items() if value is None]:
        del merged[key]
    return merged


class _Headers(CaseInsensitiveDict[Any]):
    """A client's headers: it notes the first change, so unchanged defaults are checked only once."""

    changed = False

    @classmethod
    def defaults(cls) -> _Headers:
        """requests' default headers, unchanged."""
        headers = cls(default_headers())
        headers.changed = False
        return headers

    def __setitem__(self, key: str, value: Any) -> None:
        self.changed = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.changed = True
        super().__delitem__(key)


def _checked_defaults() -> CaseInsensitiveDict[Any]:
    prepared = requests.PreparedRequest()
    prepared.prepare_headers(default_headers())
    return prepared.headers


_CHECKED_DEFAULTS: Final = _checked_defaults()
"""requests' default headers as ``PreparedRequest.prepare_headers`` leaves them (validated)."""


def _holds_connection(response: requests.Response) -> bool:
    return getattr(response.raw, "connection", None) is not None


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
    """

    def __init__(
        self,
        config: PoolConfig | None = None,
        *,
        pools: WorkerPools | None = None,
        keep_cookies: bool = True,
        not_after: float | None = None,
        propagation: Propagation | None = None,
    ) -> None:
        # requests.Session.__init__ is skipped on purpose: it builds two adapters, each with
        # pools of its own. Every attribute it sets is set here, cheaply.
        self._config = config
        self._pools = pools
        self.not_after = not_after
        """The incoming request's budget (a ``time.monotonic()`` moment): no call outlives it."""
        self.propagation = propagation
        """The incoming request's id and trace context, sent to upstreams allowed to see them."""
        self._streams: list[requests.Response] | None = None
        self._headers: CaseInsensitiveDict[Any] | None = None  # made on first use: see headers
        self.auth = None
        self.proxies = {}
        self.hooks = default_hooks()
        self.params = {}
        self.stream = False
        self.verify = True
        self.cert = None
        self.max_redirects = DEFAULT_REDIRECT_LIMIT
        self._keeps_cookies = keep_cookies
        self._jar: RequestsCookieJar | None = None  # made on first use: see cookies
        self.adapters = OrderedDict()

    @property
    def headers(self) -> CaseInsensitiveDict[Any]:
        """The client's headers: requests' defaults until changed (made on first use, like requests')."""
        if self._headers is None:
            self._headers = _Headers.defaults()
        return self._headers

    @headers.setter
    def headers(self, value: CaseInsensitiveDict[Any]) -> None:
        self._headers = value

    @property
    def cookies(self) -> RequestsCookieJar:
        """The client's cookie jar (one that keeps nothing an upstream sets for ``client()``)."""
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
    def pools(self) -> WorkerPools:
        """This process's pools, as this client uses them now."""
        self._pools = pools = _process.current(self._pools, self._config)
        return pools

    def get_adapter(self, url: str) -> BaseAdapter:
        """An adapter this client mounted, else the process's shared one for http and https."""
        lowered = url.lower()
        for prefix, adapter in self.adapters.items():
            if lowered.startswith(prefix.lower()):
                return adapter
        if lowered.startswith(("http://", "https://")):
            return self.pools.adapter
        raise InvalidSchema(f"No connection adapters were found for {url!r}")

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
        try:
            method = method.upper()
            files, data, params = files or [], data or {}, params or {}
            if cookies or hooks or self._jar or type(self).prepare_request is not _PREPARE:
                prepared = self.prepare_request(
                    requests.Request(
                        method, url, headers, files, data, params, auth, cookies, hooks, json
                    )
                )
            else:  # what prepare_request makes of that Request, without making it
                prepared = self._prepare(method, url, params, headers, data, files, json, auth)
                if self.hooks and self.hooks.get("response"):  # the client's own hooks
                    prepared.prepare_hooks(self.hooks)
            settings = self.merge_environment_settings(
                prepared.url, proxies or {}, stream, verify, cert
            )
            return self.send(prepared, timeout=timeout, allow_redirects=allow_redirects, **settings)
        finally:
            _deadline.unbind(token)

    def _bind_deadline(
        self, url: str | bytes | None, seconds: float | None
    ) -> contextvars.Token[Deadline | None]:
        if seconds is None:
            text = url.decode() if isinstance(url, bytes) else str(url or "")
            # Config-derived, the same in every process: the process-id check is get_adapter's.
            seconds = (self._pools or self.pools).deadline_for(text)
        ends = [moment for moment in (self.not_after, _block_ends.get()) if moment is not None]
        return _deadline.bind(Deadline.start(seconds, not_after=min(ends, default=None)))

    def merge_environment_settings(
        self, url: str | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        """Settings of the call over this client's, over the config's proxies; never the environment."""
        # Only config-derived data is read here, the same in every process: the process-id
        # check is get_adapter's, once per call.
        pools = self._pools or self.pools
        base: Any = pools.proxies
        if base and pools.no_proxy and pools.bypasses_proxy(parse_url(url or "").host):
            base = {}
        return {
            "proxies": _merged(proxies, _merged(self.proxies, base)),
            "stream": _merged(stream, self.stream),
            "verify": _merged(verify, self.verify),
            "cert": _merged(cert, self.cert),
        }

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """requests' preparation, less what a call without cookies does not need.

        The result is requests' own: a call with cookies (given, or kept from an earlier
        response) is prepared by requests; otherwise the settings are merged as requests
        merges them, and the cookie jar and URL credentials are looked at only if there are any.
        """
        if request.cookies or self._jar:  # no jar yet: no cookies kept
            return super().prepare_request(request)
        prepared = self._prepare(
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

    def _prepare(  # noqa: PLR0917  (a Request's fields)
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
        """prepare_request's work for a call without cookies, the client's hooks included."""
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        params = _merged(params, self.params) or None
        quick = prepared_url(url) if params is None and isinstance(url, str) else None
        if quick is None:
            prepared.prepare_url(url, params)
        else:
            prepared.url = quick
        own = self._headers
        if not headers and (own is None or (isinstance(own, _Headers) and not own.changed)):
            # What prepare_headers makes of the defaults: a copy of them, store to store.
            merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict()
            merged._store = _CHECKED_DEFAULTS._store.copy()
            prepared.headers = merged
        else:
            prepared.prepare_headers(_merged(headers, self.headers, CaseInsensitiveDict))
        prepared._cookies = RequestsCookieJar()
        prepared.prepare_body(data, files, json)
        auth = _merged(auth, self.auth)
        if auth is not None or "@" in (prepared.url or ""):
            prepared.prepare_auth(auth, prepared.url or "")
        return prepared

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self.propagation is not None:
            setattr(request, TRACE_ATTRIBUTE, self.propagation)
        if "proxies" not in kwargs:  # a direct send(): requests would use only self.proxies
            kwargs["proxies"] = self.merge_environment_settings(
                request.url, None, None, None, None
            )["proxies"]
        token = self._bind_deadline(request.url, None) if _deadline.current() is None else None
        try:
            if requests.Session.send is _SESSION_SEND:
                response = self._send(request, **kwargs)
            else:  # an instrumentation (OpenTelemetry's) wraps Session.send: it sees every call
                response = super().send(request, **kwargs)
        finally:
            if token is not None:
                _deadline.unbind(token)
        if kwargs.get("stream", self.stream):
            # Held strongly: a streamed response the handler dropped unread still holds its
            # connection, and only close() can give it back. Released ones are pruned here.
            self._streams = [r for r in self._streams or () if _holds_connection(r)]
            self._streams.append(response)
        return response

    def _send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """requests' ``Session.send``, less the cookie parser on responses that set no cookie."""
        if isinstance(cast(Any, request), requests.Request):
            raise ValueError("You can only send PreparedRequests.")
        kwargs.setdefault("stream", self.stream)
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("cert", self.cert)
        allow_redirects = kwargs.pop("allow_redirects", True)
        adapter = self.get_adapter(request.url or "")
        start = time.perf_counter()
        response: requests.Response = adapter.send(request, **kwargs)
        response.elapsed = timedelta(seconds=time.perf_counter() - start)
        response = dispatch_hook("response", request.hooks, response, **kwargs)
        for earlier in response.history:  # set by a hook
            self._keep_cookies(earlier.request, earlier.raw)
        self._keep_cookies(request, response.raw)
        if response.is_redirect:
            if allow_redirects:
                history = [response, *self.resolve_redirects(response, request, **kwargs)]
                response = history.pop()
                response.history = history
            else:
                response._next = next(
                    self.resolve_redirects(response, request, yield_requests=True, **kwargs),
                    None,
                )
        if not kwargs["stream"]:
            read_body(response)
        return response

    def _keep_cookies(self, request: Any, raw: Any) -> None:
        if sets_cookie(getattr(raw, "headers", None)):
            extract_cookies_to_jar(self.cookies, request, raw)

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
        config = pools.config
        limit = min(self.max_redirects, config.max_redirects)
        own_proxies = {k: v for k, v in (proxies or {}).items() if pools.proxies.get(k) != v}
        history: list[requests.Response] = []
        fragment = urlsplit(req.url or "").fragment
        location = self.get_redirect_target(resp)
        while location:
            history.append(resp)
            resp.history = history[1:]
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
        streams, self._streams = self._streams, None
        for response in list(streams or ()):
            response.close()
        for adapter in self.adapters.values():
            adapter.close()

    def __repr__(self) -> str:
        return f"<wsgi_pool.Client over {self.pools!r}>"


_PREPARE: Final = Client.prepare_request
