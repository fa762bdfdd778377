"""Gated state survives time: after ANY sequence of landings and gate runs — versions of contacts
and of the companies they name arriving in any order, days gated and re-gated in any order — a
contact whose company has landed is never left in quarantine for a missing company, a contact
whose company never existed stays there, and no version is validated twice.

A hypothesis state machine lands versions into raw (the code the raw/* assets run) and gates
contacts as the gate asset does (`gate_partitions`, then `recheck_late_references`). Its own
model says what each contact's state must be, from what it landed and when: never from what the
platform derived.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from trueup.assets.gate.late_references import recheck_late_references
from trueup.assets.gate.run_gate import gate_partitions
from trueup.assets.ingest.objects import CRM_OBJECTS
from trueup.assets.ingest.raw_store import land_partitions
from trueup.connectors.warehouse import Warehouse
from trueup.quality.contracts import INBOUND

DAYS = [dt.date(2026, 9, 1) + dt.timedelta(days=i) for i in range(3)]
COMPANIES = ["1", "2"]
NO_SUCH_COMPANY = "99"          # named by contacts, never in the CRM
CONTACTS = ["101", "102", "103"]
CONTACTS_CONTRACT = INBOUND["crm_contacts"]


def _iso(ts: dt.datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class GateStateOverTime(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="gate-state-"))
        self.wh = Warehouse(f"duckdb:///{self.root / 'warehouse.duckdb'}")
        # the file stays open for the machine's life, as a run's warehouse does from step to step
        self._held = contextlib.ExitStack()
        self._held.enter_context(self.wh.held_open())
        self.step = 0
        self.last_gate = -1
        self.updated: dict[tuple[str, str], dt.datetime] = {}   # (kind, id) → its latest version's time
        self.company_alive: dict[str, tuple[bool, int]] = {}    # id → (alive, step its latest version landed)
        self.contact: dict[str, dict] = {}                      # id → {company, day, landed, gated}

    def teardown(self) -> None:
        self._held.close()
        self.wh.dispose()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the sources change, and their versions land (any day, in any order) ----------------------
    def _version(self, kind: str, rid: str, day: int, minute: int) -> dt.datetime:
        """A new version is later than the record's last one (versions only move forward)."""
        at = dt.datetime.combine(DAYS[day], dt.time(0)) + dt.timedelta(minutes=minute)
        last = self.updated.get((kind, rid))
        at = max(at, last + dt.timedelta(minutes=1)) if last else at
        if at.date() > DAYS[-1]:
            return None
        self.updated[(kind, rid)] = at
        return at

    def _land(self, name: str, row: dict, at: dt.datetime) -> None:
        self.step += 1
        obj = CRM_OBJECTS[name.removeprefix("crm_")]
        frame = pd.DataFrame([{c: row.get(c) for c in obj.columns}])
        land_partitions(self.wh, obj, {at.date().isoformat(): frame}, f"land-{self.step}", lambda _d: "test")

    @rule(rid=st.sampled_from(COMPANIES), day=st.integers(0, len(DAYS) - 1), minute=st.integers(0, 1439),
          archived=st.sampled_from([False, False, True]))   # mostly a live company: what a contact waits for
    def a_company_changes(self, rid, day, minute, archived):
        at = self._version("companies", rid, day, minute)
        if at is None:
            return
        self._land("crm_companies", {
            "id": rid, "created_at": _iso(at), "updated_at": _iso(at), "archived": "true" if archived else "false",
            "name": f"Company {rid}", "country": "DE", "ar_balance": "0.00", "ar_overdue_amount": "0.00"}, at)
        self.company_alive[rid] = (not archived, self.step)

    @rule(rid=st.sampled_from(CONTACTS), company=st.sampled_from([*COMPANIES, NO_SUCH_COMPANY]),
          day=st.integers(0, len(DAYS) - 1), minute=st.integers(0, 1439))
    def a_contact_changes(self, rid, company, day, minute):
        at = self._version("contacts", rid, day, minute)
        if at is None:
            return
        self._land("crm_contacts", {
            "id": rid, "created_at": _iso(at), "updated_at": _iso(at), "archived": "false",
            "email": f"c{rid}@example.com", "firstname": "Ana", "lastname": f"Contact {rid}",
            "associatedcompanyid": company}, at)
        self.contact[rid] = {"company": company, "day": at.date(), "version": _iso(at), "landed": self.step,
                             "gated": None}

    # -- a gate run of a range of days, as the gate asset runs it -------------------------------
    @rule(first=st.integers(0, len(DAYS) - 1), length=st.integers(1, 2))
    def contacts_are_gated(self, first, length):
        days = DAYS[first:first + length]
        if not self.contact:
            return
        self.step += 1
        run_id = f"gate-{self.step}"
        gate_partitions(self.wh, CONTACTS_CONTRACT, [d.isoformat() for d in days], run_id,
                        self.root / "reports", data_docs=False)
        recheck_late_references(self.wh, CONTACTS_CONTRACT, run_id)
        self.last_gate = self.step
        for c in self.contact.values():
            if c["day"] in days:
                c["gated"] = self.step

    # -- the invariant ------------------------------------------------------------------------------
    @invariant()
    def a_contact_waits_only_for_a_company_that_has_not_landed(self):
        if self.last_gate < 0:
            return
        validated = self.wh.query_df("SELECT id, updated_at FROM validated.crm_contacts_current")
        current = dict(zip(validated["id"].astype(str), validated["updated_at"].astype(str)))
        q = self.wh.query_df("SELECT business_key, failed_expectations FROM quality.quarantine "
                             "WHERE status = 'open' AND contract = :c", {"c": CONTACTS_CONTRACT.name})
        held = dict(zip(q["business_key"], q["failed_expectations"]))
        twice = self.wh.query_df("SELECT id, updated_at FROM validated.crm_contacts GROUP BY id, updated_at "
                                 "HAVING count(*) > 1")
        assert twice.empty, f"versions validated twice: {twice.to_dict('records')}"
        for rid, c in self.contact.items():
            if c["gated"] is None or c["gated"] < c["landed"]:
                continue   # its latest version's day has not been gated since it landed
            alive, landed = self.company_alive.get(c["company"], (False, None))
            if alive and landed < self.last_gate:
                assert current.get(rid) == c["version"] and rid not in held, (
                    f"contact {rid} (company {c['company']}, landed at step {landed}) after step {self.step}: "
                    f"validated {current.get(rid)}, quarantined {held.get(rid)}")
            elif landed is None:   # its company never existed at the source
                assert held.get(rid) == '["company_exists"]' and rid not in current, (
                    f"contact {rid} names company {c['company']}, which never landed: "
                    f"validated {current.get(rid)}, quarantined {held.get(rid)}")


def test_gated_contacts_survive_any_sequence_of_landings_and_gates(monkeypatch):
    # GX in a thread: a fork per gate of a handful of rows would cost more than the gate (the
    # forked worker is the default, and every Dagster-level gate test runs it)
    monkeypatch.setenv("TRUEUP_GX_WORKER", "thread")
    run_state_machine_as_test(GateStateOverTime, settings=settings(
        max_examples=20, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]))


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_contact_gated_before_its_company_landed_is_released_by_a_gate_of_another_day(monkeypatch, request,
                                                                                       backend):
    """The sequence the machine above must never get wrong, spelled out (on both warehouses): the
    contact's day is gated before its company lands; the next gate run covers other days only."""
    monkeypatch.setenv("TRUEUP_GX_WORKER", "thread")
    machine = GateStateOverTime()
    if backend == "postgresql":
        machine.wh.dispose()
        machine.wh = Warehouse(request.getfixturevalue("pg_cluster").create_database())
    try:
        machine.a_contact_changes(rid="101", company="1", day=0, minute=10)
        machine.a_contact_changes(rid="102", company=NO_SUCH_COMPANY, day=0, minute=11)
        machine.contacts_are_gated(first=0, length=1)
        machine.a_contact_waits_only_for_a_company_that_has_not_landed()   # both held: no company 1 yet
        machine.a_company_changes(rid="1", day=1, minute=5, archived=False)
        machine.contacts_are_gated(first=2, length=1)
        machine.a_contact_waits_only_for_a_company_that_has_not_landed()   # 101 released, day 0 not re-gated
        q = machine.wh.query_df("SELECT business_key, status FROM quality.quarantine")
        assert dict(zip(q["business_key"], q["status"])) == {"101": "released", "102": "open"}
    finally:
        machine.teardown()


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_gating_a_day_again_never_puts_back_an_entry_a_later_version_settled(monkeypatch, request, backend):
    """Found by the machine above (hypothesis, 2026-12-07): a contact's version of day 2 failed
    (its company does not exist), its version of day 3 passed; gating day 2 again (a re-run, a
    backfill behind the nights) re-opened the quarantine entry — the contact was validated and
    held at once. A day gated again must leave an entry a later day settled: one that a later
    version's pass released, and one that records a later day's failure."""
    monkeypatch.setenv("TRUEUP_GX_WORKER", "thread")
    machine = GateStateOverTime()
    if backend == "postgresql":
        machine.wh.dispose()
        machine.wh = Warehouse(request.getfixturevalue("pg_cluster").create_database())

    def entry() -> tuple[str, str, str]:
        q = machine.wh.query_df("SELECT status, partition, record_version FROM quality.quarantine "
                                "WHERE business_key = '101'")
        assert len(q) == 1
        return tuple(q.iloc[0])

    try:
        machine.a_company_changes(rid="1", day=0, minute=0, archived=False)
        machine.a_contact_changes(rid="101", company=NO_SUCH_COMPANY, day=1, minute=0)   # day 2: fails
        machine.a_contact_changes(rid="101", company="1", day=2, minute=0)               # day 3: passes
        machine.contacts_are_gated(first=1, length=2)
        machine.a_contact_waits_only_for_a_company_that_has_not_landed()
        assert entry()[0] == "released"
        for _ in range(2):   # day 2 again, twice: the pass of day 3 still settles the contact
            machine.contacts_are_gated(first=1, length=1)
            machine.a_contact_waits_only_for_a_company_that_has_not_landed()
            assert entry()[0] == "released"
        days = machine.wh.query_df("SELECT partition FROM quality.quarantine_days WHERE business_key = '101'")
        assert sorted(days["partition"]) == ["2026-09-02"]   # the day's failure is still on record

        machine.a_contact_changes(rid="101", company=NO_SUCH_COMPANY, day=2, minute=30)  # day 3 again: fails
        machine.contacts_are_gated(first=2, length=1)
        assert entry()[:2] == ("open", "2026-09-03")
        machine.contacts_are_gated(first=1, length=1)   # day 2 again: the later failure stays the entry
        machine.a_contact_waits_only_for_a_company_that_has_not_landed()
        assert entry() == ("open", "2026-09-03", "2026-09-03T00:30:00.000Z")
    finally:
        machine.teardown()
