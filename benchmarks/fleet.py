"""The full-size fleet (issue 16): 200 worker processes (`--count 4`) and 2 orchestrators on a
private Postgres of max_connections 100, through PgBouncer; idle cost, pickup, a 20,000-job
drain, a second drain with 20 workers SIGKILLed, and the claims one NOTIFY causes. Needs root
(a private cluster), Debian's pgbouncer and postgresql-15; about 5 minutes on 2 cores.

    .venv/bin/python benchmarks/fleet.py [--workers 200] [--jobs 20000] [--kill 20] [--json F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's tests/

from tests.e2e import fleet


def main() -> int:
    spec = fleet.FleetSpec()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(spec):
        kind = type(getattr(spec, f.name))
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=kind, default=getattr(spec, f.name)
        )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    chosen = {f.name: getattr(args, f.name) for f in dataclasses.fields(spec)}
    report = fleet.run(fleet.FleetSpec(**chosen), Path(tempfile.mkdtemp(prefix="queuectl-fleet-")))
    out = {"spec": chosen, "figures": report.figures, "problems": report.problems}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
