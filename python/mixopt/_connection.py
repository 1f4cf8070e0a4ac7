"""Dialling the coordinator the way mixctl does: the address from the argument or
MIXOPT_ADDR, TLS when a CA is given (argument or MIXOPT_TLS_CA), and the bearer token from
token_file, else the file named by MIXOPT_TOKEN_FILE, else MIXOPT_TOKEN."""

from __future__ import annotations

import ipaddress
import os
from typing import Optional, Sequence, Tuple

import grpc

from .errors import InvalidArgumentError

DEFAULT_ADDR = "127.0.0.1:7070"
# The coordinator's default message limit; every reply the client reads fits in it.
MAX_MESSAGE_BYTES = 16 << 20


def resolve_addr(addr: Optional[str]) -> str:
    return addr or os.environ.get("MIXOPT_ADDR") or DEFAULT_ADDR


def read_token(token_file: Optional[str] = None) -> str:
    """The bearer token, in mixctl's order; "" when none is configured. A file holds the
    token on its first line; surrounding whitespace is dropped."""
    path = os.path.expanduser(token_file or os.environ.get("MIXOPT_TOKEN_FILE", ""))
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().split("\n", 1)[0].strip()
        except OSError as e:
            raise InvalidArgumentError(f"token_file: {e}", field="token_file") from e
        if not token:
            raise InvalidArgumentError(f"token_file: {path} is empty", field="token_file")
        return token
    return os.environ.get("MIXOPT_TOKEN", "").strip()


def is_loopback(addr: str) -> bool:
    host, sep, _ = addr.rpartition(":")
    if not sep:
        return False
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: Optional[str], field: str) -> Optional[bytes]:
    if not path:
        return None
    try:
        with open(os.path.expanduser(path), "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidArgumentError(f"{field}: {e}", field=field) from e


def dial(addr: str, tls_ca: Optional[str] = None, tls_cert: Optional[str] = None,
         tls_key: Optional[str] = None, tls_server_name: Optional[str] = None,
         token_file: Optional[str] = None, tls: bool = False) -> Tuple[grpc.Channel, Sequence[Tuple[str, str]]]:
    """A channel and the metadata every call sends. A token is never sent without TLS to a
    non-loopback address."""
    tls_ca = tls_ca or os.environ.get("MIXOPT_TLS_CA") or None
    secure = bool(tls or tls_ca or tls_cert)
    # Reconnect quickly after a coordinator restart: the default backoff grows to minutes.
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    if secure:
        creds = grpc.ssl_channel_credentials(
            root_certificates=_read(tls_ca, "tls_ca"),
            private_key=_read(tls_key, "tls_key"),
            certificate_chain=_read(tls_cert, "tls_cert"),
        )
        channel = grpc.secure_channel(addr, creds, options=options)
    else:
        channel = grpc.insecure_channel(addr, options=options)
    token = read_token(token_file)
    metadata: Sequence[Tuple[str, str]] = ()
    if token:
        if not secure and not is_loopback(addr):
            channel.close()
            raise InvalidArgumentError(
                f"addr: refusing to send a token without TLS to the non-loopback address {addr} (give tls_ca)",
                field="addr")
        metadata = (("authorization", "Bearer " + token),)
    return channel, metadata
