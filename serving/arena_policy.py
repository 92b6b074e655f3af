"""recoup's own rankings as arena policies: each morning, the day's point-in-time features, the
registered model's scores and the ranking's order and next actions (`serving.ranking.rank`), exactly
as the nightly batch would list them. The arena maps the next actions onto the simulator's
(`features.arena.rules.resolve`: a call on an insurance balance is a status call, on a patient
balance a patient call; bill_patient is a statement; hold and wait mean no work).

- `lift`: DESIGN.md's order, by what the work adds (net, per minute), with the best action;
- `expected_recovery`: the order before the lift models, by expected net recovery per minute."""

from __future__ import annotations

import pandas as pd

from features.snapshot import snapshot_features
from serving.ranking import load_ranking_config, rank

MODEL_POLICIES = {"lift": "lift", "expected_recovery": "net_per_minute"}  # policy -> ranking.yaml's priority


class ModelPolicy:
    """A registered model's worklist as an arena policy, with the ranking configuration's `priority`
    set to `priority` (`lift`, `net_per_minute` or `net`)."""

    def __init__(self, model, model_version: str, ranking_cfg: dict | None = None, priority: str = "lift") -> None:
        self.model = model
        self.model_version = model_version
        self.ranking_cfg = ranking_cfg
        self.priority = priority

    def __call__(self, day) -> pd.DataFrame:
        cfg = dict(self.ranking_cfg if self.ranking_cfg is not None else load_ranking_config())
        cfg["priority"] = self.priority
        ds = day.dataset
        acc, den = snapshot_features(ds, day.as_of, stats=self.model.stats_, with_labels=False)
        ranked = rank(self.model, acc, den, cfg, self.model_version, run_id=f"arena-{day.as_of.date()}",
                      reasons_rows=0)
        wl = ranked.accounts.sort_values("rank", kind="stable")
        return pd.DataFrame({"account_id": wl["account_id"].to_numpy(), "action": wl["next_action"].to_numpy(),
                             "propensity": wl["propensity"].to_numpy(dtype=float),
                             "is_exploration": wl["is_exploration"].to_numpy().astype(int)})

