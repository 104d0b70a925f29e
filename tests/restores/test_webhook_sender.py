"""The webhook sender: signed POSTs and curl-style failures (docs/api.md#webhooks)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from urllib3.exceptions import MaxRetryError, NameResolutionError

from portal import __version__
from restores.clients import webhook_sender as webhooks
from restores.clients.http import describe_failure
from restores.clients.webhook_sender import DeliveryResult, deliver, sign
from tests.support.webhooks import TLS, Receiver

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
BODY = json.dumps(
    {"job_uuid": "8f6c1f0e-23d2-4717-8c8e-1a518e5738f0", "status": "completed", "results": []}
).encode()
WEBHOOK_ID = "msg_2d1c6f0e8f6c1f0e23d24717"
HOOK_URL = "https://hooks.example.com/restore-hook"
PUBLIC_IP = "93.184.215.14"


@pytest.fixture
def allow_private(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def refuse_private(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False


@pytest.fixture
def hooks() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def send(url: str = HOOK_URL, *, timeout: float = 5.0, body: bytes = BODY, **kwargs: Any) -> DeliveryResult:
    return deliver(url=url, body=body, webhook_id=WEBHOOK_ID, secret=SECRET, timeout=timeout, **kwargs)


def verify(body: bytes, headers: Any, secret: str = SECRET) -> Any:
    """Check the signature the way a tenant would: with the Standard Webhooks library."""
    return Webhook(secret).verify(body, {k: v for k, v in headers.items()})


class FakeResolver:
    """Stands in for ``socket.getaddrinfo``: names map to addresses, IP literals pass through."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.lookups: list[str] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            return self.real(host, port, *args, **kwargs)
        self.lookups.append(name)
        if name not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        out = []
        for address in self.names[name]:
            version = 6 if ":" in address else 4
            sockaddr: tuple[Any, ...] = (
                (address, int(port or 0)) if version == 4 else (address, int(port or 0), 0, 0)
            )
            out.append((family[version], socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> FakeResolver:
    resolver = FakeResolver(names)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return resolver


# --- Signatures ------------------------------------------------------------------------------


def test_it_signs_so_that_standard_webhooks_verifies() -> None:
    timestamp = int(time.time())
    headers = {
        "webhook-id": WEBHOOK_ID,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=SECRET, webhook_id=WEBHOOK_ID, timestamp=timestamp, body=BODY),
    }
    assert verify(BODY, headers) == json.loads(BODY)


def test_it_signs_like_the_reference_library() -> None:
    timestamp = 1_761_654_705
    expected = Webhook(SECRET).sign(
        WEBHOOK_ID, dt.datetime.fromtimestamp(timestamp, tz=dt.UTC), BODY.decode()
    )
    assert sign(secret=SECRET, webhook_id=WEBHOOK_ID, timestamp=timestamp, body=BODY) == expected
    assert expected.startswith("v1,")


def test_it_signs_over_the_exact_bytes_of_a_non_ascii_body() -> None:
    body = json.dumps({"message": "Número restaurado ✓"}, ensure_ascii=False).encode()
    timestamp = int(time.time())
    signature = sign(secret=SECRET, webhook_id=WEBHOOK_ID, timestamp=timestamp, body=body)
    headers = {"webhook-id": WEBHOOK_ID, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    assert verify(body, headers) == {"message": "Número restaurado ✓"}


def test_it_makes_a_signature_that_fails_for_another_secret_id_or_body() -> None:
    timestamp = int(time.time())
    signature = sign(secret=SECRET, webhook_id=WEBHOOK_ID, timestamp=timestamp, body=BODY)
    headers = {"webhook-id": WEBHOOK_ID, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    other_secret = "whsec_" + base64.b64encode(b"another-secret-of-24-byte").decode()
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers, secret=other_secret)
    with pytest.raises(WebhookVerificationError):
        verify(BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, {**headers, "webhook-id": "msg_other"})


def test_it_accepts_a_secret_without_base64_padding() -> None:
    key = b"sixteen byte key"
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert not unpadded.endswith("=")
    timestamp = int(time.time())
    signature = sign(secret=unpadded, webhook_id=WEBHOOK_ID, timestamp=timestamp, body=BODY)
    headers = {"webhook-id": WEBHOOK_ID, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    assert verify(BODY, headers, secret=unpadded) == json.loads(BODY)


# --- Delivered -------------------------------------------------------------------------------------


def test_it_posts_the_body_with_the_contract_headers(
    hooks: responses.RequestsMock, allow_private: None
) -> None:
    hooks.add(responses.POST, HOOK_URL, body="ok", status=200)
    before = int(time.time())
    result = send()
    after = int(time.time())
    [call] = hooks.calls
    request = call.request
    assert request.method == "POST"
    assert request.url == HOOK_URL
    assert request.body == BODY
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"bulk-restore-portal/{__version__}"
    assert request.headers["webhook-id"] == WEBHOOK_ID
    assert before <= int(request.headers["webhook-timestamp"]) <= after
    assert request.headers["webhook-signature"].startswith("v1,")
    assert verify(request.body, request.headers) == json.loads(BODY)
    assert result.delivered is True
    assert result.http_status == 200
    assert result.error == ""
    assert result.response_excerpt == "ok"
    assert result.started_at.tzinfo is not None
    assert abs(result.started_at - timezone.now()) < dt.timedelta(seconds=5)
    assert result.duration_ms >= 0


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_it_counts_any_2xx_as_delivered(
    status: int, hooks: responses.RequestsMock, allow_private: None
) -> None:
    hooks.add(responses.POST, HOOK_URL, status=status)
    result = send()
    assert (result.delivered, result.http_status, result.error) == (True, status, "")


def test_it_sends_the_same_webhook_id_on_every_retry_with_fresh_valid_signatures(
    hooks: responses.RequestsMock, allow_private: None
) -> None:
    hooks.add(responses.POST, HOOK_URL, status=500)
    hooks.add(responses.POST, HOOK_URL, status=200)
    first, second = send(), send()
    assert (first.delivered, second.delivered) == (False, True)
    assert [c.request.headers["webhook-id"] for c in hooks.calls] == [WEBHOOK_ID, WEBHOOK_ID]
    for call in hooks.calls:
        verify(call.request.body, call.request.headers)


def test_it_keeps_only_the_start_of_a_long_answer(hooks: responses.RequestsMock, allow_private: None) -> None:
    hooks.add(responses.POST, HOOK_URL, body="y" * 100_000, status=200)
    result = send()
    assert result.response_excerpt == "y" * webhooks.RESPONSE_EXCERPT_BYTES


def test_it_delivers_to_a_real_loopback_endpoint(allow_private: None) -> None:
    with Receiver() as receiver:
        result = send(f"http://127.0.0.1:{receiver.port}/hook?x=1")
    assert (result.delivered, result.http_status) == (True, 200)
    assert result.response_excerpt == '{"received": true}'
    [seen] = receiver.requests
    assert seen.path == "/hook?x=1"
    assert seen.body == BODY
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"].startswith("bulk-restore-portal/")
    assert verify(seen.body, seen.headers) == json.loads(BODY)


# --- Failures, in words a curl user knows ------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_it_does_not_follow_a_redirect_and_counts_it_as_a_failure(
    status: int, hooks: responses.RequestsMock, allow_private: None
) -> None:
    hooks.add(responses.POST, HOOK_URL, status=status, headers={"Location": "https://elsewhere.example.com/"})
    hooks.add(responses.POST, "https://elsewhere.example.com/", status=200)
    result = send()
    assert len(hooks.calls) == 1
    assert result.delivered is False
    assert result.http_status == status
    assert result.error == f"The requested URL returned error: {status}"


def test_it_does_not_follow_a_real_redirect(allow_private: None) -> None:
    with Receiver(status=302, headers={"Location": "/elsewhere"}) as receiver:
        result = send(f"http://127.0.0.1:{receiver.port}/hook")
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert (result.delivered, result.error) == (False, "The requested URL returned error: 302")


@pytest.mark.parametrize("status", [400, 401, 404, 410, 500, 502, 503])
def test_it_reports_an_error_status(status: int, hooks: responses.RequestsMock, allow_private: None) -> None:
    hooks.add(responses.POST, HOOK_URL, status=status, body="nope")
    result = send()
    assert (result.delivered, result.http_status) == (False, status)
    assert result.error == f"The requested URL returned error: {status}"
    assert result.response_excerpt == "nope"


def test_it_reports_a_refused_connection_on_a_real_port(allow_private: None) -> None:
    port = closed_port()
    result = send(f"http://127.0.0.1:{port}/hook")
    assert result.delivered is False
    assert result.http_status is None
    assert result.error == f"Failed to connect to 127.0.0.1 port {port}: Connection refused"
    assert result.response_excerpt == ""


def test_it_reports_a_timeout_on_a_real_endpoint_that_never_answers(allow_private: None) -> None:
    with SilentServer() as server:
        started = time.monotonic()
        result = send(f"http://127.0.0.1:{server.port}/hook", timeout=0.2)
        elapsed = time.monotonic() - started
    assert result.delivered is False
    assert result.http_status is None
    assert re.fullmatch(r"Operation timed out after 2\d\d milliseconds with 0 bytes received", result.error)
    assert elapsed < 2
    assert 150 <= result.duration_ms < 2000


def test_it_reports_a_name_that_does_not_resolve(
    monkeypatch: pytest.MonkeyPatch, allow_private: None
) -> None:
    resolver = fake_dns(monkeypatch, {})
    result = send("http://asidhaiufsd0uf.example.net/restore-hook")
    assert result.delivered is False
    assert result.error == "Could not resolve host: asidhaiufsd0uf.example.net"
    assert resolver.lookups == ["asidhaiufsd0uf.example.net"]


@pytest.mark.parametrize("wrapped", [True, False])
def test_it_reports_a_name_resolution_error_raised_by_requests(
    wrapped: bool, hooks: responses.RequestsMock, allow_private: None
) -> None:
    reason = NameResolutionError("hooks.example.com", None, socket.gaierror(-2, "Name or service not known"))  # type: ignore[arg-type]
    inner: Exception = MaxRetryError(None, "/restore-hook", reason) if wrapped else reason  # type: ignore[arg-type]
    hooks.add(responses.POST, HOOK_URL, body=requests.exceptions.ConnectionError(inner))
    result = send()
    assert (result.delivered, result.http_status) == (False, None)
    assert result.error == "Could not resolve host: hooks.example.com"


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (
            requests.exceptions.ConnectTimeout("connect timed out"),
            "Connection timed out after 2500 milliseconds",
        ),
        (requests.exceptions.ReadTimeout("read timed out"), "Connection timed out after 2500 milliseconds"),
        (
            requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused")),
            "Failed to connect to hooks.example.com port 8443: Connection refused",
        ),
        (
            requests.exceptions.ConnectionError(socket.gaierror(-2, "Name or service not known")),
            "Could not resolve host: hooks.example.com",
        ),
        (
            requests.exceptions.SSLError("certificate verify failed"),
            "SSL connect error with hooks.example.com port 8443",
        ),
        (
            requests.exceptions.ConnectionError(ConnectionResetError(104, "reset")),
            "Recv failure: Connection reset by peer (hooks.example.com port 8443)",
        ),
        (
            requests.exceptions.ConnectionError("something else"),
            "Failed to connect to hooks.example.com port 8443: ConnectionError",
        ),
    ],
)
def test_it_describes_failures_like_curl(exc: BaseException, text: str) -> None:
    assert describe_failure(exc, url="https://hooks.example.com:8443/hook", timeout=2.5) == text


@pytest.mark.parametrize(
    ("url", "port"), [("https://hooks.example.com/x", 443), ("http://hooks.example.com/x", 80)]
)
def test_it_names_the_default_port_of_the_scheme(url: str, port: int) -> None:
    exc = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    assert (
        describe_failure(exc, url=url, timeout=1)
        == f"Failed to connect to hooks.example.com port {port}: Connection refused"
    )


def test_it_never_raises_for_a_network_fault(hooks: responses.RequestsMock, allow_private: None) -> None:
    hooks.add(responses.POST, HOOK_URL, body=requests.exceptions.ChunkedEncodingError("broken"))
    result = send()
    assert result.delivered is False
    assert result.error == "transfer closed with outstanding read data remaining (0 bytes received)"
    hooks.replace(responses.POST, HOOK_URL, body=requests.exceptions.ConnectionError("broken"))
    result = send()
    assert result.delivered is False
    assert result.error.startswith("Failed to connect to hooks.example.com port 443")


# --- SSRF guard ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.0.2",
        "169.254.169.254",
        "100.64.1.1",
        "0.0.0.0",  # noqa: S104 (an address to refuse, not to bind)
        "::1",
        "fd00::5",
        "fe80::1",
    ],
)
def test_it_refuses_a_host_that_resolves_to_a_non_public_address(
    address: str, monkeypatch: pytest.MonkeyPatch, hooks: responses.RequestsMock, refuse_private: None
) -> None:
    fake_dns(monkeypatch, {"hooks.example.com": [address]})
    result = send()
    assert len(hooks.calls) == 0
    assert result.delivered is False
    assert result.http_status is None
    assert (
        result.error == f"Failed to connect to hooks.example.com port 443: {address} is not a public address"
    )


def test_it_refuses_a_host_when_any_of_its_addresses_is_not_public(
    monkeypatch: pytest.MonkeyPatch, hooks: responses.RequestsMock, refuse_private: None
) -> None:
    fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC_IP, "10.0.0.7"]})
    result = send()
    assert len(hooks.calls) == 0
    assert result.error.endswith("10.0.0.7 is not a public address")


def test_it_refuses_a_literal_loopback_address_without_connecting(refuse_private: None) -> None:
    with SilentServer() as server:
        result = send(f"http://127.0.0.1:{server.port}/hook")
        server.sock.settimeout(0.05)
        with pytest.raises(TimeoutError):
            server.sock.accept()  # nobody knocked
    assert result.delivered is False
    assert (
        result.error
        == f"Failed to connect to 127.0.0.1 port {server.port}: 127.0.0.1 is not a public address"
    )


def test_it_refuses_private_targets_by_default(hooks: responses.RequestsMock) -> None:
    assert settings.WEBHOOK_ALLOW_PRIVATE_TARGETS is False
    result = send("http://169.254.169.254/latest/meta-data/")
    assert len(hooks.calls) == 0
    assert (
        result.error
        == "Failed to connect to 169.254.169.254 port 80: 169.254.169.254 is not a public address"
    )


def test_it_reports_a_name_that_does_not_resolve_with_the_guard_on(
    monkeypatch: pytest.MonkeyPatch, hooks: responses.RequestsMock, refuse_private: None
) -> None:
    fake_dns(monkeypatch, {})
    result = send()
    assert len(hooks.calls) == 0
    assert result.error == "Could not resolve host: hooks.example.com"


def test_it_connects_to_the_address_it_checked(
    monkeypatch: pytest.MonkeyPatch, hooks: responses.RequestsMock, refuse_private: None
) -> None:
    resolver = fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC_IP]})
    hooks.add(responses.POST, f"http://{PUBLIC_IP}:8080/restore-hook?tenant=7", status=204)
    result = send("http://hooks.example.com:8080/restore-hook?tenant=7")
    assert result.delivered is True
    [call] = hooks.calls
    assert call.request.headers["Host"] == "hooks.example.com:8080"
    assert resolver.lookups == ["hooks.example.com"]
    verify(call.request.body, call.request.headers)


def test_it_posts_to_a_public_literal_address_as_given(
    hooks: responses.RequestsMock, refuse_private: None
) -> None:
    hooks.add(responses.POST, f"https://{PUBLIC_IP}/restore-hook", status=200)
    assert send(f"https://{PUBLIC_IP}/restore-hook").delivered is True


def test_it_resolves_once_so_a_rebinding_name_cannot_redirect_the_call(
    monkeypatch: pytest.MonkeyPatch, refuse_private: None
) -> None:
    # The name resolves to a "public" address once (the loopback receiver stands in for it),
    # and any later lookup would give something else: the call must still reach the checked address.
    monkeypatch.setattr(webhooks, "address_is_public", lambda address: str(address) == "127.0.0.1")
    resolver = fake_dns(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
    with Receiver() as receiver:
        original = resolver.__call__

        def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            answer = original(host, port, *args, **kwargs)
            resolver.names["hooks.example.com"] = ["127.0.0.2"]  # closed: a second lookup would fail
            return answer

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        result = send(f"http://hooks.example.com:{receiver.port}/hook")
    assert result.delivered is True
    assert resolver.lookups == ["hooks.example.com"]
    [seen] = receiver.requests
    assert seen.headers["Host"] == f"hooks.example.com:{receiver.port}"


def test_it_keeps_tls_checking_the_host_name_at_the_pinned_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, refuse_private: None
) -> None:
    monkeypatch.setattr(webhooks, "address_is_public", lambda address: str(address) == "127.0.0.1")
    resolver = fake_dns(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
    tls = make_tls(tmp_path, "hooks.example.com")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_file))
    with Receiver(tls=tls) as receiver:
        result = send(f"https://hooks.example.com:{receiver.port}/hook")
    assert (result.delivered, result.error) == (True, "")
    assert resolver.lookups == ["hooks.example.com"]
    assert receiver.server_names == ["hooks.example.com"]
    [seen] = receiver.requests
    assert seen.headers["Host"] == f"hooks.example.com:{receiver.port}"
    verify(seen.body, seen.headers)


def test_it_refuses_a_certificate_for_another_name_at_the_pinned_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, refuse_private: None
) -> None:
    monkeypatch.setattr(webhooks, "address_is_public", lambda address: str(address) == "127.0.0.1")
    fake_dns(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
    tls = make_tls(tmp_path, "other.example.com")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_file))
    with Receiver(tls=tls) as receiver:
        result = send(f"https://hooks.example.com:{receiver.port}/hook")
    assert result.delivered is False
    assert result.error == f"SSL connect error with hooks.example.com port {receiver.port}"
    assert receiver.requests == []


# --- Loopback helpers -----------------------------------------------------------------------------------


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


class SilentServer:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""

    def __enter__(self) -> SilentServer:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def make_tls(directory: Path, host_name: str) -> TLS:
    """A throwaway CA and a certificate for ``host_name`` signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = TLS(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    tls.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return tls
