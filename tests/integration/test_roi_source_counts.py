"""The ROI marts' operational columns (rows gated, quarantined rows, error rate; source records,
quarantined records per 1,000; first-attempt success) recomputed from the sources, the defect
manifest and the Dagster instance (tests/roi_source_counts.py) — not from the tables the marts
read — on a world lived the way the demo lives it (issue 17)."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest

from trueup.connectors.warehouse import Warehouse
from tests.lived_worlds import SHARED, lived_world
from tests.roi_source_counts import SourceLog, first_attempt_rate, first_attempts, periods

pytestmark = pytest.mark.slow

REL = 1e-3   # 0.1 %


def _close(found, expected) -> bool:
    if expected is None or found is None or pd.isna(found):
        return (expected is None) == (found is None or pd.isna(found))
    return abs(float(found) - float(expected)) <= REL * max(abs(float(expected)), 1e-9)


@dataclasses.dataclass
class Lived:
    cfg: object
    days: list
    log: SourceLog
    units: dict
    daily: pd.DataFrame
    summary: pd.DataFrame
    readbacks: pd.DataFrame   # the ledger's confirmed ERP writes per night (what publish reads back)


@pytest.fixture(scope="module")
def lived(tmp_path_factory):
    """Seed 11's world as the demo lives it (tests/lived_worlds.SHARED: one backfill up to go-live,
    then five days at a time, three times the usual defect rates), with the rows its sources
    offered for each day, snapshotted before the run covering it."""
    with pytest.MonkeyPatch.context() as mp, \
            lived_world(tmp_path_factory, tmp_path_factory.mktemp("roi_sources"), mp, SHARED) as shared:
        from dagster import DagsterInstance

        with DagsterInstance.get() as instance:
            units = first_attempts(instance)
        wh = Warehouse(shared.world.env["TRUEUP_WAREHOUSE_URL"])
        # the nightly job's last step (dbt_roi_marts, after publish and reconcile) rebuilt the marts
        daily = wh.query_df("SELECT * FROM marts.roi_daily").assign(day=lambda d: pd.to_datetime(d.day).dt.date)
        summary = wh.query_df("SELECT * FROM marts.roi_summary").set_index("period")
        readbacks = wh.query_df("SELECT business_date, target_object, count(*) AS n FROM ops.sor_writes WHERE "
                                "target_system = 'erp' AND state = 'confirmed' GROUP BY 1, 2")
        wh.dispose()
        yield Lived(shared.cfg, shared.world.days(), shared.sources, units, daily, summary, readbacks)


def _day_row(lived: Lived, day: dt.date):
    row = lived.daily[lived.daily.day == day]
    assert len(row) == 1, f"no roi_daily row for {day}"
    return row.iloc[0]


def _windows(lived: Lived):
    """The periods' windows are roi_periods' (judged elsewhere); every column is compared over them."""
    for period in ("baseline", "current"):
        row = lived.summary.loc[period]
        yield period, row, pd.Timestamp(row.period_start).date(), pd.Timestamp(row.period_end).date()


def _span(a: dt.date, b: dt.date) -> list[str]:
    return [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


class Checks:
    def __init__(self):
        self.lines, self.problems = [], []

    def __call__(self, what, found, expected):
        ok = _close(found, expected)
        self.lines.append(f"{'ok ' if ok else 'BAD'} {what}: mart {found} expected {expected}")
        if not ok:
            self.problems.append(self.lines[-1])


def test_every_count_matches_the_sources(lived):
    """One test per lived world (the world costs a minute to live; under xdist two tests of one
    module-scoped world may each live it on a worker of their own): the quarantine and
    first-attempt figures, then rows gated and the error rate."""
    quarantine_records_and_first_attempts_match_the_sources(lived)
    rows_gated_and_error_rate_match_the_sources(lived)


def quarantine_records_and_first_attempts_match_the_sources(lived):
    """quarantined_rows (per day, per period), source_records, quarantined_records,
    quarantined_per_1000_records (per period) and first_attempt_success_rate (per day, per period)."""
    check = Checks()
    assert lived.log.rows(lived.days[-1].isoformat())[0], "the last day offered nothing: the log saw no run"
    for day in lived.days:
        row = _day_row(lived, day)
        check(f"{day} quarantined_rows", row.quarantined_rows, lived.log.rows(day.isoformat())[1])
        check(f"{day} first_attempt_success_rate", row.first_attempt_success_rate,
              first_attempt_rate(lived.units, day, day))
    win = periods(lived.log, lived.cfg.golive)
    for period, row, a, b in _windows(lived):
        check.lines.append(f"    {period} {a}..{b} (the first/last day the CRM offered deals gives "
                           f"{win[period][0]}..{win[period][1]})")
        bad = sum(lived.log.rows(d)[1] for d in _span(a, b))
        records, bad_records = lived.log.records(a, b)
        assert records and bad_records, f"{period}: nothing to count"
        check(f"{period} quarantined_rows", row.quarantined_rows, bad)
        check(f"{period} source_records", row.source_records, records)
        check(f"{period} quarantined_records", row.quarantined_records, bad_records)
        check(f"{period} quarantined_per_1000_records", row.quarantined_per_1000_records, 1000 * bad_records / records)
        check(f"{period} first_attempt_success_rate", row.first_attempt_success_rate, first_attempt_rate(lived.units, a, b))
    print("\n" + "\n".join(check.lines))
    assert not check.problems, "\n".join(check.problems)


def rows_gated_and_error_rate_match_the_sources(lived):
    """rows_gated and error_rate_per_1000 (per day, per period): the rows the sources offered.

    Publish reads the ERP customers and orders it created back and gates them (assets/publish/run.py
    land_confirmed_writes); those evaluations are labelled batch_kind = 'read_back' and are not the
    day's gate. Before that label, roi_daily kept the latest evaluation per partition, so on the
    last night of every run the platform's own writes replaced the day's source rows; when the
    figures disagree, the failure says whether that is what happened again."""
    check = Checks()
    for day in lived.days:
        row = _day_row(lived, day)
        offered, bad = lived.log.rows(day.isoformat())
        check(f"{day} rows_gated", row.rows_gated, offered)
        check(f"{day} error_rate_per_1000", row.error_rate_per_1000, 1000 * bad / offered if offered else None)
    for period, row, a, b in _windows(lived):
        offered = sum(lived.log.rows(d)[0] for d in _span(a, b))
        bad = sum(lived.log.rows(d)[1] for d in _span(a, b))
        check(f"{period} rows_gated", row.rows_gated, offered)
        check(f"{period} error_rate_per_1000", row.error_rate_per_1000, 1000 * bad / offered if offered else None)
    print("\n" + "\n".join(check.lines))
    if not check.problems:
        return
    # is it the read-back again? per night: mart = offered - that night's ERP customers/orders
    # offered by the ERP database + the platform's confirmed ERP writes (ledger) read back
    nights: dict[str, dict[str, int]] = {}
    for d, t, n in zip(lived.readbacks.business_date, lived.readbacks.target_object, lived.readbacks.n):
        nights.setdefault(str(d)[:10], {})[f"erp_{t}"] = int(n)
    explained = []
    for day in lived.days:
        key, objs = day.isoformat(), lived.log.rows_by_object(day.isoformat())
        back = nights.get(key, {})
        by_bug = lived.log.rows(key)[0] - sum(objs[o][0] for o in back) + sum(back.values())
        if back and _close(_day_row(lived, day).rows_gated, by_bug):
            explained.append(f"{day}: the read-back of {back} counted instead of the day's ERP rows")
    pytest.fail("\n".join(explained + check.problems))
