"""The client handlers use: the requests API over the process's shared pools, nothing else shared."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.cookies import RequestsCookieJar
from requests.exceptions import InvalidSchema
from requests.hooks import default_hooks
from requests.models import DEFAULT_REDIRECT_LIMIT
from requests.sessions import merge_setting
from requests.utils import default_headers
from urllib3.util import parse_url

from . import _deadline, _process, _redirects
from ._config import PoolConfig, check_seconds
from ._deadline import Deadline
from ._errors import SharedStateError
from ._failures import TooManyRedirects
from ._pools import TRACE_ATTRIBUTE, WorkerPools, origin_of
from ._propagation import Propagation

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
        self.headers = default_headers()
        self.auth = None
        self.proxies = {}
        self.hooks = default_hooks()
        self.params = {}
        self.stream = False
        self.verify = True
        self.cert = None
        self.max_redirects = DEFAULT_REDIRECT_LIMIT
        self.cookies = RequestsCookieJar() if keep_cookies else DiscardingCookieJar()
        self.adapters = OrderedDict()

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

    def request(
        self,
        method: str,
        url: str | bytes,
        *args: Any,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """requests' ``request``, within a total deadline: ``deadline`` seconds, else the upstream's.

        The deadline covers the whole call: waiting for a pooled connection, connecting,
        retries and backoff, redirects, and reading the body (a streamed body: until it is
        read or closed). It never ends after the incoming request's budget.
        """
        if deadline is not None:
            check_seconds("deadline", deadline)
        token = self._bind_deadline(url, deadline)
        try:
            return super().request(method, url, *args, **kwargs)
        finally:
            _deadline.unbind(token)

    def _bind_deadline(
        self, url: str | bytes | None, seconds: float | None
    ) -> contextvars.Token[Deadline | None]:
        if seconds is None:
            text = url.decode() if isinstance(url, bytes) else str(url or "")
            seconds = self.pools.deadline_for(text)
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
            "proxies": merge_setting(proxies, merge_setting(self.proxies, base)),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self.propagation is not None:
            setattr(request, TRACE_ATTRIBUTE, self.propagation)
        if "proxies" not in kwargs:  # a direct send(): requests would use only self.proxies
            kwargs["proxies"] = self.merge_environment_settings(
                request.url, None, None, None, None
            )["proxies"]
        token = self._bind_deadline(request.url, None) if _deadline.current() is None else None
        try:
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
