"""The arena: deterministic for a seed, on common random numbers, the oracle beats every other
policy, the staff works lists under DESIGN.md's rules, and `recoup arena` runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from features.arena import SHIPPED, Office, Staff, resolve, run_arena, run_policy
from features.sources import chain as ch

DAYS = 20


@pytest.fixture(scope="module")
def report(small_office):
    return run_arena(small_office, SHIPPED, DAYS, collectors=1, minutes=240, seed=3)


def _by_policy(rep) -> dict:
    return {r["policy"]: r for r in rep["summary"]}


def test_same_seed_same_results_and_another_seed_differs(small_office, report):
    again = run_arena(small_office, {"random": SHIPPED["random"], "oracle": SHIPPED["oracle"]}, DAYS, 1, 240,
                      seed=3)
    first, second = _by_policy(report), _by_policy(again)
    for name in ("nothing", "random", "oracle"):
        assert {k: v for k, v in first[name].items() if k != "seconds"} == {
            k: v for k, v in second[name].items() if k != "seconds"}
    pd.testing.assert_frame_equal(report["results"][0].daily, again["results"][0].daily)
    other = run_arena(small_office, {}, DAYS, 1, 240, seed=4)
    assert _by_policy(other)["nothing"]["collected"] != first["nothing"]["collected"]


def test_the_oracle_beats_every_other_policy_on_dollars_because_of_work(report):
    rows = _by_policy(report)
    assert set(rows) == {"nothing", "largest_balance", "oldest", "random", "oracle"}
    oracle = rows["oracle"]["collected_because_of_work"]
    assert oracle > 0
    for name in ("largest_balance", "oldest", "random"):
        assert rows[name]["collected_because_of_work"] < oracle, name
    # common random numbers: the office doing nothing is the same for everyone, and policies that do
    # work collect at least what it does only by working
    assert rows["nothing"]["collected_because_of_work"] == 0.0
    for r in report["summary"]:
        assert set(r) >= {"policy", "collected", "collected_because_of_work", "forfeited", "minutes_used",
                          "dollars_per_collector_hour"}
        assert r["minutes_used"] <= DAYS * 240 + 1e-9


def test_the_staff_works_the_list_under_the_rules(small_office):
    office = Office.load(small_office)
    staff = Staff(collectors=2, minutes=120, call_limit=7)
    seen = []

    def everyone_twice(day):
        acc = day.accounts
        seen.append(acc.assign(worked_date=day.as_of + pd.Timedelta(days=1)))
        wl = pd.DataFrame({"account_id": acc["account_id"], "action": "call"})
        return pd.concat([wl, wl], ignore_index=True)  # every account listed twice: worked once

    res = run_policy(office, "calls", everyone_twice, 8, staff, seed=1, keep_worklists=True)
    work = res.work
    assert len(work) and (res.daily["minutes_used"] <= 2 * 120).all()
    # "call" is a status call on an insurance balance and a patient call on a patient balance
    assert set(work["action"]) <= {"status_call", "patient_call"}
    worked = work.merge(pd.concat(seen)[["account_id", "worked_date", "status", "guarantor_id"]],
                        on=["account_id", "worked_date"])
    assert len(worked) == len(work)
    assert (worked.loc[worked["action"] == "patient_call", "status"] == "patient").all()
    assert not (worked["status"] == "hold").any()  # bankruptcy, assistance, plans: not worked
    # one action per account a day, one contact per guarantor a day (covering all their balances)
    assert not work.duplicated(["account_id", "worked_date"]).any()
    calls = worked[(worked["action"] == "patient_call") & (worked["minutes"] > 0)]
    assert not calls.duplicated(["guarantor_id", "worked_date"]).any()
    assert set(work["collector"]) <= {"K1", "K2"}


def test_a_call_limit_and_the_501r_wait_hold(small_office):
    office = Office.load(small_office)
    captured = {}

    def call_and_place(day):
        acc = day.accounts
        pat = acc[acc["status"] == "patient"]
        captured.setdefault("agency_ok", set()).update(pat.loc[pat["agency_allowed"], "account_id"])
        return pd.concat([pd.DataFrame({"account_id": pat["account_id"], "action": "patient_call"}),
                          pd.DataFrame({"account_id": pat["account_id"], "action": "send_to_agency"})])

    res = run_policy(office, "pushy", call_and_place, 10, Staff(5, 480, call_limit=3), seed=2)
    work = res.work
    calls = work[(work["action"] == "patient_call") & (work["minutes"] > 0)]
    g = pd.Series(office.P["guarantor_id"], index=office.P["account_id"])
    calls = calls.assign(g=calls["account_id"].map(g))
    assert calls.groupby("g").size().max() > 3  # the policy asks for a call every day ...
    for _, c in calls.groupby("g"):  # ... and no 7 days hold more than the limit
        days = c["worked_date"].sort_values().to_numpy()
        in_week = np.searchsorted(days, days, side="right") - np.searchsorted(days, days - np.timedelta64(6, "D"))
        assert in_week.max() <= 3
    placed = work.loc[work["action"] == "send_to_agency", "account_id"]
    assert set(placed) <= captured["agency_ok"]


def test_resolve_maps_recoup_next_actions():
    assert resolve("call", "at_payer") == ch.STATUS_CALL and resolve("call", "patient") == ch.PATIENT_CALL
    assert resolve("bill_patient", "patient") == ch.STATEMENT and resolve("hold", "patient") is None
    with pytest.raises(ValueError, match="unknown action"):
        resolve("phone_a_friend", "patient")


def test_arena_cli_help_and_a_tiny_run(benv, tmp_path):
    help_ = subprocess.run([sys.executable, "-m", "recoup_cli", "arena", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "--collectors" in help_.stdout
    env = benv
    out = tmp_path / "arena"
    run = subprocess.run([sys.executable, "-m", "recoup_cli", "arena", str(env.data), "--days", "3", "--collectors",
                          "1", "--minutes", "120", "--out", str(out), "--tracking-uri", env.tracking_uri],
                         capture_output=True, text=True, env=env.env(), timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads((out / "arena.json").read_text())
    assert [r["policy"] for r in rows] == ["nothing", "largest_balance", "oldest", "random", "expected_recovery",
                                          "lift", "oracle"]
    by = {r["policy"]: r for r in rows}
    # the lift order spends its minutes where work pays: more dollars because of work per minute used
    assert by["lift"]["dollars_per_hour_worked"] >= by["expected_recovery"]["dollars_per_hour_worked"]
    assert (out / "cumulative.png").exists() and (out / "daily.csv").exists()
    bad = subprocess.run([sys.executable, "-m", "recoup_cli", "arena", str(tmp_path), "--out", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "simulator state" in bad.stderr


def test_the_days_data_is_the_history_and_the_arena_days(small_office):
    from features.contract import validate_dataset

    office = Office.load(small_office)
    counts = []

    def look(day):
        ds = day.dataset
        validate_dataset(ds)  # the contract holds for what a policy is shown
        counts.append({name: len(ds[name]) for name in ("claims", "claim_acks", "activities", "work")})
        assert ds.extract_date == day.as_of and (ds["work"]["worked_date"] <= day.as_of).all()
        return SHIPPED["largest_balance"](day)

    run_policy(office, "look", look, 4, Staff(1, 480), seed=1)
    assert counts[0]["claim_acks"] == len(office.history["claim_acks"]) > 0
    assert counts[-1]["work"] > counts[0]["work"] and counts[-1]["activities"] > counts[0]["activities"]
