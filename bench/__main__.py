"""``python -m bench [ingest|gate|reconcile|publish|intraday|night|distributed|pipeline …]``: dispatch to a
benchmark (default: ingest)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv.pop(0) if argv and not argv[0].startswith("-") else "ingest"
    if cmd == "ingest":
        from bench.ingest import main as ingest_main

        return ingest_main(argv)
    if cmd == "gate":
        from bench.gate import main as gate_main

        return gate_main(argv)
    if cmd == "reconcile":
        from bench.reconcile import main as reconcile_main

        return reconcile_main(argv)
    if cmd == "intraday":
        from bench.intraday import main as intraday_main

        return intraday_main(argv)
    if cmd == "publish":
        from bench.publish import main as publish_main

        return publish_main(argv)
    if cmd == "distributed":
        from bench.distributed import main as distributed_main

        return distributed_main(argv)
    if cmd == "pipeline":
        from bench.pipeline import main as pipeline_main

        return pipeline_main(argv)
    if cmd == "night":
        from bench.night import main as night_main

        return night_main(argv)
    print(f"unknown benchmark {cmd!r}; available: ingest, gate, reconcile, publish, intraday, night, distributed, "
          "pipeline", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
