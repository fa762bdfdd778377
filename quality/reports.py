"""A static HTML report of each gate run, written under $TRUEUP_HOME/reports/gates and linked from
the gate asset's metadata and its contract check.

Per contract and day, `<contract>/<day>.html`: every rule with its parameters (pattern, value
set, range, reference) and its failing-row count; the quarantined rows with the values that
failed (PII masked); a link to the run in the Dagster UI. `index.html` lists every report,
across days and contracts, newest first. `trueup docs` serves the folder on 127.0.0.1, so the
check's `report_url` opens from the UI.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .contracts.rules import Rule
from .pii import mask_record

if TYPE_CHECKING:   # the gate (pandas, DuckDB) is not loaded for a URL: every `trueup` command reads these
    from .gate import GateOutcome

#: where `trueup docs` serves the reports folder (orchestration/cli_docs.py)
DOCS_PORT = 8080
REPORTS_URL_PATH = "/quality"
#: the port `trueup ui` serves the Dagster UI on by default (the CLI's run summaries link there too)
UI_PORT = 3000


def run_url(run_id: str, port: int = UI_PORT) -> str:
    """The run's page in the Dagster UI `trueup ui` serves (on 127.0.0.1, this machine)."""
    return f"http://127.0.0.1:{port}/runs/{run_id}"

_STYLE = ("<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;border-bottom:1px solid #ddd;"
          "text-align:left;vertical-align:top}tr.fail td{background:#fde2e2}code{font-size:90%}</style>")


def report_url(contract_name: str, partition: str, port: int = DOCS_PORT) -> str:
    """The report's address as `trueup docs` serves it."""
    return f"http://127.0.0.1:{port}{REPORTS_URL_PATH}/gates/{contract_name}/{partition}.html"


def index_url(port: int = DOCS_PORT) -> str:
    return f"http://127.0.0.1:{port}{REPORTS_URL_PATH}/gates/index.html"


def rule_parameters(rule: Rule) -> str:
    """What the rule compares with, in words: the pattern, the value set, the range, the reference."""
    parts = []
    if rule.pattern:
        parts.append(f"matches {rule.pattern}")
    if rule.values:
        parts.append("one of " + ", ".join(rule.values))
    if rule.min_value is not None or rule.max_value is not None:
        parts.append(f"between {rule.min_value if rule.min_value is not None else '−∞'} and "
                     f"{rule.max_value if rule.max_value is not None else '∞'}")
    if rule.other:
        parts.append(f"not less than {rule.other}")
    if rule.reference:
        parts.append(f"exists in {rule.reference}")
    if rule.when:
        parts.append(f"only where {rule.when[0]} = {rule.when[1]}")
    return "; ".join(parts)


def write_gate_report(reports_dir: Path, outcome: GateOutcome, partition: str, run_id: str) -> Path:
    c = outcome.contract
    folder = reports_dir / "gates" / c.name
    folder.mkdir(parents=True, exist_ok=True)
    e = html.escape
    rows = "".join(
        f"<tr class={'fail' if outcome.unexpected_counts.get(r.id) else 'ok'}><td>{e(r.id)}</td>"
        f"<td>{e(r.kind)}</td><td>{e(r.column)}</td><td><code>{e(rule_parameters(r))}</code></td>"
        f"<td>{e(r.description)}</td><td>{outcome.unexpected_counts.get(r.id, 0)}</td></tr>"
        for r in c.rules)
    by_id = {r.id: r for r in c.rules}
    sample = outcome.sample if outcome.sample is not None else outcome.quarantined
    sample = sample.head(20) if sample is not None else None
    sample_rows = ""
    if sample is not None:
        for record in sample.to_dict("records"):
            failed = list(record["failed_expectations"])
            shown = mask_record(record, c.pii_columns)   # the offending values, PII masked
            values = "; ".join(f"{col} = {shown.get(col)!r}" for col in
                               dict.fromkeys(by_id[f].column for f in failed if f in by_id))
            sample_rows += (f"<tr><td>{e(str(shown.get(c.key)))}</td><td>{e(', '.join(failed))}</td>"
                            f"<td><code>{e(values)}</code></td></tr>")
    status = "BLOCKED" if outcome.blocked else ("passed" if not outcome.rows_quarantined else "quarantined rows")
    run_link = run_url(run_id)
    page = f"""<!doctype html><meta charset=utf-8><title>{e(c.name)} {e(partition)}</title>{_STYLE}
<p><a href="../index.html">all gate reports</a></p>
<h1>{e(c.name)} v{e(c.version)} — {e(partition)}</h1>
<p>Run <a href="{e(run_link)}">{e(run_id)}</a> (Dagster UI) · {status} ·
{outcome.rows_in} rows in, {outcome.rows_passed} passed, {outcome.rows_quarantined} quarantined
({outcome.failing_share:.2%}); block threshold {c.block_threshold:.0%}.</p>
{f'<p><b>{e(outcome.block_reason)}</b></p>' if outcome.block_reason else ''}
<h2>Expectations</h2><table><tr><th>rule</th><th>kind</th><th>column</th><th>parameters</th><th>meaning</th>
<th>failing rows (GX)</th></tr>{rows}</table>
<h2>Quarantined rows (first 20, PII masked)</h2><table><tr><th>{e(c.key)}</th><th>failed</th>
<th>offending values</th></tr>{sample_rows}</table>"""
    path = folder / f"{partition}.html"
    path.write_text(page, encoding="utf-8")
    (folder / "latest.html").write_text(page, encoding="utf-8")
    statuses = _statuses(folder)
    statuses[partition] = status
    (folder / STATUSES).write_text(json.dumps(statuses, sort_keys=True), encoding="utf-8")
    return path


#: per contract folder: day -> status of its report, for the index (no report is read again)
STATUSES = "statuses.json"


def _statuses(folder: Path) -> dict[str, str]:
    try:
        return json.loads((folder / STATUSES).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def write_index(gates_dir: Path) -> Path:
    """`index.html`: every report (contract × day), newest day first, with its status. The gate
    writes it once per step, after the step's reports."""
    entries = [(day, folder.name, status) for folder in gates_dir.iterdir() if folder.is_dir()
               for day, status in _statuses(folder).items()]
    entries.sort(key=lambda t: (t[0], t[1]), reverse=True)
    e = html.escape
    rows = "".join(f"<tr class={'fail' if status != 'passed' else 'ok'}><td>{e(day)}</td>"
                   f"<td><a href=\"{e(contract)}/{e(day)}.html\">{e(contract)}</a></td><td>{e(status)}</td></tr>"
                   for day, contract, status in entries)
    index = gates_dir / "index.html"
    index.write_text(f"<!doctype html><meta charset=utf-8><title>Gate reports</title>{_STYLE}"
                     f"<h1>Gate reports</h1><table><tr><th>day</th><th>contract</th><th>status</th></tr>"
                     f"{rows}</table>", encoding="utf-8")
    return index
