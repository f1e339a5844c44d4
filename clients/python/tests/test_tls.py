"""TLS against a real server with certificates made here with openssl: the
right CA (``ca_file=`` or ``RATEQUEUE_CA_FILE``) connects; no CA or another
CA is refused; with ``--tls-client-ca`` a client certificate is required."""

from __future__ import annotations

import shutil
import subprocess

import grpc
import pytest

import ratequeue
from conftest import start_server

CONFIG = """\
resources:
  r: { concurrency: 1 }
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost and a client
    certificate signed by it, plus a stranger CA."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl not found: the TLS tests make their certificates with it")
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=ratequeue test {ca}",
                "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=ratequeue test {who}",
                "-keyout", f"{who}.key", "-out", f"{who}.csr")
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}.pem")
    return d


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("tls-config") / "ratequeue.yaml"
    cfg.write_text(CONFIG)
    return cfg


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("RATEQUEUE_URL", "RATEQUEUE_API_KEY", "RATEQUEUE_CA_FILE"):
        monkeypatch.delenv(name, raising=False)


def _acquire_once(client: ratequeue.Client) -> None:
    try:
        with client.acquire("r", timeout=5) as lease:
            assert lease.resource == "r"
    finally:
        client.close()


def _refused(client: ratequeue.Client) -> ratequeue.RateQueueError:
    try:
        with pytest.raises(ratequeue.Unavailable) as e:
            with client.acquire("r", timeout=10):
                pass
        return e.value
    finally:
        client.close()


def test_right_ca_connects_and_no_ca_is_refused(certs, config_file, monkeypatch):
    srv = start_server(config_file, args=["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key")])
    try:
        https = f"https://127.0.0.1:{srv.port}"
        _acquire_once(ratequeue.Client(https, ca_file=str(certs / "ca.pem")))
        _acquire_once(ratequeue.Client(f"https://localhost:{srv.port}", ca_file=str(certs / "ca.pem")))
        _acquire_once(ratequeue.Client(https, root_certificates=(certs / "ca.pem").read_bytes()))
        # No CA (the system roots), another CA, or plaintext: refused.
        for client in (ratequeue.Client(https, reconnect_timeout=0.8),
                       ratequeue.Client(https, ca_file=str(certs / "other-ca.pem"), reconnect_timeout=0.8),
                       ratequeue.Client(f"http://127.0.0.1:{srv.port}", reconnect_timeout=0.8)):
            assert _refused(client).code == grpc.StatusCode.UNAVAILABLE
        # RATEQUEUE_CA_FILE is the default for ca_file.
        monkeypatch.setenv("RATEQUEUE_CA_FILE", str(certs / "ca.pem"))
        client = ratequeue.Client(https)
        assert client.config.ca_file == str(certs / "ca.pem")
        _acquire_once(client)
    finally:
        assert srv.stop() == 0, "".join(srv.log[-20:])


def test_client_certificate_for_a_server_with_tls_client_ca(certs, config_file):
    srv = start_server(config_file, args=["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
                                          "--tls-client-ca", str(certs / "ca.pem")])
    try:
        https = f"https://127.0.0.1:{srv.port}"
        ca = str(certs / "ca.pem")
        _refused(ratequeue.Client(https, ca_file=ca, reconnect_timeout=0.8))
        _refused(ratequeue.Client(https, ca_file=ca, cert_file=str(certs / "other-ca.pem"),
                                  key_file=str(certs / "other-ca.key"), reconnect_timeout=0.8))
        _acquire_once(ratequeue.Client(https, ca_file=ca, cert_file=str(certs / "client.pem"),
                                       key_file=str(certs / "client.key")))
    finally:
        assert srv.stop() == 0, "".join(srv.log[-20:])


def test_tls_options_are_checked(certs, tmp_path):
    with pytest.raises(ValueError):
        ratequeue.Client("https://127.0.0.1:1", cert_file=str(certs / "client.pem"))
    with pytest.raises(ValueError):
        ratequeue.Client("https://127.0.0.1:1", ca_file=str(certs / "ca.pem"), root_certificates=b"x")
    # A missing CA file fails the first call, not every reconnect.
    client = ratequeue.Client("https://127.0.0.1:1", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):
        with client.acquire("r", timeout=1):
            pass
