"""Fixtures for sign-in and transport (a test CA, TLS fronts, proxies before a real Radicale).

A plugin of the root conftest (``pytest_plugins``), so the secrets tests use them too.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest
import trustme

from tests.servers import HOST, free_port, stop_process, wait_until_started

FRONTS = Path(__file__).with_name("fronts.py")


@dataclass(frozen=True)
class TestPki:
    """Files made by the test's own CA: what a self-hosted server with its own CA has."""

    ca_bundle: Path
    server_cert: Path  # certificate chain (leaf first)
    server_key: Path
    client_cert: Path
    client_key: Path
    server_fingerprint: str  # SHA-256 of the leaf certificate, hex

    __test__ = False


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    tmp = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert(HOST, "localhost")
    client = ca.issue_cert("alice@example.test")
    paths = {
        "ca_bundle": tmp / "ca.pem",
        "server_cert": tmp / "server.pem",
        "server_key": tmp / "server.key",
        "client_cert": tmp / "client.pem",
        "client_key": tmp / "client.key",
    }
    ca.cert_pem.write_to_path(str(paths["ca_bundle"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(paths["server_cert"]), append=True)
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    leaf_der = ssl.PEM_cert_to_DER_cert(server.cert_chain_pems[0].bytes().decode())
    return TestPki(**paths, server_fingerprint=hashlib.sha256(leaf_der).hexdigest())


@dataclass
class Front:
    """A started gateway or proxy process."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stats(self, ca_bundle: Path | None = None) -> dict[str, int]:
        context = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else None
        with urllib.request.urlopen(f"{self.url}_test/stats", timeout=10, context=context) as r:
            return dict(json.loads(r.read()))

    def revoke_tokens(self, ca_bundle: Path | None = None) -> None:
        context = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else None
        urllib.request.urlopen(
            urllib.request.Request(f"{self.url}_test/revoke", method="POST"),
            timeout=10,
            context=context,
        ).read()

    def stop(self) -> None:
        stop_process(self.process)


def _wait_for_port(front: Front) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection((HOST, front.port), timeout=1):
                return True
        except OSError:
            return False

    name = f"front on port {front.port}"
    wait_until_started(name, front.process, front.log, listening, front.stop)


StartFront = Callable[..., Front]


@pytest.fixture
def start_front(tmp_path: Path) -> Iterator[StartFront]:
    """``start_front("front", "--upstream", url, ...)`` or ``start_front("forward")``."""
    started: list[Front] = []

    def start(role: str, *args: str, tls: bool = False) -> Front:
        port = free_port()
        log = tmp_path / f"{role}-{port}.log"
        argv = [sys.executable, str(FRONTS), role, "--port", str(port), *args]
        if role == "forward":
            argv += ["--log", str(log)]
            log.touch()
        output = tmp_path / f"{role}-{port}.out"
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output.open("wb"),
            stderr=subprocess.STDOUT,
        )
        scheme = "https" if tls else "http"
        front = Front(
            f"{scheme}://{HOST}:{port}/", port, process, log if role == "forward" else output
        )
        started.append(front)
        _wait_for_port(front)
        return front

    yield start
    for front in started:
        front.stop()


def tls_args(pki: TestPki, *, client_certificates: bool = False) -> list[str]:
    args = ["--certfile", str(pki.server_cert), "--keyfile", str(pki.server_key)]
    if client_certificates:
        args += ["--client-ca", str(pki.ca_bundle)]
    return args


class LoopbackDns:
    """A DNS server on loopback answering fixed records (dnspython builds the answers).

    Discovery's SRV/TXT path needs a real resolver talking to a real server; the machine's
    DNS cannot be given test records, so the resolver is pointed here instead.
    """

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [HOST]
        resolver.port = self.port
        return resolver

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            answer = dns.message.make_response(query)
            for question in query.question:
                name = question.name.to_text()
                kind = dns.rdatatype.to_text(question.rdtype)
                self.queries.append(f"{kind} {name}")
                texts = self.records.get((name, kind))
                if texts:
                    answer.answer.append(
                        dns.rrset.from_text_list(question.name, 60, "IN", kind, texts)
                    )
                else:
                    answer.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(answer.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def loopback_dns() -> Iterator[Callable[[dict[tuple[str, str], list[str]]], LoopbackDns]]:
    servers: list[LoopbackDns] = []

    def start(records: dict[tuple[str, str], list[str]]) -> LoopbackDns:
        server = LoopbackDns(records)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
