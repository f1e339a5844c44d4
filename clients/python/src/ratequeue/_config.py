"""Client configuration: where the servers are and how to reach them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from ._protocol import (
    AUTHORIZATION_METADATA_KEY,
    DEFAULT_PORT,
    DEFAULT_URL,
    INITIAL_BACKOFF,
    MAX_BACKOFF,
    NAMESPACE_METADATA_KEY,
    RECONNECT_TIMEOUT,
    channel_options,
)


@dataclass(frozen=True)
class Endpoint:
    """One server address: ``host:port`` and whether to use TLS."""

    target: str
    tls: bool = False

    def __str__(self) -> str:
        return ("https://" if self.tls else "http://") + self.target


def parse_url(url: str) -> Tuple[Endpoint, ...]:
    """Parses ``RATEQUEUE_URL`` syntax: a comma-separated list of
    ``http://host:port``, ``https://host:port`` or bare ``host:port``.

    ``https://`` means TLS. A missing port means 7070 (443 for https).
    """
    endpoints = []
    for part in url.split(","):
        part = part.strip()
        if not part:
            continue
        tls = False
        if part.startswith("https://"):
            tls, part = True, part[len("https://"):]
        elif part.startswith("http://"):
            part = part[len("http://"):]
        elif "://" in part:
            raise ValueError(f"ratequeue url {part!r}: the scheme must be http:// or https://")
        part = part.rstrip("/")
        if "/" in part:
            raise ValueError(f"ratequeue url {part!r}: a path is not allowed, give host:port")
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit() or part.endswith("]"):
            part = f"{part}:{443 if tls else DEFAULT_PORT}"
        endpoints.append(Endpoint(part, tls))
    if not endpoints:
        raise ValueError("ratequeue url is empty")
    return tuple(endpoints)


@dataclass(frozen=True)
class ClientConfig:
    """How a client reaches the servers. Every field has a default.

    Attributes:
        url: Comma-separated server list (``http://h1:7070,http://h2:7070``;
            ``https://`` for TLS; bare ``host:port`` works too). Defaults to
            the ``RATEQUEUE_URL`` environment variable, else
            ``http://127.0.0.1:7070`` (the server's default bind).
        api_key: Sent as ``authorization: Bearer <api_key>`` on every call.
            Defaults to the ``RATEQUEUE_API_KEY`` environment variable.
        reconnect_timeout: Seconds a waiting acquire survives without a
            working stream (counted from when the stream went down, or from
            the acquire if that came later) before it fails with
            ``Unavailable``. Default 30.
        initial_backoff: First pause between connection attempts, seconds
            (default 0.05); it doubles after each failed attempt and starts
            again after a stream that answered. Each pause is jittered to
            0.5 to 1 times.
        max_backoff: Longest pause between connection attempts, seconds
            (default 1). It stays short so that a node taking over (after a
            failover or a graceful shutdown) is found within about a second.
        root_certificates: PEM bytes to trust for ``https://`` servers;
            ``None`` uses ``ca_file``, else the system roots.
        ca_file: Path of a PEM file of CA certificates to trust for
            ``https://`` servers, the usual way to trust a private CA.
            Defaults to the ``RATEQUEUE_CA_FILE`` environment variable
            (unless ``root_certificates`` is given).
        cert_file: Path of a PEM client certificate (chain), for servers
            started with ``--tls-client-ca``; give ``key_file`` with it.
        key_file: Path of the PEM private key of ``cert_file``.
        namespace: The namespace to act in, sent as ``ratequeue-namespace``
            metadata. Only a root key may choose one; any other key acts in
            its own namespace and naming another one is refused with
            ``PermissionDenied``. ``None``: the key's namespace.
        session_name: Clients of a process with equal configurations share
            one session stream (the server counts sessions per key). Give
            clients different names to give each its own stream. ``None``:
            shared.
    """

    url: str = ""
    api_key: Optional[str] = None
    reconnect_timeout: float = RECONNECT_TIMEOUT
    initial_backoff: float = INITIAL_BACKOFF
    max_backoff: float = MAX_BACKOFF
    root_certificates: Optional[bytes] = field(default=None, repr=False)
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    namespace: Optional[str] = None
    session_name: Optional[str] = None

    def __post_init__(self) -> None:
        if self.root_certificates is not None and self.ca_file:
            raise ValueError("give root_certificates or ca_file, not both")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("a client certificate needs both cert_file and key_file")

    @staticmethod
    def of(url: Optional[str], api_key: Optional[str], config: Optional["ClientConfig"],
           options: Dict[str, Any]) -> "ClientConfig":
        """The configuration of a client's constructor arguments: ``config``
        as it is, or :meth:`resolve` of the others."""
        if config is not None and (url is not None or api_key is not None or options):
            raise TypeError("give either config or url/api_key/options, not both")
        resolved = config if config is not None else ClientConfig.resolve(url, api_key, **options)
        resolved.endpoints  # validate the url now  # noqa: B018
        return resolved

    @staticmethod
    def resolve(url: Optional[str] = None, api_key: Optional[str] = None, **options) -> "ClientConfig":
        """Fills ``url``, ``api_key`` and ``ca_file`` from the environment when not given."""
        if options.get("ca_file") is None and options.get("root_certificates") is None:
            options["ca_file"] = os.environ.get("RATEQUEUE_CA_FILE") or None
        return ClientConfig(
            url=url or os.environ.get("RATEQUEUE_URL") or DEFAULT_URL,
            api_key=api_key if api_key is not None else (os.environ.get("RATEQUEUE_API_KEY") or None),
            **options,
        )

    def channel_credentials(self) -> "grpc.ChannelCredentials":
        """TLS credentials for ``https://`` servers; reads the files now."""
        import grpc

        def read(path: Optional[str]) -> Optional[bytes]:
            if not path:
                return None
            with open(os.path.expanduser(path), "rb") as f:
                return f.read()

        roots = self.root_certificates if self.root_certificates is not None else read(self.ca_file)
        return grpc.ssl_channel_credentials(
            root_certificates=roots, private_key=read(self.key_file), certificate_chain=read(self.cert_file))

    def call_metadata(self) -> Tuple[Tuple[str, str], ...]:
        """The metadata every call carries: the API key and the namespace."""
        metadata = []
        if self.api_key:
            metadata.append((AUTHORIZATION_METADATA_KEY, f"Bearer {self.api_key}"))
        if self.namespace:
            metadata.append((NAMESPACE_METADATA_KEY, self.namespace))
        return tuple(metadata)

    def open_channel(self, endpoint: Endpoint,
                     tls_credentials: Optional["grpc.ChannelCredentials"]) -> "grpc.aio.Channel":
        """An asyncio channel to ``endpoint`` with the protocol's keepalive and
        backoff; ``tls_credentials`` (from :meth:`channel_credentials`) are
        used for a TLS endpoint. Call it on the loop that will use the channel."""
        import grpc.aio

        options = channel_options(initial_backoff=self.initial_backoff, max_backoff=self.max_backoff)
        if endpoint.tls:
            return grpc.aio.secure_channel(endpoint.target, tls_credentials, options=options)
        return grpc.aio.insecure_channel(endpoint.target, options=options)

    @property
    def endpoints(self) -> Tuple[Endpoint, ...]:
        return parse_url(self.url or DEFAULT_URL)
