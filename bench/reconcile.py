"""Reconciliation benchmark: 5M vs 5M rows, ~1% missing on each side, ~1% amount mismatches.

Steps (each in its own subprocess, so peak RSS is the step's own):
- floor:  a bare DuckDB FULL OUTER JOIN on the key producing the differing keys;
- recon:  Trueup's break-finding SQL (the source_vs_warehouse key-level comparison: columns compared
          IS DISTINCT FROM, decimal amounts, break type per key, staged into recon_found) through SQLAlchemy —
          then, separately timed, the stateful merge into recon.breaks (assets/reconcile/store.py);
- pandas: pandas outer merge with indicator on the same data (read time reported apart).

    .venv/bin/python -m bench reconcile [--rows 5000000] [--workdir /tmp/trueup-bench-recon]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(workdir: Path, rows: int) -> Path:
    import duckdb
    db = workdir / "recon_bench.duckdb"
    if db.exists():
        db.unlink()
    con = duckdb.connect(str(db))
    n = int(rows / 0.99)  # so each side has about `rows` rows after its 1% drop
    con.execute("CREATE SCHEMA raw")
    # text columns, as in the warehouse; keys dropped / amounts changed by i % 100
    con.execute(f"""CREATE TABLE raw.src AS SELECT 'K' || lpad(CAST(i AS VARCHAR), 9, '0') AS k,
        CAST(CAST(round((i * 7919 % 1000000) / 100.0, 2) AS DECIMAL(18,2)) AS VARCHAR) AS amount,
        'USD' AS currency, '2026-10-01T00:00:00.000000Z' AS updated_at
        FROM range({n}) t(i) WHERE i % 100 <> 1""")
    con.execute(f"""CREATE TABLE raw.wh AS SELECT 'K' || lpad(CAST(i AS VARCHAR), 9, '0') AS k,
        CAST(CAST(round((i * 7919 % 1000000) / 100.0, 2) + CASE WHEN i % 100 = 3 THEN 1.5 ELSE 0 END
             AS DECIMAL(18,2)) AS VARCHAR) AS amount,
        'USD' AS currency, '2026-10-01T00:00:00.000000Z' AS updated_at
        FROM range({n}) t(i) WHERE i % 100 <> 2""")
    counts = con.execute("SELECT (SELECT count(*) FROM raw.src), (SELECT count(*) FROM raw.wh)").fetchone()
    con.close()
    return db, counts


def step_floor(db: Path) -> dict:
    import duckdb
    con = duckdb.connect(str(db))
    t = time.perf_counter()
    con.execute("CREATE TEMP TABLE diff AS SELECT coalesce(s.k, w.k) AS k FROM raw.src s FULL OUTER JOIN raw.wh w "
                "ON s.k = w.k WHERE s.k IS NULL OR w.k IS NULL OR s.amount <> w.amount")
    n = con.execute("SELECT count(*) FROM diff").fetchone()[0]
    return {"seconds": time.perf_counter() - t, "breaks": n}


def step_recon(db: Path) -> dict:
    import sqlalchemy as sa

    from trueup.assets.reconcile.config import ReconSettings
    from trueup.assets.reconcile.rules import BASE_COLUMNS, RuleContext
    from trueup.assets.reconcile.sql import num
    from trueup.assets.reconcile.store import create_found_table, ensure_recon_tables, merge_breaks
    from trueup.connectors.warehouse import Warehouse

    wh = Warehouse(f"duckdb:///{db}")
    out = {}
    with wh.begin() as conn:
        ensure_recon_tables(conn)
        create_found_table(conn)
        ctx = RuleContext(conn, wh.dialect, ReconSettings(), __import__("datetime").date(2026, 10, 2))
        t = time.perf_counter()
        # the same shape as rules/source_warehouse.compare_object's key-level step
        from trueup.assets.reconcile.rules.source_warehouse import differs
        side = "SELECT k, amount AS c_0, currency AS c_1, updated_at AS c_2, amount, currency FROM raw.{t}"
        ctx.found("SELECT CASE WHEN w.k IS NULL THEN 'missing_key' WHEN s.k IS NULL THEN 'extra_key' "
                  "ELSE 'content_mismatch' END, 'bench:' || coalesce(s.k, w.k), 'source', 'warehouse', "
                  f"{num('duckdb', 's.amount')}, {num('duckdb', 'w.amount')}, "
                  f"abs(coalesce({num('duckdb', 's.amount')}, 0) - coalesce({num('duckdb', 'w.amount')}, 0)), "
                  "coalesce(s.currency, w.currency), NULL "
                  f"FROM ({side.format(t='src')}) s FULL OUTER JOIN ({side.format(t='wh')}) w ON s.k = w.k "
                  f"WHERE s.k IS NULL OR w.k IS NULL OR {differs(3)}", BASE_COLUMNS)
        out["seconds"] = time.perf_counter() - t
        out["breaks"] = conn.execute(sa.text("SELECT count(*) FROM recon_found")).scalar()
        t = time.perf_counter()
        counts = merge_breaks(conn, "bench", "all", "bench-run", __import__("datetime").datetime(2026, 10, 2), "USD")
        out["merge_seconds"] = time.perf_counter() - t
        out["opened"] = counts["breaks_opened"]
    return out


def step_pandas(db: Path) -> dict:
    import duckdb
    con = duckdb.connect(str(db), read_only=True)
    t = time.perf_counter()
    s = con.execute("SELECT * FROM raw.src").df()
    w = con.execute("SELECT * FROM raw.wh").df()
    read = time.perf_counter() - t
    t = time.perf_counter()
    m = s.merge(w, on="k", how="outer", suffixes=("_s", "_w"), indicator=True)
    diff = m[(m["_merge"] != "both") | (m["amount_s"] != m["amount_w"])]
    return {"seconds": time.perf_counter() - t, "read_seconds": read, "breaks": len(diff)}


STEPS = {"floor": step_floor, "recon": step_recon, "pandas": step_pandas}


def _child(step: str, db: str) -> int:
    res = STEPS[step](Path(db))
    res["peak_rss_mb"] = round(_rss_mb(), 1)
    print(json.dumps(res))
    return 0


def _spawn(step: str, db: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "bench.reconcile", "--child", step, str(db)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return _child(argv[1], argv[2])
    p = argparse.ArgumentParser(prog="python -m bench reconcile")
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/trueup-bench-recon"))
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    a.workdir.mkdir(parents=True, exist_ok=True)
    db, counts = prepare(a.workdir, a.rows)
    print(f"rows: source {counts[0]:,}  warehouse {counts[1]:,}")
    results = {}
    for step in ("floor", "recon", "pandas"):
        runs = [_spawn(step, db) for _ in range(a.repeat if step != "pandas" else 1)]
        best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]  # median
        results[step] = {**best, "runs_seconds": [round(r["seconds"], 3) for r in runs]}
        extra = f"  merge into recon.breaks {best['merge_seconds']:.2f} s" if "merge_seconds" in best else ""
        extra += f"  (read {best['read_seconds']:.2f} s)" if "read_seconds" in best else ""
        extra += "  runs " + ", ".join(f"{r['seconds']:.2f}" for r in runs) if len(runs) > 1 else ""
        print(f"{step:7s} {best['seconds']:6.2f} s  peak RSS {best['peak_rss_mb']:7.0f} MB  "
              f"breaks {best['breaks']:,}{extra}")
    ratio = results["recon"]["seconds"] / results["floor"]["seconds"]
    print(f"recon / floor = {ratio:.2f}x (target <= 1.5x); pandas / floor = "
          f"{results['pandas']['seconds'] / results['floor']['seconds']:.1f}x")
    # every run's ratio too (run i's recon over run i's floor): "stable over three runs"
    pairs = zip(results["recon"]["runs_seconds"], results["floor"]["runs_seconds"])
    print("recon / floor per run: " + ", ".join(f"{r / f:.2f}x" for r, f in pairs))
    out = REPO / "bench" / "results" / "reconcile.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": a.rows, "results": results, "recon_over_floor": ratio}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
