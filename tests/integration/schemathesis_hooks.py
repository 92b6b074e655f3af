"""Schemathesis hooks for the service's OpenAPI runs (`SCHEMATHESIS_HOOKS=tests.integration.schemathesis_hooks`).

`positive_data_rejected_only_for_references` stands in for schemathesis' `positive_data_acceptance`
(excluded from the runs): a request that matches the schema must be accepted, except where the service
refuses it for a rule JSON Schema cannot state, between rows of one request or against the work store (a
claim that is not in the account's claims, a row of another account, a duplicate key, an account the
store does not hold). Any other refusal of schema-valid data is a failure, as schemathesis' own check
would report it.
"""

from __future__ import annotations

import schemathesis

# the messages of the rules JSON Schema cannot state (serving.api.request.check_references, serving.api.work)
CROSS_ROW_RULES = ("references ", "is not the account's account_id", "duplicate ", "given twice",
                   "payer_id given twice")


def _is_positive(case) -> bool:
    meta = getattr(case, "meta", None)
    mode = getattr(getattr(meta, "generation", None), "mode", None)
    return bool(getattr(mode, "is_positive", False))


@schemathesis.check
def positive_data_rejected_only_for_references(ctx, response, case):
    if not _is_positive(case) or response.status_code < 400 or response.status_code in (401, 403, 409, 503):
        return None
    if response.status_code == 422:
        try:
            detail = response.json().get("detail") or []
        except ValueError:
            detail = []
        messages = [str(d.get("msg", "")) for d in detail if isinstance(d, dict)]
        if messages and all(any(rule in m for rule in CROSS_ROW_RULES) for m in messages):
            return None
    raise AssertionError(f"schema-valid request rejected with {response.status_code}: {response.text[:500]}")
