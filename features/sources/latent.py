"""The simulator's hidden state as a table, so that an office written by `recoup simulate` can be
continued (the arena): every latent variable of every account, and what the simulator remembers
of it (its chain state, its clocks) at the extract date, and the run's configuration. Stored under
`_truth/` beside the truth; nothing in the features reads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from features.sources.chain import Mechanics
from features.sources.engine import Memory
from features.sources.office import OfficeConfig

LATENT_TABLE = "_truth/latent"
CONFIG_TABLE = "_truth/simulation"  # one row: the run's configuration as JSON
_WIDE = ("line_proc", "line_mod", "line_rev")  # n x 4 arrays: one column per claim line


def to_frame(P: dict, mem: Memory) -> pd.DataFrame:
    cols = {}
    for k, v in P.items():
        if not isinstance(v, np.ndarray):
            continue
        for name, col in ([(f"{k}_{j}", v[:, j]) for j in range(v.shape[1])] if v.ndim == 2 else [(k, v)]):
            # text stays text in Parquet even where a chunk has only nulls
            cols[name] = pd.array(col, dtype="string") if col.dtype == object else col
    cols.update(mem.as_columns())
    return pd.DataFrame(cols)


def from_frame(df: pd.DataFrame, mech: Mechanics) -> tuple[dict, Memory]:
    P: dict = {"n": len(df), "first": 0, "mech": mech}
    mem_cols = {}
    for c in df.columns:
        if c.startswith("mem_"):
            mem_cols[c] = df[c].to_numpy()
        elif not any(c.startswith(f"{w}_") for w in _WIDE):
            v = df[c].to_numpy()
            P[c] = v.astype(object) if v.dtype.kind in "OSUT" or str(df[c].dtype) in ("string", "str") else v
    for w in _WIDE:
        P[w] = np.stack([df[f"{w}_{j}"].to_numpy(dtype=object) for j in range(4)], axis=1)
    for k, v in P.items():  # parquet gives back nulls of text columns as None or NaN: keep None
        if isinstance(v, np.ndarray) and v.dtype == object:
            P[k] = np.where(pd.isna(v), None, v)
    return P, Memory.from_columns(mem_cols)


def config_frame(cfg) -> pd.DataFrame:
    """The simulation's configuration (a `SimConfig`) as the one-row table `_truth/simulation`."""
    out = {k: getattr(cfg, k) for k in ("n_accounts", "seed", "start", "end", "horizon_days", "chunk_size", "truth")}
    out["office"] = cfg.office.as_dict()
    out["mechanics"] = cfg.mechanics.as_dict()
    out["format"] = 1
    return pd.DataFrame({"config": [json.dumps(out)]})


def mechanics_of(cfg: dict) -> Mechanics:
    """The `Mechanics` stored in a `simulation.json` (JSON lists back to tuples)."""
    def tup(v):
        return tuple(tup(x) for x in v) if isinstance(v, list) else v

    return Mechanics(**{k: tup(v) for k, v in cfg["mechanics"].items()})


def read_office(folder: str | Path) -> tuple[dict, dict, Memory, Mechanics, OfficeConfig]:
    """(configuration, latent variables, memory at the extract date, mechanics, office) of a
    simulated dataset folder; a clear error if the folder was not written by `recoup simulate`."""
    folder = Path(folder)
    cfg_path, latent_path = folder / f"{CONFIG_TABLE}.parquet", folder / f"{LATENT_TABLE}.parquet"
    if not cfg_path.exists() or not latent_path.exists():
        raise ValueError(f"{folder} has no simulator state ({CONFIG_TABLE}.parquet, {LATENT_TABLE}.parquet): the "
                         "arena continues an office written by `recoup simulate`")
    cfg = json.loads(pd.read_parquet(cfg_path)["config"].iloc[0])
    mech = mechanics_of(cfg)
    office = OfficeConfig(**cfg["office"])
    P, mem = from_frame(pd.read_parquet(latent_path), mech)
    return cfg, P, mem, mech, office
