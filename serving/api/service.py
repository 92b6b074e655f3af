"""The real-time scoring service (BentoML 1.4, `@bentoml.service` class style).

`POST /score` scores the accounts of a request (each with its whole history in the contract's
shape) at an as-of date; `POST /worklist` ranks them, optionally cut to `capacity_minutes`;
`POST /work` records what collectors did in the configured work store (`serving.api.work`).
Features come from `features.snapshot` (the one feature code path) with the model's stored
statistics table, scores and ranking from `serving.ranking.rank` (the nightly batch's code),
with reasons for every account. BentoML provides `/livez`, `/readyz`, `/metrics` and the OpenAPI
page (`/`, `/docs.json`).

Settings (`serving.api.settings.ServiceSettings`): `recoup serve` builds them from its options and
hands them over (`configured_service`, `run_server`); the module-level `RecoupService`, which a Bento
serves (`bentoml serve`), reads them from the environment when it starts.

The model is loaded from the MLflow registry at start-up (not baked into the Bento): moving the
alias is picked up by `POST /admin/reload` or SIGHUP without a restart. The loaded model is one
immutable object behind one attribute; a request takes one reference to it at its start, so a
request in flight is answered by one model version only, and a reload is one assignment.

Logs carry request ids, timings and counts, never an account or patient id or an amount.
"""

from __future__ import annotations

import copy
import datetime as dt
import gc
import json
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from typing import ClassVar

import bentoml

from features.contract import Dataset
from serving.api.middleware import RecoupMiddleware, UnknownPathGuard, current_client, note, request_id_var
from serving.api.request import (
    ScoreRequest,
    WorklistRequest,
    WorkRequest,
    bound_problems,
    build_dataset,
    check_references,
    facility_problems,
)
from serving.api.response import (
    AccountResult,
    ReloadResponse,
    ScoreResponse,
    WorkResponse,
    account_results,
    error_response,
    guarantor_groups,
)
from serving.api.settings import ServiceSettings

log = logging.getLogger("recoup.service")

SERVICE_OPTIONS = {
    "name": "recoup",
    "workers": 1,
    "traffic": {"timeout": 120},
    # our middleware logs every request once (request id, status, milliseconds): BentoML's access
    # log would be a second line per request, and its cost is on every request's path
    "logging": {"access": {"enabled": False}},
}


# ----------------------------------------------------------------------------- the loaded model


@dataclass(frozen=True)
class LoadedModel:
    """One model version, ready to score; replaced as a whole on reload, never mutated."""

    model: object
    version: str  # "<registered name>/<version>", as the nightly batch labels its worklists
    source: str  # "alias champion" or "version 3"
    loaded_at: str


def load_model(settings: ServiceSettings) -> LoadedModel:
    """The registered bundle the settings name (a fixed version, else the alias), from MLflow."""
    from training.tracking import load_bundle

    model = load_bundle(settings.model_name, settings.model_alias, settings.model_version, settings.tracking_uri)
    source = f"version {settings.model_version}" if settings.model_version else f"alias {settings.model_alias}"
    return LoadedModel(model, f"{model.registry_name_}/{model.registry_version_}", source,
                       dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


class Timer:
    """Milliseconds per stage of one request, for its log line."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.marks[name] = round((now - self.t) * 1000, 3)
        self.t = now


# ----------------------------------------------------------------------------- the service


@bentoml.service(**SERVICE_OPTIONS)
class RecoupService:
    """Real-time scoring and worklists for work-queue systems."""

    # What `configured_service` hands over before BentoML makes the instance (BentoML makes it
    # without arguments). Unset, as in a Bento, the settings come from the environment at start.
    configured_settings: ClassVar[ServiceSettings | None] = None
    startup_model: ClassVar[LoadedModel | None] = None  # loaded before the port opened

    def __init__(self) -> None:
        from serving.ranking import load_ranking_config

        cls = type(self)
        # refuses to start without a token unless auth is explicitly off
        self.settings = cls.configured_settings or ServiceSettings.from_env()
        self.ranking_cfg = load_ranking_config(self.settings.ranking_config)
        self._reload_lock = threading.Lock()
        self._limiter = None  # anyio's, made on the event loop by the first large request
        # taken once: after a reload, the class must not keep the old model alive
        self.current: LoadedModel = cls.startup_model or load_model(self.settings)
        cls.startup_model = None
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
            new = load_model(self.settings)
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

    @bentoml.api(route="/work", input_spec=WorkRequest, output_spec=WorkResponse)
    async def post_work(self, **kwargs) -> WorkResponse:
        """Record what collectors did: rows of the contract's `work` table, appended to the work store
        (RECOUP_WORK_STORE). Idempotent by `work_id`: a row already stored with the same content is
        counted as a duplicate; one stored with different content is a 409 naming it, and nothing of
        the request is written. Returns the counts received, written and duplicates."""
        import anyio

        from serving.api.work import NO_STORE, record

        req = WorkRequest.model_construct(**kwargs)
        note(received=len(req.work))
        store = self.settings.work_store
        if store is None:
            return error_response(503, NO_STORE)
        n, limit = len(req.work), self.settings.max_accounts
        if n > limit:  # rows count against the accounts limit
            return error_response(413, f"too many rows: {n:,} in the request, at most {limit:,} "
                                       "(RECOUP_MAX_ACCOUNTS)", [("work", f"at most {limit:,} items")])
        # reading and writing the store blocks (and waits for the store's lock): off the event loop
        return await anyio.to_thread.run_sync(record, store, req.work, self.settings.bounds, current_client())

    @bentoml.api(route="/admin/reload", output_spec=ReloadResponse)
    async def admin_reload(self) -> ReloadResponse:
        """Re-resolve the model alias in the registry and swap the model without downtime."""
        import anyio

        try:
            old, new = await anyio.to_thread.run_sync(self.reload_model)
        except Exception as err:  # noqa: BLE001 - the old model keeps serving
            # what failed, not the error's text: it can quote the tracking URI, password and all
            wanted = f"model {self.settings.model_name!r} " + (
                f"version {self.settings.model_version}" if self.settings.model_version
                else f"alias {self.settings.model_alias!r}")
            log.error("reload failed (%s) loading %s; still serving %s", type(err).__name__, wanted,
                      self.current.version)
            note(self.current.version)
            return error_response(503, f"reload failed: the registry did not give {wanted} "
                                       f"({type(err).__name__}); still serving {self.current.version}")
        note(new)
        log.info("reload: %s -> %s", old, new)
        return ReloadResponse(old_version=old, new_version=new, changed=old != new)

    # -- the work

    async def _dispatch(self, endpoint: str, req: ScoreRequest, capacity: float | None):
        """A small request (a work-queue system asking about one account) is scored on the event
        loop: it takes a few milliseconds, less than the hop to a worker thread and back. A larger
        one goes to the scoring threads (RECOUP_THREADS), so health checks keep answering meanwhile."""
        if len(req.accounts) <= self.settings.inline_max_accounts:
            return self._handle(endpoint, req, capacity)
        import anyio

        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.settings.threads)
        return await anyio.to_thread.run_sync(self._handle, endpoint, req, capacity, limiter=self._limiter)

    def _handle(self, endpoint: str, req: ScoreRequest, capacity: float | None):
        state = self.current  # one reference for the whole request: one model version answers it
        rid = request_id_var.get()
        n, limit = len(req.accounts), self.settings.max_accounts
        if n > limit:
            return error_response(413, f"too many accounts: {n:,} in the request, at most {limit:,} "
                                       "(RECOUP_MAX_ACCOUNTS)", [("accounts", f"at most {limit:,} items")])
        note(state.version, accounts=n)
        client = current_client()
        if client is not None and client.facilities is not None:
            problems = facility_problems(req, client.facilities)
            if problems:
                return error_response(403, f"client {client.name!r} may not send accounts of other facilities: "
                                           f"{len(problems)} account(s), "
                                           + ", ".join(p for p, _ in problems[:5]), problems)
        timer = Timer()
        try:
            problems = check_references(req)
            if problems:
                return _problems(problems)
            ds = build_dataset(req)
            problems = bound_problems(req, ds, self.settings.bounds)
            if problems:
                return _problems(problems)
            timer.mark("dataset_ms")
            body = self._score(state, ds, req, capacity, endpoint == "worklist", rid, timer)
        except Exception as err:  # noqa: BLE001 - no internals (or PHI) leave the service
            frames = "".join(traceback.format_tb(err.__traceback__))  # no message: it could carry values
            log.error("request %s: %s failed with %s\n%s", rid, endpoint, type(err).__name__, frames)
            return error_response(500, f"internal error; quote request id {rid}")
        n_rows = sum(len(df) for df in ds.tables.values())
        note(scored=sum(r.status == "scored" for r in body.results))
        log.info("request %s: %s accounts=%d rows=%d scored=%d model=%s timings_ms=%s", rid, endpoint, n,
                 n_rows, sum(r.status == "scored" for r in body.results), state.version, json.dumps(timer.marks))
        return body

    def _score(self, state: LoadedModel, ds: Dataset, req: ScoreRequest, capacity, by_rank: bool, rid: str,
               timer: Timer) -> ScoreResponse:
        from features.snapshot import snapshot_features
        from serving.ranking import rank

        model = state.model
        # the batch's functions on NumPy columns (frames=False): the same numbers, without pandas'
        # cost per operation, which would be most of a one-account request. The request's dataset
        # is extracted at its as-of date (`build_dataset` parsed it).
        acc, den = snapshot_features(ds, ds.extract_date, stats=model.stats_, with_labels=False, frames=False)
        timer.mark("features_ms")
        ranked = rank(model, acc, den, self.ranking_cfg, state.version, rid, reasons_rows=None,
                      capacity_minutes=capacity, frames=False)
        timer.mark("rank_ms")
        scored = account_results(ranked, req.as_of, state.version)
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
        return ScoreResponse.model_construct(results=results, guarantors=guarantor_groups(results),
                                             model_version=state.version, request_id=rid)


def _problems(problems: list[tuple[str, str]]):
    return error_response(422, f"{len(problems)} problem(s) in the request: "
                               + "; ".join(f"{p}: {m}" for p, m in problems[:5]), problems)


# A Bento's service: BentoML's documented way to add ASGI middleware is on the service object, so it
# is declared here; the middleware reads its settings (the environment) when the app starts.
RecoupService.add_asgi_middleware(RecoupMiddleware)


def configured_service(settings: ServiceSettings, model: LoadedModel | None = None) -> bentoml.Service:
    """The service with these settings (and, when given, a model already loaded) as a BentoML
    service of its own: what `recoup serve` runs and tests build apps from; several may coexist."""
    inner = type("RecoupService", (RecoupService.inner,), {
        "__doc__": RecoupService.inner.__doc__, "configured_settings": settings, "startup_model": model})
    service = bentoml.service(**copy.deepcopy(SERVICE_OPTIONS))(inner)  # BentoML keeps (and merges into) them
    service.add_asgi_middleware(RecoupMiddleware, settings=settings)
    return service


def prepare_process() -> None:
    """What this process needs before BentoML builds the service's app: a folder for Prometheus'
    multiprocess metrics (`bentoml serve` makes its own; `recoup serve` and in-process apps need
    one). BentoML imports prometheus_client when it builds the app, and it reads the folder then."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recoup-prometheus-")


def build_app(settings: ServiceSettings, model: LoadedModel | None = None):
    """The service's ASGI app for these settings, in this process."""
    prepare_process()
    return UnknownPathGuard(configured_service(settings, model).to_asgi(is_main=True), settings.docs)


def run_server(settings: ServiceSettings, host: str = "127.0.0.1", port: int = 3000) -> None:
    """`recoup serve`: the service's ASGI app in this process (one worker, uvicorn), so that SIGHUP
    sent to this process reloads the model. The Bento (`bentoml build`, `bentoml serve`) runs the
    same service class under BentoML's supervisor instead."""
    import uvicorn

    model = load_model(settings)  # a missing model or alias fails here, before the port opens
    # what BentoML's own server sets for its workers (names in metrics and logs)
    context = bentoml.server_context
    context.service_name = context.bento_name = "recoup"
    context.service_type = "entry_service"
    context.bento_version = model.version
    app = build_app(settings, model)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, server_header=False, lifespan="on",
                            timeout_keep_alive=30, access_log=False)
    server = uvicorn.Server(config)
    auth = "off" if settings.no_auth and not (settings.api_token or settings.clients_file) else (
        f"clients file {settings.clients_file}" if settings.clients_file else "bearer token")
    log.info("recoup serve on http://%s:%d (model %s, auth %s)", host, port, model.version, auth)
    server.run()
    if not server.started:
        raise RuntimeError("the service did not start; see the log above")
