"""The service's settings: one typed, frozen object, built once at the edge and handed to the service.

`recoup serve` builds it from its options (over the environment); a Bento run by `bentoml serve`
builds it from the environment when the service starts (`ServiceSettings.from_env()`). The
variables stay the documented way in for Bentos and containers:

  RECOUP_API_TOKEN        a bearer token with every scope (the client `default`): required on every
                          endpoint but health, metrics and the OpenAPI document; the service refuses to
                          start without it or a clients file unless RECOUP_NO_AUTH=1 (`recoup serve --no-auth`)
  RECOUP_CLIENTS_FILE     the clients file: several clients, each with its token's SHA-256, scopes (score,
                          work:write, admin) and optionally facilities (`serving.api.clients`; `recoup
                          client-token` writes it); reread when it changes
  RECOUP_AUDIT_LOG        a file the service appends one JSON line to per request (client, endpoint, request
                          id, status, counts, model version; never an identifier or an amount); unset: none
  RECOUP_DOCS             1/true/yes: serve the OpenAPI page at / (off by default; /docs.json is always there)
  RECOUP_MIN_DATE, RECOUP_MAX_DATE, RECOUP_MAX_AMOUNT
                          the accepted dates and the amount ceiling (`features.contract.Bounds`): outside
                          them, a request is a 422 naming the field
  RECOUP_NO_AUTH          1/true/yes: serve without a token (never in production)
  RECOUP_MODEL_NAME       registered model (default recoup)
  RECOUP_MODEL_ALIAS      registry alias to serve (default champion)
  RECOUP_MODEL_VERSION    a fixed version instead of the alias
  MLFLOW_TRACKING_URI     the MLflow store (default: the embedded SQLite store ./mlflow.db)
  RECOUP_RANKING_CONFIG   ranking YAML (default serving/ranking.yaml)
  RECOUP_MAX_ACCOUNTS     accounts per request (default 5000); more gets 413
  RECOUP_MAX_BODY_BYTES   request body bytes (default 50 MB); more gets 413
  RECOUP_THREADS          scoring threads per worker for requests of more than `inline_max_accounts`
                          accounts (default 1); smaller requests are scored on the event loop
  RECOUP_WORK_STORE       where `POST /work` appends the `work` rows it receives: a dataset folder or a
                          SQLAlchemy URL (`recoup serve --work-store`); unset, `/work` answers 503
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from features.contract import Bounds

DEFAULT_MAX_ACCOUNTS = 5_000
DEFAULT_MAX_BODY_BYTES = 50 * 1024 * 1024
INLINE_MAX_ACCOUNTS = 5  # requests this small are scored on the event loop, larger ones on a thread

NO_TOKEN = ("neither RECOUP_API_TOKEN nor RECOUP_CLIENTS_FILE is set: set one (`recoup client-token` makes a "
            "clients file), or run without authentication explicitly (`recoup serve --no-auth`, or RECOUP_NO_AUTH=1)")

# setting -> the variable that gives it (for `from_env` and for messages that name the way in)
ENV_VARIABLES = {
    "api_token": "RECOUP_API_TOKEN",
    "no_auth": "RECOUP_NO_AUTH",
    "model_name": "RECOUP_MODEL_NAME",
    "model_alias": "RECOUP_MODEL_ALIAS",
    "model_version": "RECOUP_MODEL_VERSION",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "ranking_config": "RECOUP_RANKING_CONFIG",
    "max_accounts": "RECOUP_MAX_ACCOUNTS",
    "max_body_bytes": "RECOUP_MAX_BODY_BYTES",
    "threads": "RECOUP_THREADS",
    "work_store": "RECOUP_WORK_STORE",
    "clients_file": "RECOUP_CLIENTS_FILE",
    "audit_log": "RECOUP_AUDIT_LOG",
    "docs": "RECOUP_DOCS",
}


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the HTTP service is configured by. Construction checks it: a service without a
    token refuses to exist unless authentication is explicitly off."""

    api_token: str | None = field(default=None, repr=False)  # never in a log line; set, it is required
    # even with no_auth (as the variables always worked)
    no_auth: bool = False
    model_name: str = "recoup"
    model_alias: str = "champion"
    model_version: str | None = None  # a fixed version instead of the alias
    tracking_uri: str | None = None  # None: MLflow's own default (the embedded SQLite store)
    ranking_config: Path | None = None  # None: serving/ranking.yaml
    max_accounts: int = DEFAULT_MAX_ACCOUNTS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    threads: int = 1
    inline_max_accounts: int = INLINE_MAX_ACCOUNTS
    work_store: str | None = None  # a dataset folder or a SQLAlchemy URL; None: POST /work answers 503
    clients_file: Path | None = None  # the clients, their token hashes, scopes and facilities
    audit_log: Path | None = None  # JSON lines, one per request; None: no audit log
    docs: bool = False  # the OpenAPI page at /
    bounds: Bounds = field(default_factory=Bounds)  # accepted dates and the amount ceiling

    def __post_init__(self) -> None:
        if not self.api_token and self.clients_file is None and not self.no_auth:
            raise ValueError(NO_TOKEN)
        if self.clients_file is not None and not Path(self.clients_file).is_file():
            raise ValueError(f"RECOUP_CLIENTS_FILE={self.clients_file}: no such file (`recoup client-token` makes it)")
        if self.work_store is not None:
            _check_work_store(self.work_store)
        for name in ("max_accounts", "max_body_bytes", "threads", "inline_max_accounts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "inline_max_accounts" else 1):
                raise ValueError(f"{ENV_VARIABLES.get(name, name)}={value!r} must be a positive integer")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServiceSettings:
        """The settings the environment gives (the variables above), with `overrides` (e.g. the
        command line's options) taking precedence; an unset or empty variable keeps the default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_VARIABLES.get(f.name)
            raw = env.get(name, "") if name else ""
            if raw.strip():
                values[f.name] = _parse(f.name, name, raw)
        values["bounds"] = Bounds.from_env(env)
        values.update(overrides)
        return cls(**values)


def _parse(setting: str, variable: str, raw: str) -> Any:
    if setting == "api_token":
        return raw  # as given: a token is compared byte for byte
    raw = raw.strip()
    if setting in ("no_auth", "docs"):
        return raw.lower() in ("1", "true", "yes")
    if setting in ("max_accounts", "max_body_bytes", "threads"):
        try:
            return int(raw)
        except ValueError as err:
            raise ValueError(f"{variable}={raw!r} is not an integer") from err
    if setting in ("ranking_config", "clients_file", "audit_log"):
        return Path(raw)
    return raw


def _check_work_store(store: str) -> None:
    """A store that could never be written is refused at start-up (a database that is down is not:
    `/work` answers 503 until it is back)."""
    if "://" not in store:
        if not store.strip():
            raise ValueError("RECOUP_WORK_STORE is empty: give a dataset folder or a SQLAlchemy URL")
        return
    import sqlalchemy as sa

    url, _, table = store.partition("#")
    try:
        sa.engine.make_url(url)
    except sa.exc.ArgumentError:  # its message would quote the URL, password and all
        raise ValueError("RECOUP_WORK_STORE is not a SQLAlchemy URL (dialect+driver://user@host/db)") from None
    if table not in ("", "work"):
        raise ValueError(f"RECOUP_WORK_STORE: work rows go to the table `work`, not {table!r}")
