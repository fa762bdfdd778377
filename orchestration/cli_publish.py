"""`trueup publish --dry-run`: the writes the publishing pass would make, without making them.

The pass itself (assets/publish/run.py `publish(..., dry_run=True)`) plans from the validated
data and the ERP as they are now, checks the outbound contracts and returns before the ledger
or any system of record is touched. It is called directly rather than as a Dagster run: a run
would record materializations of the publish assets that wrote nothing. Publishing for real
happens in `trueup nightly` (and the intraday runs)."""
from __future__ import annotations

import datetime as dt
import uuid

from trueup.orchestration.commands import CliError, iso_date
from trueup.orchestration.config import Settings


def add_publish_arguments(parser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="list the writes, write nothing (required)")
    parser.add_argument("--date", type=iso_date, default=None,
                        help="business day the pass runs for: deals closed up to it (default: yesterday)")


def cmd_publish(args, settings: Settings) -> None:
    if not args.dry_run:
        raise CliError("publishing writes only inside `trueup nightly`; `trueup publish --dry-run` lists what it "
                       "would write")
    day = args.date or (dt.date.today() - dt.timedelta(days=1))
    s = dry_run(settings, day)
    cur = settings.reporting_currency
    rows = [(w.idempotency_key, f"{w.target_system} {w.target_object}", _amount(w), "send", "")
            for w in s.would_send]
    rows += [(w.idempotency_key, f"{w.target_system} {w.target_object}", _amount(w), state.replace("_", " "), why)
             for w, state, why in s.would_hold]
    print(f"publish dry run for {day} (deals closed {settings.publish_from} .. {day}); nothing is written")
    if not rows:
        print("no writes planned")
    else:
        heads = ("key", "target", "amount", "action")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
        line = lambda v: "  ".join([v[0].ljust(widths[0]), v[1].ljust(widths[1]), v[2].rjust(widths[2]),  # noqa: E731
                                    v[3].ljust(widths[3]), v[4]]).rstrip()
        print("\n".join([line(heads + ("why",)), line(tuple("-" * w for w in widths) + ("",))]
                        + [line(r) for r in rows]))
    print(_total(s, cur))


def dry_run(settings: Settings, day: dt.date):
    """The pass's PublishSummary for `day`, as a dry run (nothing recorded, nothing sent)."""
    from trueup.assets.publish.run import publish
    from trueup.connectors.erp_schema import make_erp_engine
    from trueup.orchestration.warehouse_session import warehouse_session

    engine = make_erp_engine(settings.erp_url)
    try:
        with warehouse_session(settings.warehouse_url) as wh:
            if not _has_validated(wh):
                raise CliError("nothing synced yet (no validated tables): run `trueup sync` or `trueup nightly` first")
            return publish(wh, engine, None, home=settings.home, through=day, first_day=day,
                           publish_from=settings.publish_from, reporting_currency=settings.reporting_currency,
                           run_id=f"dry-run-{uuid.uuid4()}", tz=settings.timezone, dry_run=True)
    finally:
        engine.dispose()


def _has_validated(wh) -> bool:
    return bool(wh.query_df("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'validated' "
                            "AND table_name = 'crm_deals'").iat[0, 0])


def _amount(w) -> str:
    amount = w.payload.get("total_amount")
    if amount is None:
        return "-"
    return f"{float(amount):,.2f} {w.payload.get('currency') or ''}".rstrip()


def _total(s, cur: str) -> str:
    """The closing line: counts by target and the orders' money, per currency and in the reporting one."""
    from trueup.assets.publish.money import to_reporting

    by_target: dict[str, int] = {}
    for w in s.would_send:
        by_target[w.target_object] = by_target.get(w.target_object, 0) + 1
    money: dict[str, float] = {}
    for w in s.would_send:
        if w.payload.get("total_amount") is not None:
            c = w.payload.get("currency") or cur
            money[c] = money.get(c, 0.0) + float(w.payload["total_amount"])
    in_cur = sum(to_reporting(v, c, cur) for c, v in money.items())
    sends = ", ".join(f"{n} {t.replace('_', ' ')}" for t, n in sorted(by_target.items())) or "nothing"
    text = f"total: would send {len(s.would_send)} writes ({sends})"
    if money:
        text += (f", orders worth {cur} {in_cur:,.2f}"
                 + (f" ({'; '.join(f'{c} {v:,.2f}' for c, v in sorted(money.items()))})" if set(money) != {cur} else ""))
    held = sum(st == "held" for _, st, _ in s.would_hold)
    text += f"; would hold {held} for a person, {len(s.would_hold) - held} awaiting approval"
    if s.quarantined:
        text += f"; {s.quarantined} fail the outbound contracts (would be quarantined)"
    return text + "; the CRM write-backs follow the ERP writes and are not listed"
