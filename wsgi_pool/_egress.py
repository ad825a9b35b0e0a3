"""The egress policy: which addresses outbound calls may connect to, judged on the address itself.

A host name is judged by what it resolves to, at connect time, on every connection (redirect
hops included): numeric spellings (``2130706434``, ``0x7f000002``, ``127.2``), IPv4 inside
IPv6 (``::ffff:127.0.0.2``, 6to4, NAT64) and DNS answers that change between a check and the
connection (rebinding) all come down to the address the socket connects to. Off by default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Final

from ._config import PoolConfig

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")


class EgressPolicy:
    """An allowlist, a denylist and "deny what is not globally routable", from the config.

    Immutable after construction.
    """

    __slots__ = ("allow", "deny", "deny_private")

    def __init__(
        self, allow: tuple[Network, ...], deny: tuple[Network, ...], deny_private: bool
    ) -> None:
        self.allow = allow
        self.deny = deny
        self.deny_private = deny_private

    @classmethod
    def from_config(cls, config: PoolConfig) -> EgressPolicy | None:
        """The config's policy; None when it has none (every address allowed)."""
        if not (config.egress_allow or config.egress_deny or config.egress_deny_private):
            return None
        return cls(
            tuple(ipaddress.ip_network(n) for n in config.egress_allow),
            tuple(ipaddress.ip_network(n) for n in config.egress_deny),
            config.egress_deny_private,
        )

    def refuses(self, text: str) -> str | None:
        """Why a connection to the address ``text`` is refused; None if it is allowed.

        Denied wins: an address (or the IPv4 address inside it) in ``deny`` is refused; one
        in ``allow`` is allowed; with ``deny_private``, one that is not globally routable is
        refused; with an allowlist, anything not on it is refused.
        """
        forms = list(_forms(ipaddress.ip_address(text.partition("%")[0])))
        for form in forms:
            for network in self.deny:
                if form.version == network.version and form in network:
                    return f"in egress_deny {network}"
        if any(
            form in network
            for form in forms
            for network in self.allow
            if form.version == network.version
        ):
            return None
        if self.deny_private:
            for form in forms:
                if not form.is_global or form.is_multicast:
                    return f"egress_deny_private: {form} is not globally routable"
        if self.allow:
            return "not in egress_allow"
        return None


def _forms(address: Address) -> Iterator[Address]:
    """``address``, the IPv4 address an IPv6 one carries (mapped, compatible, 6to4, NAT64), and
    loopback for an unspecified one among them (a connect to ``0.0.0.0``, ``::`` or
    ``::ffff:0.0.0.0`` reaches this host)."""
    forms: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and (address in _NAT64 or address in _IPV4_COMPATIBLE):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            forms.append(embedded)
    for form in list(forms):
        if form.is_unspecified:
            forms.append(ipaddress.ip_address("127.0.0.1" if form.version == 4 else "::1"))
    yield from forms
