"""Great Expectations' own Data Docs for the gates: each gate result kept as a GX validation result
in a file-backed GX context beside the gate reports, and its page rendered by GX.

Where: the GX project `$TRUEUP_HOME/reports/gx` (one per Trueup home, so per warehouse); its site
`gx/uncommitted/data_docs/local_site/`, which `trueup docs` serves under /quality/ (and whose
index it rebuilds when it starts). Each gate asset's check links to its last day's page
(`data_docs_url`) and to the site's index.

What GX is given: the contract's suite as its versioned suite file has it (quality/suite_files:
a reference key set as a suite parameter), stored in the context's suite store; and per
expectation the counts the gate proved equal to GX's own over the whole batch (rows, unexpected
rows, their share) with up to PARTIAL_VALUES offending values, PII masked. The gate validates a
batch in chunks in a worker process (quality/gx_worker.py), so no single GX validation covers the
batch: the result is assembled from the counts GX agreed to. Row-level quarantine stays the
platform's own (quality.quarantine, and the gate reports in quality/reports.py).

A gate step keeps its results and renders nothing: each page is rendered by GX the first time it
is asked for (`render_page`, called by `trueup docs`'s server for a page not there yet), or when
`trueup docs` starts and rebuilds the index (GX's index lists the rendered pages). A page is a view
of the kept result; rendering it in the step cost a small night's seven gates 0.45–0.62 s against
0.07 s for keeping alone (bench night, both in one process, alternating), and grew with the
history: GX lists every kept result for each page it renders.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path

from .gate import GateOutcome
from . import gx_adapter
from .gx_adapter import import_gx
from .pii import mask_record
from .reports import DOCS_PORT, REPORTS_URL_PATH

#: the GX project folder under the reports folder (GX names it gx/)
GX_DIR = "gx"
SITE = "local_site"
SITE_PATH = Path(GX_DIR) / "uncommitted" / "data_docs" / SITE
PARTIAL_VALUES = 20


def data_docs_context(reports_dir: Path):
    """The file-backed GX context of this home's gate results (created on first use). One per
    folder and process: GX reads and parses its project's YAML for every context it builds (~0.1 s,
    a seventh of a small night's gate steps), and the context's stores read their files on every
    access, so a kept context sees what other processes wrote."""
    key = (str(reports_dir.resolve()), os.getpid())
    context = _CONTEXTS.get(key)
    if context is None or not (reports_dir / GX_DIR / "great_expectations.yml").exists():
        gx = import_gx()
        gx_adapter.adjust()   # among others: Data Docs templates compiled once per process
        reports_dir.mkdir(parents=True, exist_ok=True)
        context = _CONTEXTS[key] = gx.get_context(mode="file", project_root_dir=str(reports_dir))
    return context


_CONTEXTS: dict = {}


def page_url(reports_dir: Path, page: Path, port: int = DOCS_PORT) -> str:
    """A Data Docs page's address as `trueup docs` serves the reports folder."""
    return f"http://127.0.0.1:{port}{REPORTS_URL_PATH}/{page.relative_to(reports_dir).as_posix()}"


def index_url(port: int = DOCS_PORT) -> str:
    return f"http://127.0.0.1:{port}{REPORTS_URL_PATH}/{(SITE_PATH / 'index.html').as_posix()}"


def keep_results(reports_dir: Path, outcomes: dict[str, GateOutcome], run_id: str) -> dict[str, str]:
    """Store one GX validation result per partition's outcome; returns {partition: the URL of its
    Data Docs page}, which `trueup docs` renders when it is first asked for (render_page)."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    if not outcomes:
        return {}
    context = data_docs_context(reports_dir)
    contract = next(iter(outcomes.values())).contract
    suite, suite_changed = _stored_suite(context, contract)
    keys = {}
    for partition, outcome in outcomes.items():
        run = RunIdentifier(run_name=run_id, run_time=outcome.evaluated_at.replace(tzinfo=dt.timezone.utc))
        key = ValidationResultIdentifier(ExpectationSuiteIdentifier(contract.name), run, partition)
        context.validation_results_store.set(key, validation_result(suite, outcome, partition, run, run_id))
        keys[partition] = key
    site = reports_dir / SITE_PATH
    if suite_changed:   # its page, if rendered, shows the old suite: rendered again when next asked for
        (site / _page_path(ExpectationSuiteIdentifier(contract.name))).unlink(missing_ok=True)
    return {p: page_url(reports_dir, site / _page_path(k)) for p, k in keys.items()}


def render_page(reports_dir: Path, page: Path) -> bool:
    """Render the Data Docs page `page` (a path under the reports folder) if it is the page of a
    kept result or suite and is not rendered yet; whether the page exists now. Thread-safe (the
    docs server answers requests in threads; a GX context is not)."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    path = reports_dir / page
    if path.exists():
        return True
    try:
        parts = page.relative_to(SITE_PATH).with_suffix("").parts
    except ValueError:
        return False
    if page.suffix != ".html" or len(parts) < 2 or not (reports_dir / GX_DIR).exists():
        return False
    with _RENDERING:
        if path.exists():
            return True
        context = data_docs_context(reports_dir)
        try:
            if parts[0] == "validations" and len(parts) >= 5:
                key = ValidationResultIdentifier.from_tuple(parts[1:])
                known = context.validation_results_store.has_key(key)
            elif parts[0] == "expectations":
                key = ExpectationSuiteIdentifier.from_tuple(parts[1:])
                known = context.expectations_store.has_key(key)
            else:
                return False
        except ValueError:   # not a page GX names (e.g. a run time that is not one)
            return False
        if not known or (reports_dir / SITE_PATH / _page_path(key)) != path:
            return False
        context.build_data_docs(site_names=[SITE], build_index=False, resource_identifiers=[key])
    return path.exists()


_RENDERING = threading.Lock()


def _page_path(key) -> Path:
    """A result's or suite's page under the site, as GX names it (the suite's name split at its dots)."""
    from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

    *folders, name = key.to_tuple()
    return Path("validations" if isinstance(key, ValidationResultIdentifier) else "expectations", *folders, f"{name}.html")


def build_index(reports_dir: Path) -> Path | None:
    """GX's index of every kept result (for `trueup docs`), with the pages not rendered yet (GX's
    index lists the rendered pages); None while nothing was kept."""
    if not (reports_dir / GX_DIR).exists():
        return None
    context = data_docs_context(reports_dir)
    keys = context.validation_results_store.list_keys()
    if not keys:
        return None
    site = reports_dir / SITE_PATH
    missing = [k for k in [*keys, *context.expectations_store.list_keys()] if not (site / _page_path(k)).exists()]
    # at least the newest page: an empty list would make GX re-render every page
    pages = missing or [max(keys, key=lambda k: k.run_id.run_time)]
    with _RENDERING:
        context.build_data_docs(site_names=[SITE], resource_identifiers=pages, build_index=True)
    return site / "index.html"


def _stored_suite(context, contract):
    """(The contract's suite as its suite file has it, in the context's suite store (expectation
    pages of the Data Docs), whether it was written now); built and written again only when the
    contract changed (a suite GX knows by name is saved again on every expectation added to it)."""
    from .suite_files import suite_dict

    gx = import_gx()
    try:
        kept = context.suites.get(contract.name)
    except Exception:  # noqa: BLE001 - GX's own not-found error (its class moved between releases)
        kept = None
    if kept is not None:
        if kept.meta.get("fingerprint") == contract.fingerprint():
            return kept, False
        context.suites.delete(contract.name)
    suite = gx.ExpectationSuite(**json.loads(json.dumps(suite_dict(contract), default=str)))
    return context.suites.add(suite), True


def validation_result(suite, outcome: GateOutcome, partition: str, run, run_id: str):
    """GX's validation result of one partition's batch, from the gate's proven counts."""
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult

    from .reports import run_url

    rules = {r.id: r for r in outcome.contract.rules}
    results = []
    for expectation in suite.expectations:
        rule_id = (expectation.meta or {}).get("rule")
        failing = int(outcome.unexpected_counts.get(rule_id, 0))
        rows = int(outcome.rows_in)
        results.append(ExpectationValidationResult(
            success=failing == 0, expectation_config=expectation.configuration,
            result={"element_count": rows, "unexpected_count": failing,
                    "unexpected_percent": (100.0 * failing / rows) if rows else 0.0,
                    "partial_unexpected_list": _offending_values(outcome, rules.get(rule_id), rule_id)}))
    passed = sum(r.success for r in results)
    return ExpectationSuiteValidationResult(
        success=passed == len(results), results=results, suite_name=suite.name,
        statistics={"evaluated_expectations": len(results), "successful_expectations": passed,
                    "unsuccessful_expectations": len(results) - passed,
                    "success_percent": 100.0 * passed / len(results) if results else 100.0},
        meta={"run_id": run, "dagster_run_id": run_id, "dagster_run_url": run_url(run_id),
              "partition": partition, "contract_version": outcome.contract.version,
              "rows_in": outcome.rows_in, "rows_quarantined": outcome.rows_quarantined, "blocked": outcome.blocked,
              "batch_spec": {"data_asset_name": f"raw.{outcome.contract.object}", "partition": partition}})


def _offending_values(outcome: GateOutcome, rule, rule_id: str) -> list:
    """Up to PARTIAL_VALUES values of the rule's column among the quarantined rows the gate kept
    as its sample, PII masked."""
    sample = outcome.sample if outcome.sample is not None else outcome.quarantined
    if rule is None or sample is None or sample.empty or rule.column not in sample.columns:
        return []
    failed = sample[sample["failed_expectations"].map(lambda f: rule_id in list(f))]
    return [mask_record({rule.column: v}, outcome.contract.pii_columns)[rule.column]
            for v in failed[rule.column].head(PARTIAL_VALUES).tolist()]
