"""The real-time scoring service (BentoML 1.4, `@bentoml.service` class style).

`POST /score` scores the accounts of a request (each with its whole history in the contract's
shape) at an as-of date; `POST /worklist` ranks them, optionally cut to `capacity_minutes`.
Features come from `features.snapshot` (the one feature code path) with the model's stored
statistics table, scores and ranking from `serving.ranking.rank` (the nightly batch's code),
with reasons for every account. BentoML provides `/livez`, `/readyz`, `/metrics` and the OpenAPI
page (`/`, `/docs.json`).

Configuration (environment):
  RECOUP_API_TOKEN        bearer token required on every endpoint but health, metrics and docs;
                          the service refuses to start without it unless RECOUP_NO_AUTH=1
                          (`recoup serve --no-auth`)
  RECOUP_MODEL_NAME       registered model (default recoup)
  RECOUP_MODEL_ALIAS      registry alias to serve (default champion)
  RECOUP_MODEL_VERSION    a fixed version instead of the alias
  MLFLOW_TRACKING_URI     the MLflow store (default: the embedded SQLite store ./mlflow.db)
  RECOUP_RANKING_CONFIG   ranking YAML (default serving/ranking.yaml)
  RECOUP_MAX_ACCOUNTS     accounts per request (default 5000); more gets 413
  RECOUP_MAX_BODY_BYTES   request body bytes (default 50 MB); more gets 413
  RECOUP_THREADS          scoring threads per worker for requests of more than INLINE_MAX_ACCOUNTS
                          accounts (default 1); smaller requests are scored on the event loop

The model is loaded from the MLflow registry at start-up (not baked into the Bento): moving the
alias is picked up by `POST /admin/reload` or SIGHUP without a restart. The loaded model is one
immutable object behind one attribute; a request takes one reference to it at its start, so a
request in flight is answered by one model version only, and a reload is one assignment.

Logs carry request ids, timings and counts, never an account or patient id or an amount.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import gc
import hmac
import json
import logging
import os
import re
import signal
import threading
import time
import traceback
import uuid
from dataclasses import dataclass

import bentoml
import numpy as np
import pandas as pd
from starlette.responses import JSONResponse

from features.contract import TABLES, ColumnTable, Dataset
from features.dates import from_python_dates, parse_as_of
from serving.api_models import (
    REQUEST_TABLES,
    AccountResult,
    ReloadResponse,
    ScoreRequest,
    ScoreResponse,
    WorklistRequest,
    row_defaults,
)

log = logging.getLogger("recoup.service")

DEFAULT_MAX_ACCOUNTS = 5_000
INLINE_MAX_ACCOUNTS = 5  # requests this small are scored on the event loop, larger ones on a thread
DEFAULT_MAX_BODY_BYTES = 50 * 1024 * 1024
# paths that need no token (GET/HEAD only): health, metrics, the OpenAPI page
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/", "/docs.json", "/schema.json"})
OPEN_PREFIXES = ("/static_content/",)
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("recoup_request_id", default="-")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError as err:
        raise ValueError(f"{name}={raw!r} is not an integer") from err


def auth_disabled() -> bool:
    return os.environ.get("RECOUP_NO_AUTH", "").strip().lower() in ("1", "true", "yes")


def api_token() -> str | None:
    """The configured bearer token; raises when there is none and auth is not explicitly off."""
    token = os.environ.get("RECOUP_API_TOKEN", "")
    if token:
        return token
    if auth_disabled():
        return None
    raise RuntimeError("RECOUP_API_TOKEN is not set: set it, or run without authentication explicitly "
                       "(`recoup serve --no-auth`, or RECOUP_NO_AUTH=1)")


# ----------------------------------------------------------------------------- the loaded model


@dataclass(frozen=True)
class LoadedModel:
    """One model version, ready to score; replaced as a whole on reload, never mutated."""

    model: object
    version: str  # "<registered name>/<version>", as the nightly batch labels its worklists
    source: str  # "alias champion" or "version 3"
    loaded_at: str


def load_model(alias: str | None = None, version: str | None = None) -> LoadedModel:
    from training.tracking import load_bundle

    name = os.environ.get("RECOUP_MODEL_NAME", "recoup")
    alias = alias or os.environ.get("RECOUP_MODEL_ALIAS") or "champion"
    version = version or os.environ.get("RECOUP_MODEL_VERSION") or None
    model = load_bundle(name, alias, version, os.environ.get("MLFLOW_TRACKING_URI") or None)
    return LoadedModel(model, f"{model.registry_name_}/{model.registry_version_}",
                       f"version {version}" if version else f"alias {alias}",
                       dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


_PRELOADED: LoadedModel | None = None  # `run_server` loads the model before it binds the port


# ----------------------------------------------------------------------------- request -> dataset


class RequestProblem(Exception):
    """A request that is well formed JSON of the right shape but is still wrong; names the fields."""

    def __init__(self, status: int, message: str, problems: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []




def _column(kind: str, values: list) -> np.ndarray:
    """One column as `features.contract.ColumnTable` holds it: text as object, dates as datetime64[ns],
    money (to the cent) and counts as float64 with NaN for missing."""
    if kind == "str":
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr
    if kind == "date":
        return from_python_dates(values)
    arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.round(arr, 2) if kind in ("money", "signed_money") else arr


_KINDS = {t: [(c, spec.type) for c, spec in TABLES[t].columns.items()] for t in TABLES}


def _table(table: str, rows: list[dict]) -> ColumnTable:
    """One table from its request rows; a column a row leaves out takes its contract default."""
    defaults = row_defaults(table)
    cols = {}
    for c, kind in _KINDS[table]:
        if c in defaults:
            default = defaults[c]
            cols[c] = _column(kind, [d.get(c, default) for d in rows])
        else:
            cols[c] = _column(kind, [d[c] for d in rows])
    return ColumnTable(cols)


def _path(i: int, name: str | None = None, j: int | None = None, col: str | None = None) -> str:
    """The JSON path of a request field: accounts[i].name[j].col (or accounts[i].account.col)."""
    out = f"accounts[{i}]"
    if name is not None:
        out += f".{name}" + (f"[{j}]" if j is not None else "")
    return out + (f".{col}" if col is not None else "")


_UNIQUE_TABLES = ("accounts", "claims", "claim_lines", "remittances", "transactions", "appeals", "activities")


def _check_references(req: ScoreRequest) -> list[tuple[str, str]]:
    """References inside each history and unique keys across the request (the contract's rules,
    named by JSON path); payers shared by several accounts must agree. Locations are kept as
    tuples and turned into paths only for a problem: a worklist has ~50,000 rows to check."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, dict] = {t: {} for t in _UNIQUE_TABLES}
    payers: dict[str, dict] = {}
    payer_defaults = row_defaults("payers")

    def unique(table: str, key, loc: tuple) -> None:
        first = seen[table].setdefault(key, loc)
        if first is not loc:
            problems.append((_path(*loc), f"duplicate {'/'.join(TABLES[table].key)} (first at {_path(*first)})"))

    for i, h in enumerate(req.accounts):
        account = h["account"]
        acct = account["account_id"]
        unique("accounts", acct, (i, "account", None, "account_id"))
        payer_ids = set()
        for j, p in enumerate(h.get("payers", ())):
            payer_ids.add(p["payer_id"])
            prev = payers.setdefault(p["payer_id"], p)
            if prev is not p and prev != p and {**payer_defaults, **prev} != {**payer_defaults, **p}:
                problems.append((_path(i, "payers", j), "payer_id given twice with different values"))

        def payer_ref(pid, loc: tuple, payer_ids=payer_ids, i=i) -> None:
            if pid is not None and pid not in payer_ids:
                problems.append((_path(*loc), f"references a payer that is not in {_path(i, 'payers')}"))

        def mismatch(loc: tuple, i=i) -> None:
            own = _path(i, "account", None, "account_id")
            problems.append((_path(*loc), f"is not the account's account_id ({own})"))

        payer_ref(account.get("primary_payer_id"), (i, "account", None, "primary_payer_id"))
        claims = h.get("claims", ())
        claim_ids = {c["claim_id"] for c in claims}
        for j, c in enumerate(claims):
            unique("claims", c["claim_id"], (i, "claims", j, "claim_id"))
            if c["account_id"] != acct:
                mismatch((i, "claims", j, "account_id"))
            payer_ref(c.get("payer_id"), (i, "claims", j, "payer_id"))
            original = c.get("original_claim_id")
            if original is not None and original not in claim_ids:
                problems.append((_path(i, "claims", j, "original_claim_id"),
                                 f"references a claim that is not in {_path(i, 'claims')}"))
        for name in ("claim_lines", "remittances", "appeals"):
            key_col = TABLES[name].key[-1]
            for j, r in enumerate(h.get(name, ())):
                if r["claim_id"] not in claim_ids:
                    problems.append((_path(i, name, j, "claim_id"),
                                     f"references a claim that is not in {_path(i, 'claims')}"))
                key = (r["claim_id"], r["line_number"]) if name == "claim_lines" else r[key_col]
                unique(name, key, (i, name, j, key_col))
        remit_ids = {r["remit_id"] for r in h.get("remittances", ())}
        for j, a in enumerate(h.get("adjustments", ())):
            if a["remit_id"] not in remit_ids:
                problems.append((_path(i, "adjustments", j, "remit_id"),
                                 f"references a remittance that is not in {_path(i, 'remittances')}"))
        for name in ("transactions", "activities"):
            key_col = TABLES[name].key[0]
            for j, r in enumerate(h.get(name, ())):
                if r["account_id"] != acct:
                    mismatch((i, name, j, "account_id"))
                unique(name, r[key_col], (i, name, j, key_col))
                if name == "transactions":
                    payer_ref(r.get("payer_id"), (i, name, j, "payer_id"))
        if len(problems) >= 50:
            break
    return problems


def build_dataset(req: ScoreRequest) -> Dataset:
    """The request's histories as one contract `Dataset` of `ColumnTable`s (the values `coerce_table`
    gives, as NumPy columns): pandas costs more per operation than a one-account request's work."""
    rows: dict[str, list] = {t: [] for t in REQUEST_TABLES}
    payers: dict[str, dict] = {}
    for h in req.accounts:
        rows["accounts"].append(h["account"])
        for p in h.get("payers", ()):
            payers.setdefault(p["payer_id"], p)
        for name in REQUEST_TABLES[2:]:
            rows[name].extend(h.get(name, ()))
    rows["payers"] = list(payers.values())
    as_of = parse_as_of(req.as_of)
    return Dataset({t: _table(t, r) for t, r in rows.items()}, extract_date=as_of, source="api")


def history_from_dataset(ds: Dataset, account_ids, as_of) -> dict:
    """A request body (`{"as_of", "accounts": [...]}`) made of a dataset's rows for some accounts:
    the inverse of `build_dataset`, for clients, tests and benchmarks."""
    import datetime as _dt

    def records(df: pd.DataFrame) -> list[dict]:
        cols = [c for c in df.columns if c in TABLES[name].columns]
        out = []
        for row in df[cols].itertuples(index=False, name=None):
            rec = {}
            for c, v in zip(cols, row, strict=True):
                if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
                    rec[c] = None
                elif isinstance(v, (pd.Timestamp, _dt.date)):
                    rec[c] = v.strftime("%Y-%m-%d")
                elif isinstance(v, np.integer):
                    rec[c] = int(v)
                elif isinstance(v, np.floating):
                    rec[c] = float(v)
                else:
                    rec[c] = v
            out.append(rec)
        return out

    wanted = list(account_ids)
    t = ds.tables
    by_acct = {n: t[n].groupby("account_id", sort=False).indices for n in ("accounts", "claims", "transactions",
                                                                             "activities") if n in t}
    histories = []
    for a in wanted:
        h: dict = {}
        name = "accounts"
        acc = t["accounts"].iloc[by_acct["accounts"][a]]
        h["account"] = records(acc)[0]
        name = "claims"
        cl = t["claims"].iloc[by_acct["claims"].get(a, [])]
        h["claims"] = records(cl)
        cids = set(cl["claim_id"])
        for name in ("claim_lines", "remittances", "appeals"):
            df = t[name]
            h[name] = records(df[df["claim_id"].isin(cids)]) if name in t else []
        rids = {r["remit_id"] for r in h["remittances"]}
        name = "adjustments"
        h["adjustments"] = records(t["adjustments"][t["adjustments"]["remit_id"].isin(rids)])
        for name in ("transactions", "activities"):
            h[name] = records(t[name].iloc[by_acct[name].get(a, [])]) if name in t else []
        pids = {h["account"]["primary_payer_id"]} | {c["payer_id"] for c in h["claims"]} | {
            x["payer_id"] for x in h["transactions"]}
        name = "payers"
        h["payers"] = records(t["payers"][t["payers"]["payer_id"].isin(pids - {None})])
        histories.append(h)
    return {"as_of": pd.Timestamp(as_of).strftime("%Y-%m-%d"), "accounts": histories}


# ----------------------------------------------------------------------------- response


def _f(x) -> float | None:
    """A finite float or None (JSON has no NaN or infinity)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _d(x) -> dt.date | None:
    if x is None or isinstance(x, dt.date):
        return x
    return None if pd.isna(x) else pd.Timestamp(x).date()


def _values(column: np.ndarray) -> list:
    """A NumPy column as Python values (dates as `datetime.date`, NaT as None)."""
    return column.astype("datetime64[D]").tolist() if column.dtype.kind == "M" else column.tolist()


def _s(x) -> str | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA else str(x)


def _results(ranked, as_of: dt.date, version: str) -> dict[str, AccountResult]:
    """The ranked `Columns` (`rank(..., frames=False)`) as one result per scored account, in rank order."""
    acc, den = ranked.accounts, ranked.denials
    denials: dict[str, list[dict]] = {}
    if len(den["claim_id"]):
        cols = [_values(den[c]) for c in ("account_id", "claim_id", "rank", "p_overturn", "expected_recovery",
                                           "next_action", "carc", "appeal_deadline")]
        for aid, cid, rk, po, er, act, carc, deadline in zip(*cols, strict=True):
            denials.setdefault(aid, []).append({
                "claim_id": cid, "rank": int(rk), "p_overturn": _f(po), "expected_recovery": _f(er),
                "next_action": _s(act), "carc": _s(carc), "appeal_deadline": _d(deadline)})
    names = ("account_id", "rank", "priority", "p_payment", "expected_recovery", "expected_net", "next_action",
             "action_minutes", "hold_reason", "is_exploration", "balance", "reasons", "appeal_deadline",
             "timely_filing_deadline")
    scored: dict[str, AccountResult] = {}
    for (aid, rk, prio, p, er, net, act, mins, hold, explore, bal, reasons, appeal, tf) in zip(
            *(_values(acc[c]) for c in names), strict=True):
        scored[aid] = AccountResult(
            account_id=aid, status="scored", rank=int(rk), priority=_f(prio), p_payment=_f(p),
            expected_recovery=_f(er), expected_net=_f(net), next_action=_s(act), action_minutes=_f(mins),
            hold_reason=_s(hold), is_exploration=bool(explore), balance=_f(bal), reasons=list(reasons or []),
            deadlines={"appeal": _d(appeal), "timely_filing": _d(tf)}, denials=denials.get(aid, []), as_of=as_of,
            model_version=version)
    return scored


class _Timer:
    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.marks[name] = round((now - self.t) * 1000, 3)
        self.t = now


def _error(status: int, message: str, problems: list[tuple[str, str]] | None = None) -> JSONResponse:
    body: dict = {"error": message, "request_id": request_id_var.get()}
    if problems:
        body["fields"] = [p for p, _ in problems]
        body["detail"] = [{"field": p, "msg": m} for p, m in problems]
    return JSONResponse(body, status_code=status)


# ----------------------------------------------------------------------------- the service


@bentoml.service(
    name="recoup",
    workers=1,
    traffic={"timeout": 120},
    # our middleware logs every request once (request id, status, milliseconds): BentoML's access
    # log would be a second line per request, and its cost is on every request's path
    logging={"access": {"enabled": False}},
)
class RecoupService:
    """Real-time scoring and worklists for work-queue systems."""

    def __init__(self) -> None:
        from serving.ranking import load_ranking_config

        api_token()  # refuse to start without a token unless auth is explicitly off
        self.ranking_cfg = load_ranking_config(os.environ.get("RECOUP_RANKING_CONFIG") or None)
        self._reload_lock = threading.Lock()
        self._limiter = None  # anyio's, made on the event loop by the first large request
        global _PRELOADED
        preloaded, _PRELOADED = _PRELOADED, None
        self.current: LoadedModel = preloaded or load_model()
        log.info("serving model %s (%s)", self.current.version, self.current.source)
        self._install_sighup()
        # What is loaded by now (libraries, the model) lives as long as the process: keep it out of
        # the cyclic GC, whose full passes over it would otherwise add ~0.5 s to a request now and then.
        gc.freeze()

    # -- reload

    def _install_sighup(self) -> None:
        if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
            return

        def on_hup(signum, frame) -> None:  # runs in the main thread: hand the work to a thread
            threading.Thread(target=self._reload_logged, name="recoup-reload", daemon=True).start()

        try:
            signal.signal(signal.SIGHUP, on_hup)
        except ValueError:  # not the main thread of the interpreter
            return

    def _reload_logged(self) -> None:
        try:
            old, new = self.reload_model()
            log.info("reload on SIGHUP: %s -> %s", old, new)
        except Exception as err:  # noqa: BLE001 - keep serving the old model
            log.error("reload on SIGHUP failed (%s); still serving %s", type(err).__name__, self.current.version)

    def reload_model(self) -> tuple[str, str]:
        """Re-resolve the alias and swap the model in one assignment; in-flight requests keep theirs."""
        with self._reload_lock:
            old = self.current
            new = load_model()
            self.current = new
            gc.freeze()  # the new model is long-lived too (see __init__)
            return old.version, new.version

    def __is_ready__(self) -> bool:
        return getattr(self, "current", None) is not None

    # -- endpoints

    @bentoml.api(route="/score", input_spec=ScoreRequest, output_spec=ScoreResponse)
    async def score(self, **kwargs) -> ScoreResponse:
        """Score each account of the request at `as_of`: probabilities, expected recovery, priority,
        next action, deadlines, denials and reasons. Results follow the request's order; `rank` is
        the account's place among the request's accounts."""
        return await self._dispatch("score", ScoreRequest.model_construct(**kwargs), None)

    @bentoml.api(route="/worklist", input_spec=WorklistRequest, output_spec=ScoreResponse)
    async def worklist(self, **kwargs) -> ScoreResponse:
        """Rank the request's accounts (work first = rank 1), cut to `capacity_minutes` when given;
        accounts that are not open, or over capacity, follow with their status."""
        req = WorklistRequest.model_construct(**kwargs)
        return await self._dispatch("worklist", req, req.capacity_minutes)

    @bentoml.api(route="/admin/reload", output_spec=ReloadResponse)
    async def admin_reload(self) -> ReloadResponse:
        """Re-resolve the model alias in the registry and swap the model without downtime."""
        import anyio

        try:
            old, new = await anyio.to_thread.run_sync(self.reload_model)
        except Exception as err:  # noqa: BLE001 - the old model keeps serving
            log.error("reload failed (%s); still serving %s", type(err).__name__, self.current.version)
            return _error(503, f"reload failed ({type(err).__name__}: {err}); still serving "
                               f"{self.current.version}")
        log.info("reload: %s -> %s", old, new)
        return ReloadResponse(old_version=old, new_version=new, changed=old != new)

    # -- the work

    async def _dispatch(self, endpoint: str, req: ScoreRequest, capacity: float | None):
        """A small request (a work-queue system asking about one account) is scored on the event
        loop: it takes a few milliseconds, less than the hop to a worker thread and back. A larger
        one goes to the scoring threads (RECOUP_THREADS), so health checks keep answering meanwhile."""
        if len(req.accounts) <= INLINE_MAX_ACCOUNTS:
            return self._handle(endpoint, req, capacity)
        import anyio

        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(max(1, _env_int("RECOUP_THREADS", 1)))
        return await anyio.to_thread.run_sync(self._handle, endpoint, req, capacity, limiter=self._limiter)

    def _handle(self, endpoint: str, req: ScoreRequest, capacity: float | None):
        state = self.current  # one reference for the whole request: one model version answers it
        rid = request_id_var.get()
        n, limit = len(req.accounts), _env_int("RECOUP_MAX_ACCOUNTS", DEFAULT_MAX_ACCOUNTS)
        if n > limit:
            return _error(413, f"too many accounts: {n:,} in the request, at most {limit:,} (RECOUP_MAX_ACCOUNTS)",
                          [("accounts", f"at most {limit:,} items")])
        timer = _Timer()
        try:
            problems = _check_references(req)
            if problems:
                return _error(422, f"{len(problems)} problem(s) in the request: "
                                   + "; ".join(f"{p}: {m}" for p, m in problems[:5]), problems)
            ds = build_dataset(req)
            timer.mark("dataset_ms")
            body = self._score(state, ds, req, capacity, endpoint == "worklist", rid, timer)
        except RequestProblem as err:
            return _error(err.status, err.message, err.problems)
        except Exception as err:  # noqa: BLE001 - no internals (or PHI) leave the service
            frames = "".join(traceback.format_tb(err.__traceback__))  # no message: it could carry values
            log.error("request %s: %s failed with %s\n%s", rid, endpoint, type(err).__name__, frames)
            return _error(500, f"internal error; quote request id {rid}")
        n_rows = sum(len(df) for df in ds.tables.values())
        log.info("request %s: %s accounts=%d rows=%d scored=%d model=%s timings_ms=%s", rid, endpoint, n,
                 n_rows, sum(r.status == "scored" for r in body.results), state.version, json.dumps(timer.marks))
        return body

    def _score(self, state: LoadedModel, ds: Dataset, req: ScoreRequest, capacity, by_rank: bool, rid: str,
               timer: _Timer) -> ScoreResponse:
        from features.snapshot import snapshot_features
        from serving.ranking import rank

        model = state.model
        as_of = parse_as_of(req.as_of)
        # the batch's functions on NumPy columns (frames=False): the same numbers, without pandas'
        # cost per operation, which would be most of a one-account request
        acc, den = snapshot_features(ds, as_of, stats=model.stats_, with_labels=False, frames=False)
        timer.mark("features_ms")
        ranked = rank(model, acc, den, self.ranking_cfg, state.version, rid, reasons_rows=None,
                      capacity_minutes=capacity, frames=False)
        timer.mark("rank_ms")
        scored = _results(ranked, req.as_of, state.version)
        open_ids = set(acc["account_id"].tolist())
        ids = [h["account"]["account_id"] for h in req.accounts]

        def other(aid: str) -> AccountResult:
            status = "over_capacity" if aid in open_ids else "not_open"
            return AccountResult(account_id=aid, status=status, as_of=req.as_of, model_version=state.version)

        if by_rank:
            ordered = list(scored.values())  # rank order
            rest = [aid for aid in ids if aid not in scored]
            results = ordered + [other(aid) for aid in sorted(rest, key=lambda a: (a not in open_ids, a))]
        else:
            results = [scored[aid] if aid in scored else other(aid) for aid in ids]
        timer.mark("response_ms")
        return ScoreResponse.model_construct(results=results, model_version=state.version, request_id=rid)


# ----------------------------------------------------------------------------- ASGI middleware


class RecoupMiddleware:
    """Request ids, bearer-token auth, the body-size limit (413), request logs (no PHI), and error
    bodies that name the field and carry the request id."""

    def __init__(self, app) -> None:
        self.app = app
        self.token = api_token()
        self.token_bytes = self.token.encode() if self.token else None
        _env_int("RECOUP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)  # a bad value fails at start

    @property
    def max_body(self) -> int:  # read per request: cheap, and a test or an operator can change it
        return _env_int("RECOUP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        incoming = headers.get("x-request-id", "")
        rid = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex[:16]
        token = request_id_var.set(rid)
        path, method = scope.get("path", ""), scope.get("method", "")
        status_box = {"status": 0}
        try:
            open_path = method in ("GET", "HEAD") and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))
            if not open_path and self.token_bytes is not None and not self._authorized(headers):
                await self._send_json(send, 401, {"error": "missing or invalid bearer token "
                                                           "(Authorization: Bearer <RECOUP_API_TOKEN>)",
                                                  "request_id": rid}, rid, {"www-authenticate": "Bearer"})
                status_box["status"] = 401
                return
            if method in ("POST", "PUT", "PATCH"):
                length = headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > self.max_body):
                    await self._too_large(send, rid, length)
                    status_box["status"] = 413
                    return
                body, limit = bytearray(), self.max_body
                while True:
                    msg = await receive()
                    if msg["type"] == "http.disconnect":
                        return
                    body += msg.get("body", b"")
                    if len(body) > limit:
                        await self._too_large(send, rid, None)
                        status_box["status"] = 413
                        return
                    if not msg.get("more_body", False):
                        break
                receive = _replay(bytes(body), receive)
            await self.app(scope, receive, _ErrorRewriter(send, rid, status_box, path))
        finally:
            request_id_var.reset(token)
            if path not in OPEN_PATHS or status_box["status"] >= 400:
                log.info("request %s %s %s -> %d in %.1f ms", rid, method, path, status_box["status"],
                         (time.perf_counter() - started) * 1000)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value:
            return False
        return hmac.compare_digest(value.strip().encode(), self.token_bytes)

    async def _too_large(self, send, rid: str, length) -> None:
        await self._send_json(send, 413, {
            "error": f"request body too large: at most {self.max_body:,} bytes (RECOUP_MAX_BODY_BYTES)"
                     + (f", got {int(length):,}" if length and str(length).isdigit() else ""),
            "fields": ["body"], "request_id": rid}, rid)

    @staticmethod
    async def _send_json(send, status: int, body: dict, rid: str, extra: dict | None = None) -> None:
        data = json.dumps(body).encode()
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                (b"x-request-id", rid.encode())]
        hdrs += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": data})


def _replay(body: bytes, receive):
    sent = False

    async def inner():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return inner


def _loc_path(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


class _ErrorRewriter:
    """Adds the request id header to every response; rewrites BentoML's validation errors (400 with
    pydantic's `detail`) into a message that names each field by its JSON path (422), malformed
    JSON stays 400; a 5xx body from BentoML keeps no internals and gains the request id."""

    def __init__(self, send, rid: str, status_box: dict, path: str) -> None:
        self.send, self.rid, self.status_box, self.path = send, rid, status_box, path
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            status = int(message["status"])
            self.status_box["status"] = status
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
            headers.append((b"x-request-id", self.rid.encode()))
            message = {**message, "headers": headers}
            if status in (400, 500):  # BentoML's own error bodies: rewrite them
                self.start = message
                return
            await self.send(message)
            return
        if message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, body = self._rewrite(int(self.start["status"]), b"".join(self.chunks))
            self.status_box["status"] = status
            headers = [(k, v) for k, v in self.start["headers"] if k.lower() not in (b"content-length",
                                                                                       b"content-type")]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await self.send({**self.start, "status": status, "headers": headers})
            await self.send({"type": "http.response.body", "body": body})
            return
        await self.send(message)

    def _rewrite(self, status: int, raw: bytes) -> tuple[int, bytes]:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {"error": str(data[0].get("error")) if isinstance(data, list) and data and isinstance(
                data[0], dict) else "bad request"}
        if status >= 500:
            out = {"error": f"internal error; quote request id {self.rid}", "request_id": self.rid}
            return status, json.dumps(out).encode()
        detail = data.get("detail")
        if isinstance(detail, list) and detail and all(isinstance(d, dict) and "loc" in d for d in detail):
            items = [(_loc_path(d.get("loc") or ()), str(d.get("msg", "invalid")), d.get("type", "")) for d in detail]
            if any(t == "json_invalid" for _, _, t in items):
                msg = next(m for _, m, t in items if t == "json_invalid")
                out = {"error": f"malformed JSON: {msg}", "fields": ["body"], "request_id": self.rid}
                return 400, json.dumps(out).encode()
            text = "; ".join(f"{p}: {m}" for p, m, _ in items[:5])
            more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
            out = {"error": f"{len(items)} invalid field(s): {text}{more}", "fields": [p for p, _, _ in items],
                   "detail": [{"field": p, "msg": m, "type": t} for p, m, t in items], "request_id": self.rid}
            return 422, json.dumps(out).encode()
        out = {"error": str(data.get("error") or "bad request"), "request_id": self.rid}
        return status, json.dumps(out).encode()


RecoupService.add_asgi_middleware(RecoupMiddleware)


def prepare_process() -> None:
    """What this process needs before BentoML builds the service's app: a folder for Prometheus'
    multiprocess metrics (`bentoml serve` makes its own; `recoup serve` and in-process apps need
    one). BentoML imports prometheus_client when it builds the app, and it reads the folder then."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recoup-prometheus-")


def run_server(host: str = "127.0.0.1", port: int = 3000) -> None:
    """`recoup serve`: the service's ASGI app in this process (one worker, uvicorn), so that SIGHUP
    sent to this process reloads the model. The Bento (`bentoml build`, `bentoml serve`) runs the
    same service class under BentoML's supervisor instead."""
    import uvicorn
    from bentoml._internal.context import server_context

    global _PRELOADED
    api_token()  # fail before loading anything when there is no token and auth is not off
    _PRELOADED = load_model()  # a missing model or alias fails here, with a clear message
    server_context.service_name = server_context.bento_name = "recoup"
    server_context.service_type = "entry_service"
    server_context.bento_version = _PRELOADED.version
    prepare_process()
    app = RecoupService.to_asgi(is_main=True)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, server_header=False, lifespan="on",
                            timeout_keep_alive=30, access_log=False)
    server = uvicorn.Server(config)
    log.info("recoup serve on http://%s:%d (model %s, auth %s)", host, port, _PRELOADED.version,
             "off" if api_token() is None else "bearer token")
    server.run()
    if not server.started:
        raise RuntimeError("the service did not start; see the log above")
