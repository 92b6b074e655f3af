"""The arena: a simulated office worked day by day by a policy (DESIGN.md, "The arena").

Public API: `run_arena` (the whole comparison and its report), `run_policy` (one policy), `Office`
(a simulated office at its extract date), `ArenaDay` (what a policy sees each morning), `Staff`, the
shipped policies in `SHIPPED` (and `randomized`, a logging office for off-policy evaluation). The
arena imports nothing above the simulator: a model's policy is a callable handed in.
"""

from features.arena.office import Office, observed_accounts
from features.arena.policies import SHIPPED, nothing, oracle, randomized, work_units
from features.arena.report import run_arena, write_report
from features.arena.rules import ALIASES, Staff, resolve
from features.arena.run import ArenaDay, Policy, PolicyResult, run_policy, summarize

__all__ = ["ALIASES", "SHIPPED", "ArenaDay", "Office", "Policy", "PolicyResult", "Staff", "nothing",
           "observed_accounts", "oracle", "randomized", "resolve", "run_arena", "run_policy", "summarize",
           "work_units", "write_report"]
