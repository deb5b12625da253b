"""Where aspweb may send a request whose address someone typed (server-side request forgery).

One rule per kind of person who sets the URL:
- `check_public_url`: URLs that non-admins set (budget webhooks) must resolve only to public addresses,
  unless the operator lists the host in ASPWEB_WEBHOOK_ALLOWED_HOSTS (a chat server on the LAN, a test
  receiver). Otherwise a Finance user could make aspweb post to its own network and read the answer.
- `check_not_metadata`: provider base URLs, set by admins, may be loopback or private (Ollama and vLLM run
  next to aspweb) but never link-local or a cloud metadata service, where a cloud machine's credentials are.

`PinnedTransport` sends to the address that was checked, so a DNS answer that changes between the check and
the connection (DNS rebinding) cannot take the request elsewhere.
"""

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

# Metadata services outside the link-local ranges (which are refused whole): AWS's IPv6 endpoint, Alibaba
# Cloud's, and Azure's host endpoint (WireServer).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200",
                                                                  "168.63.129.16"))
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal", "metadata.azure.internal", "metadata.platformequinix.com"})


class Refused(ValueError):
    """aspweb will not send to this URL; the message says why, naming the host but never the whole URL
    (webhook URLs are credentials)."""


class Unresolved(Refused):
    """The host has no address now; unlike other refusals, this may pass on a later try."""


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, 6to4, Teredo, NAT64): a connection to it
    may end at that IPv4 address, so that is the one to judge."""
    if ip.ipv4_mapped or ip.sixtofour:
        return ip.ipv4_mapped or ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # :: and ::1 are IPv6's own
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _unwrap(ip: IPAddress) -> IPAddress:
    inner = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    return inner or ip


def public_problem(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address, in words for a form ("a loopback address"); None if it is."""
    ip = _unwrap(ip)
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip in _UNIQUE_LOCAL:
        return "a unique local (private) address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    return None if ip.is_global else "a non-public address"


def metadata_problem(ip: IPAddress) -> str | None:
    """Why `ip` is never a provider's address (link-local or a metadata service); None if it may be."""
    ip = _unwrap(ip)
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address, where cloud metadata services answer"
    return None


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("Only http:// and https:// URLs with a host are sent.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused(f"{parts.hostname} has an invalid port.") from None
    return parts.hostname.rstrip(".").lower(), port


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # The C resolver also reads 2852039166 and 0251.0376.0251.0376 as 169.254.169.254.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Unresolved(f"{host} does not resolve to an address.") from None
    # A scope ("fe80::1%eth0") is not part of the address.
    return list(dict.fromkeys(ipaddress.ip_address(str(answer[4][0]).split("%")[0]) for answer in answers))


def _allowed_internal(host: str, port: int) -> bool:
    netloc_host = f"[{host}]" if ":" in host else host
    allowed = {entry.lower() for entry in settings.WEBHOOK_ALLOWED_HOSTS}
    return bool({host, netloc_host, f"{netloc_host}:{port}"} & allowed)


def _judge(host: str, addresses: list[IPAddress], problem: Callable[[IPAddress], str | None]) -> None:
    for ip in addresses:
        if why := problem(ip):
            raise Refused(f"{host} is {why}." if _literal(host) == ip else f"{host} resolves to {ip}, {why}.")


def check_public_url(url: str) -> IPAddress:
    """The address to send `url`'s request to, once every address its host resolves to is public (or the
    operator allows the host). Raises Refused saying why not."""
    host, port = _host_port(url)
    addresses = resolve(host, port)
    if not _allowed_internal(host, port):
        _judge(host, addresses, public_problem)
    return addresses[0]


def clean_webhook_url(url: str) -> str:
    """A form's webhook URL (budgets' and reconciliation's alerts), refused with a ValidationError unless it
    reaches a public address: aspweb posts to it on a user's word."""
    if url:
        try:
            check_public_url(url)
        except Refused as exc:
            raise ValidationError(f"{exc} Webhooks go only to public addresses; an operator can allow an "
                                  "internal receiver with ASPWEB_WEBHOOK_ALLOWED_HOSTS.") from None
    return url


def check_not_metadata(url: str) -> None:
    """Refuse a provider base URL that names a metadata service or a link-local address. Host names are not
    resolved here: forms and config import must not depend on DNS, and a provider's calls go to it."""
    host, _ = _host_port(url)
    if host in METADATA_HOSTS:
        raise Refused(f"{host} is a cloud metadata service.")
    if (ip := _literal(host)) is not None:
        _judge(host, [ip], metadata_problem)


class PinnedTransport(httpx.HTTPTransport):
    """Connects each request to the address `check(url)` approved, with the Host header and the TLS server
    name of the URL's host, so that certificates are still verified against the name. Resolving once and
    connecting to that answer is what keeps a second, different DNS answer out."""

    def __init__(self, check: Callable[[str], IPAddress], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._check = check

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.raw_host.decode("ascii")
        ip = self._check(str(request.url))
        request.url = request.url.copy_with(host=str(ip))
        request.extensions = {**request.extensions, "sni_hostname": host}
        return super().handle_request(request)
