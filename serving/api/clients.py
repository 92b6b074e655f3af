"""The API's clients: who may call what. Each client has its own bearer token, stored only as its
SHA-256 in a clients file (RECOUP_CLIENTS_FILE, `recoup serve --clients-file`), scopes and, optionally,
the facilities whose accounts it may send.

The clients file is JSON:

    {"clients": [{"name": "epic-queue", "token_sha256": "<64 hex>", "scopes": ["score", "work:write"],
                  "facilities": ["F01", "F02"]}]}

`facilities` left out (or null): every facility. `recoup client-token NAME --scopes ...` adds a client or
rotates its token (prints the new token once, stores its hash). The service rereads the file when it
changes (its size, mtime or inode), so a rotation or a revocation needs no restart; a file that no longer
parses keeps the clients last read and logs what is wrong with it (never a hash or a token); a file that
is deleted revokes all its clients.

The single-token setting (RECOUP_API_TOKEN) still works: that token is one client, `default`, with every
scope and every facility.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("recoup.service")

SCOPES = ("score", "work:write", "admin")
LEGACY_CLIENT = "default"  # the client RECOUP_API_TOKEN is
_NAME_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_token(token: str) -> str:
    """The SHA-256 of a token (hex), as the clients file stores it."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Client:
    """One caller of the API."""

    name: str
    scopes: frozenset[str]
    facilities: frozenset[str] | None = None  # None: every facility

    def allows_facility(self, facility: str) -> bool:
        return self.facilities is None or facility in self.facilities


class ClientsFileError(ValueError):
    """The clients file cannot be used; the message says where, never a hash or a token."""


def parse_clients(text: str, source: str) -> dict[str, Client]:
    """The clients of a clients file's text, by token hash."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ClientsFileError(f"{source} is not JSON ({err.msg} at line {err.lineno})") from None
    entries = data.get("clients") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ClientsFileError(f'{source}: expected {{"clients": [...]}}')
    out: dict[str, Client] = {}
    names: set[str] = set()
    for i, e in enumerate(entries):
        where = f"{source}: clients[{i}]"
        if not isinstance(e, dict):
            raise ClientsFileError(f"{where} is not an object")
        name, digest, scopes, facilities = e.get("name"), e.get("token_sha256"), e.get("scopes"), e.get("facilities")
        if not isinstance(name, str) or not _NAME_OK.match(name):
            raise ClientsFileError(f"{where}.name must be 1-64 letters, digits, '.', '_' or '-'")
        if name in names:
            raise ClientsFileError(f"{where}.name: client {name!r} is listed twice")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise ClientsFileError(f"{where}.token_sha256 must be 64 lowercase hex digits (client {name!r})")
        if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
            raise ClientsFileError(f"{where}.scopes must be a non-empty list of {', '.join(SCOPES)} (client {name!r})")
        if facilities is not None and (not isinstance(facilities, list) or not facilities
                                       or not all(isinstance(f, str) and f for f in facilities)):
            raise ClientsFileError(f"{where}.facilities must be a non-empty list of facility ids, or left out "
                                   f"(client {name!r})")
        if digest in out:
            raise ClientsFileError(f"{where}: client {name!r} has the same token as client {out[digest].name!r}")
        names.add(name)
        out[digest] = Client(name, frozenset(scopes), frozenset(facilities) if facilities is not None else None)
    return out


class ClientRegistry:
    """The clients the service knows: the legacy token's and the clients file's, reread when the file changes."""

    def __init__(self, api_token: str | None, clients_file: Path | None) -> None:
        self._legacy = hash_token(api_token) if api_token else None
        self.path = clients_file
        self._stamp: tuple | None = None
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()
        if clients_file is not None:
            self._clients = parse_clients(self._read(clients_file), str(clients_file))  # broken at start: refuse
            self._stamp = self._stat()

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a token (a legacy token or a clients file is set)."""
        return self._legacy is not None or self.path is not None

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ClientsFileError(f"the clients file {path} cannot be read ({type(err).__name__})") from None

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            self._stamp = stamp
            if stamp is None:  # deleted: every client of the file is revoked (the legacy token stays)
                self._clients = {}
                log.warning("the clients file %s is gone: no client of it is accepted until it is back", self.path)
                return
            try:
                clients = parse_clients(self._read(self.path), str(self.path))  # type: ignore[arg-type]
            except ClientsFileError as err:
                log.error("clients file not reloaded, still using the %d client(s) last read: %s", len(self._clients),
                          err)
                return
            self._clients = clients
            log.info("clients file reloaded: %d client(s)", len(clients))

    def authenticate(self, token: str) -> Client | None:
        """The client whose token this is, or None."""
        if not token:
            return None
        digest = hash_token(token)
        if self._legacy is not None and hmac.compare_digest(digest, self._legacy):
            return Client(LEGACY_CLIENT, frozenset(SCOPES))
        if self.path is None:
            return None
        self._refresh()
        return self._clients.get(digest)


def write_client(path: Path, name: str, scopes: list[str], facilities: list[str] | None = None) -> str:
    """Add the client `name` to the clients file (made if absent), or give it a new token if it is there
    (rotation: the old token stops working as soon as the service sees the file change); returns the new
    token, which is stored nowhere but as its hash. The file is replaced atomically, readable by its owner."""
    if not _NAME_OK.match(name):
        raise ValueError(f"client name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"unknown scope(s) {', '.join(bad) or '(none given)'}: use {', '.join(SCOPES)}")
    entries: list[dict] = []
    if path.exists():
        parse_clients(ClientRegistry._read(path), str(path))  # refuse to rewrite a file that is broken
        entries = [e for e in json.loads(path.read_text(encoding="utf-8"))["clients"] if e["name"] != name]
    token = secrets.token_urlsafe(32)
    entry: dict = {"name": name, "token_sha256": hash_token(token), "scopes": sorted(set(scopes))}
    if facilities:
        entry["facilities"] = sorted(set(facilities))
    entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"clients": entries}, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return token
