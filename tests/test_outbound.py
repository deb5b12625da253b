"""Where aspweb may send a request whose address someone typed: the words for each kind of address that is
not public (IPv6 forms that carry an IPv4 address judged by that address), the provider rule that keeps
loopback and private but never metadata, and the transport that connects to the checked address."""

import ipaddress
from typing import Any

import httpx
import pytest

from aspweb import outbound
from tests.budgets_support import PUBLIC_IP, fake_dns, receiver


@pytest.mark.parametrize(("address", "words"), [
    ("127.0.0.1", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.0.0.1", "a private address"),
    ("172.16.5.4", "a private address"),
    ("192.168.1.1", "a private address"),
    ("169.254.169.254", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("100.64.0.1", "a shared (CGNAT) address"),
    ("100.127.255.254", "a shared (CGNAT) address"),
    ("224.0.0.1", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("0.0.0.0", "an unspecified address"),  # noqa: S104
    ("::", "an unspecified address"),
    ("240.0.0.1", "a reserved address"),
    ("fd00:ec2::254", "a unique local (private) address"),
    ("fc00::1", "a unique local (private) address"),
    ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "a link-local address"),
    ("::127.0.0.1", "a loopback address"),  # IPv4-compatible
    ("::10.0.0.1", "a private address"),
    ("2002:7f00:1::", "a loopback address"),  # 6to4 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "a link-local address"),  # NAT64 of 169.254.169.254
    (PUBLIC_IP, None),
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
])
def test_each_kind_of_address_that_is_not_public_is_named(address: str, words: str | None) -> None:
    assert outbound.public_problem(ipaddress.ip_address(address)) == words


@pytest.mark.parametrize(("url", "error"), [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://169.254.0.1:11434/v1", "169.254.0.1 is a link-local address"),
    ("http://[fe80::1]/v1", "fe80::1 is a link-local address"),
    ("http://[fd00:ec2::254]/latest", "fd00:ec2::254 is a cloud metadata address."),
    ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is a link-local address"),
    ("http://100.100.100.200/latest/meta-data", "100.100.100.200 is a cloud metadata address."),
    ("http://metadata.google.internal/computeMetadata/v1", "metadata.google.internal is a cloud metadata service."),
    ("http://METADATA.goog./v1", "metadata.goog is a cloud metadata service."),
    ("http://2852039166/latest", "2852039166 is a link-local address"),  # past the form's URL check
    ("http://0251.0376.0251.0376/latest", "0251.0376.0251.0376 is a link-local address"),
    ("file:///etc/passwd", "Only http:// and https:// URLs with a host are sent."),
])
def test_provider_urls_never_reach_metadata(url: str, error: str) -> None:
    with pytest.raises(outbound.Refused) as refused:
        outbound.check_not_metadata(url)
    assert str(refused.value).startswith(error)


@pytest.mark.parametrize("url", ["http://localhost:11434/v1", "http://127.0.0.1:8000/v1", "http://10.0.0.5/v1",
                                 "http://[::1]:8000/v1", "https://api.openai.com/v1"])
def test_provider_urls_may_be_local_or_private(url: str) -> None:
    outbound.check_not_metadata(url)


def test_allowed_hosts_name_a_host_or_a_host_and_port(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"chat.lan": ["10.0.0.9"]})
    settings.WEBHOOK_ALLOWED_HOSTS = ["Chat.LAN", "[::1]:8065"]
    assert outbound.check_public_url("https://chat.lan/hooks/x") == ipaddress.ip_address("10.0.0.9")
    assert outbound.check_public_url("http://[::1]:8065/hooks/x") == ipaddress.ip_address("::1")
    with pytest.raises(outbound.Refused, match=r"::1 is a loopback address"):
        outbound.check_public_url("http://[::1]:8066/hooks/x")


def test_a_name_with_any_private_answer_is_refused(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = []
    fake_dns(monkeypatch, {"hooks.example.com": [f"{PUBLIC_IP},10.0.0.1"]})
    with pytest.raises(outbound.Refused, match=r"resolves to 10\.0\.0\.1, a private address"):
        outbound.check_public_url("https://hooks.example.com/x")


def test_the_pinned_transport_keeps_the_host_name_for_the_host_header_and_tls(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.example.com"]
    fake_dns(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
    sent: list[httpx.Request] = []
    real_handle = httpx.HTTPTransport.handle_request

    def handle(transport: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return real_handle(transport, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)
    with receiver([200]) as hook:
        port = hook.server.server_address[1]
        with httpx.Client(transport=outbound.PinnedTransport(outbound.check_public_url)) as client:
            assert client.post(f"http://hooks.example.com:{port}/x", json={}).status_code == 200

    [post] = hook.posts
    assert post["host"] == f"hooks.example.com:{port}"
    [request] = sent
    assert request.url.host == "127.0.0.1"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
