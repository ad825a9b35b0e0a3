"""What one config means for each call: the settings per upstream, and the default deadline.

A config holds two kinds of settings. Some shape the pools (their sizes, idle expiry, the
egress policy, the proxies, the extensions): configs that agree on those share one set of
pools in a process (``PoolConfig.pool_shape``). The rest shape each call (timeouts, the
deadline, retries, size caps, propagation, redirects): a :class:`Policy` holds them for one
config, worked out once per upstream, and each call runs under its caller's policy, whichever
pools carry it.
"""

from __future__ import annotations

from typing import Final

from ._config import PoolConfig, UpstreamSettings
from ._sizing import PoolSizing, size_pools

MAX_SETTINGS: Final = 1024
"""Upstreams whose effective settings a policy keeps worked out (past that: worked out per call)."""


class Policy:
    """The call settings of one config. Immutable but for its cache of per-upstream settings.

    Mutable state: ``_settings`` (origin to its settings), changed by single dict operations,
    atomic under the GIL; two threads racing on a new upstream work out equal settings.
    """

    __slots__ = ("_settings", "config", "sizing")

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.sizing: PoolSizing = size_pools(config)
        self._settings: dict[str, UpstreamSettings] = {}

    def settings_for(self, origin: str) -> UpstreamSettings:
        """The settings that apply to calls to ``origin`` (``scheme://host:port``)."""
        found = self._settings.get(origin)
        if found is None:
            found = self.config.for_upstream(origin)
            if len(self._settings) < MAX_SETTINGS:
                self._settings[origin] = found
        return found

    def deadline_for(self, origin: str) -> float:
        """The deadline, in seconds, of a call to ``origin``: its upstream's, else the config's."""
        return self.settings_for(origin).deadline or self.sizing.deadline
