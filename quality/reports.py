"""A static HTML report of each gate run (the equivalent of GX Data Docs for our suites),
written under $TRUEUP_HOME/reports/gates and linked from the asset's metadata."""
from __future__ import annotations

import html
from pathlib import Path

from .gate import GateOutcome
from .pii import mask_record


def write_gate_report(reports_dir: Path, outcome: GateOutcome, partition: str, run_id: str) -> Path:
    c = outcome.contract
    folder = reports_dir / "gates" / c.name
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"<tr class={'fail' if outcome.unexpected_counts.get(r.id) else 'ok'}><td>{html.escape(r.id)}</td>"
        f"<td>{html.escape(r.kind)}</td><td>{html.escape(r.column)}</td>"
        f"<td>{html.escape(r.description)}</td><td>{outcome.unexpected_counts.get(r.id, 0)}</td></tr>"
        for r in c.rules)
    sample = outcome.sample if outcome.sample is not None else outcome.quarantined
    sample = sample.head(20) if sample is not None else None
    sample_rows = "" if sample is None else "".join(
        f"<tr><td>{html.escape(str(rec.get(c.key)))}</td><td>{html.escape(', '.join(rec['failed_expectations']))}"
        f"</td></tr>" for rec in (mask_record(r, c.pii_columns) | {"failed_expectations": r["failed_expectations"]}
                                  for r in sample.to_dict("records")))
    status = "BLOCKED" if outcome.blocked else ("passed" if not outcome.rows_quarantined else "quarantined rows")
    page = f"""<!doctype html><meta charset=utf-8><title>{html.escape(c.name)} {partition}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd}}
tr.fail td{{background:#fde2e2}}</style>
<h1>{html.escape(c.name)} v{html.escape(c.version)} — {partition}</h1>
<p>Run {html.escape(run_id)} · {status} · {outcome.rows_in} rows in, {outcome.rows_passed} passed,
{outcome.rows_quarantined} quarantined ({outcome.failing_share:.2%}); block threshold {c.block_threshold:.0%}.</p>
{f'<p><b>{html.escape(outcome.block_reason)}</b></p>' if outcome.block_reason else ''}
<h2>Expectations</h2><table><tr><th>rule</th><th>kind</th><th>column</th><th>meaning</th>
<th>unexpected (GX)</th></tr>{rows}</table>
<h2>Quarantined rows (first 20, PII masked)</h2><table><tr><th>{html.escape(c.key)}</th>
<th>failed</th></tr>{sample_rows}</table>"""
    path = folder / f"{partition}.html"
    path.write_text(page, encoding="utf-8")
    (folder / "latest.html").write_text(page, encoding="utf-8")
    return path
