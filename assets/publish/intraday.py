"""The intraday path for closed-won deals (no Dagster here).

The nightly run posts a deal's order the night after its close: a cycle time of hours. During the
business day, the intraday sensor (orchestration/intraday.py) asks the CRM every few minutes for
deals that closed won since it last looked (`look_for_closed_won`), and a run brings just those
deals to the ERP through the nightly's own steps, for the current business day:

1. `ingest_day` — the CRM's companies and deals modified during the day so far, by the same
   incremental ingestion as the nightly's assets (window = the business day, with its look-back),
   into the same version log `raw` (a later night adds only what it has not seen).
2. `gate_day` — their inbound contracts (`quality/contracts`), the same gate function: validated
   rows, quarantine, and a blocked batch stops the run before anything is published.
3. `publish` (run.py) for those deals only: the same plan, outbound contracts, ledger
   (`ops.sor_writes`), holds and approvals; idempotency keys from business ids, so the night's
   run of the same day finds the orders confirmed and posts nothing twice. Its writes carry the
   business time of the moment they were made (`business_at`), not the next night.

What the intraday path leaves to the night: ERP customers (a deal whose order needs a customer the
ERP does not have yet waits — the night rebuilds the golden customer from the day's CRM and ERP and
decides), the receivables written to the CRM, the ERP ingest and exports, dbt and reconciliation.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from trueup.connectors.hubspot import to_epoch_ms
from trueup.connectors.warehouse import Warehouse

#: the CRM search is eventually consistent (a change may be found a little after it was made):
#: each look starts this far before the newest change seen, and skips what it already requested
SEARCH_LOOKBACK_MS = 5 * 60_000
CANDIDATE_PROPERTIES = ("dealstage", "closedate", "erp_order_number")
#: the objects the intraday run ingests and gates: deals, and their companies (the deal contract's
#: reference; a company created today must be known before its deal can pass)
OBJECTS = ("crm_companies", "crm_deals")


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def business_day(ms: int, tz: str) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).astimezone(ZoneInfo(tz)).date()


def day_window(day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a business day, as the daily partitions define it (midnight to midnight in tz)."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(tz))
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=ZoneInfo(tz))
    return start, end


@dataclass
class Cursor:
    """Where the sensor is: the newest CRM modification it has seen (epoch ms), and the deals it
    already requested runs for within the look-back (id → modification ms)."""
    newest_ms: int
    requested: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"newest_ms": self.newest_ms, "requested": self.requested}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "Cursor | None":
        if not text:
            return None
        d = json.loads(text)
        return cls(int(d["newest_ms"]), {str(k): int(v) for k, v in (d.get("requested") or {}).items()})


@dataclass
class Look:
    """One look at the CRM: the deals newly closed won today (id → modification ms), the cursor after it."""
    day: dt.date
    found: dict[str, int]
    cursor: Cursor
    since_ms: int
    modified: int               # deals modified in the window (closed won or not)
    closed_won_earlier_day: int = 0   # newly closed won, but modified on an earlier day: that night's


def look_for_closed_won(client, cursor: Cursor | None, now: dt.datetime, tz: str, publish_from: dt.date,
                        lookback_ms: int = SEARCH_LOOKBACK_MS) -> Look:
    """Deals modified since the cursor (minus the look-back) that are closed won, closed on or after
    go-live, carry no ERP order number yet and were not requested at this modification already.
    `now` is the business clock (aware). The first look of a day starts at the day's beginning.
    Only deals modified today (business time zone) count: one modified on an earlier day belongs to
    that day's night, which reads it in full."""
    day = now.astimezone(ZoneInfo(tz)).date()
    now_ms = _ms(now)
    day_start = _ms(day_window(day, tz)[0])
    if cursor is None:
        cursor = Cursor(day_start)
    since = max(cursor.newest_ms, day_start) - lookback_ms   # a sensor stopped for days starts at today
    newest, found, modified, earlier = cursor.newest_ms, {}, 0, 0
    for rec in client.search_modified("deals", since, now_ms + 1, CANDIDATE_PROPERTIES):
        props = rec.get("properties") or {}
        ms = to_epoch_ms(props.get("hs_lastmodifieddate")) or to_epoch_ms(rec.get("updatedAt"))
        if ms is None:
            continue
        modified += 1
        newest = max(newest, ms)
        deal_id = str(rec["id"])
        if props.get("dealstage") != "closedwon" or props.get("erp_order_number"):
            continue
        close = to_epoch_ms(props.get("closedate"))
        if close is None or business_day(close, tz) < publish_from or cursor.requested.get(deal_id) == ms:
            continue
        if business_day(ms, tz) != day:
            earlier += 1
            continue
        found[deal_id] = ms
    keep_from = newest - lookback_ms
    requested = {k: v for k, v in {**cursor.requested, **found}.items() if v >= keep_from}
    return Look(day, found, Cursor(newest, requested), since, modified, earlier)


# ------------------------------------------------------------------------------------- the run
def ingest_day(wh: Warehouse, client, day: dt.date, tz: str, run_id: str) -> dict:
    """The CRM's companies and deals of the business day so far into raw: the nightly ingestion
    (`assets/ingest/incremental.ingest_crm`) over the day's window. {object name: IngestResult}."""
    from trueup.assets.ingest.incremental import ingest_crm
    from trueup.assets.ingest.objects import CRM_OBJECTS

    start, end = day_window(day, tz)
    windows = [(day.isoformat(), start, end)]
    out = {}
    for name in OBJECTS:
        obj = CRM_OBJECTS[name.removeprefix("crm_")]
        out[name] = ingest_crm(wh, client, obj, windows, tz, run_id)
    return out


def gate_day(wh: Warehouse, day: dt.date, run_id: str, reports_dir, scratch_dir=None,
             data_docs: bool = True) -> tuple[dict, list[str]]:
    """The inbound gates of the day's companies and deals (`assets/gate/run_gate.gate_partitions`,
    the function the gate assets run): ({object name: (GateOutcome, report path)}, the blocked
    batches with their reasons). A blocked batch must stop the run before anything is published,
    as the gate assets' blocking check stops the night."""
    from trueup.assets.gate.run_gate import gate_partitions
    from trueup.quality.contracts import INBOUND
    from trueup.quality.gx_suites import GxValidator

    validator = GxValidator()
    out, blocked = {}, []
    for name in OBJECTS:
        result = gate_partitions(wh, INBOUND[name], [day.isoformat()], run_id, reports_dir, validator,
                                 scratch_dir=scratch_dir, data_docs=data_docs)
        out[name] = result[day.isoformat()]
        if out[name][0].blocked:
            blocked.append(f"{name} {day}: {out[name][0].block_reason}")
    return out, blocked


def business_clock(as_of: dt.datetime | None, started: dt.datetime):
    """The run's business clock, naive UTC: the wall clock (production), or — in a simulated world —
    `as_of` (the sensor's clock when it asked for the run) plus the time the run has taken since
    `started` (wall clock)."""
    from .ledger import now

    if as_of is None:
        return now
    base = as_of.astimezone(dt.timezone.utc).replace(tzinfo=None) if as_of.tzinfo else as_of
    return lambda: base + (now() - started)
