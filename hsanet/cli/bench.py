"""``hsanet bench``: latency, throughput and scaling benchmarks (:mod:`hsanet.bench`)."""
from __future__ import annotations

import json
from pathlib import Path

from hsanet.bench import SECTIONS, run
from hsanet.bench.core import Report, Row, json_default
from hsanet.cli.errors import UsageError, check_at_least


def cmd_bench(args) -> int:
    check_at_least(("--runs", args.runs, 1), ("--threads", args.threads, 0), ("--app-runs", args.app_runs, 1))
    if args.json != "-" and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"--json {args.json}: the folder {Path(args.json).resolve().parent} does not exist")
    if args.sections is not None and not [x for x in args.sections.split(",") if x.strip()]:
        raise UsageError(f"--sections: give at least one of {','.join(SECTIONS)} (analysis = latency)")
    if args.checkpoint and not Path(args.checkpoint).is_dir():
        raise UsageError(f"--checkpoint {args.checkpoint}: no such checkpoint folder")
    res = run(args)
    print(f"HSA-Net benchmark: model {res['model']}, device {res['device']}, "
          f"{res['machine']['processor']} ({res['machine']['cpu_count']} CPUs, torch threads "
          f"{res['machine']['torch_threads']}), median of {res['runs']} runs after {res['warmup']} warm-up runs")
    rows = [Row(**r) for r in res["rows"]]
    rep = Report(res["quick"])
    rep.rows = rows
    print(rep.table())
    print("\ntargets:")
    for key, t in res["targets"].items():
        v = t["value"]
        shown = "not measured" if v is None else f"{v:.4g}"
        verdict = "" if t["met"] is None else ("met" if t["met"] else "MISSED")
        print(f"  {key:<22} {shown:>14}  target {t['target']:<8} {verdict}  ({t['what']})")
    for section, why in res["skipped"].items():
        print(f"  skipped {section}: {why}")
    text = json.dumps(res, indent=2, default=json_default)
    if args.json == "-":
        print(text)
    else:
        Path(args.json).write_text(text + "\n")
        print(f"\nwrote {args.json} ({res['wall_s']} s)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("bench", help="latency, throughput and scaling benchmarks (table + JSON)")
    p.add_argument("--quick", action="store_true", help="3 runs, no app, shortened sections (< 60 s; smoke runs)")
    p.add_argument("--json", default="bench.json", help="JSON output file ('-' for stdout; default bench.json)")
    p.add_argument("--checkpoint", help="model under test (default: assets/hsanet-default, else untrained)")
    p.add_argument("--runs", type=int, help="timed runs per measurement (default 20, --quick 3)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--sections", help=f"comma-separated subset of {','.join(SECTIONS)} (analysis = latency)")
    p.add_argument("--app", dest="app", action="store_true", default=None,
                   help="measure the app's cold start (default: on, off with --quick)")
    p.add_argument("--no-app", dest="app", action="store_false")
    p.add_argument("--app-runs", type=int, help="cold starts to time (default: --runs)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler tables of the headline paths first")
    p.add_argument("--reference", help="reference set folder for the map section (default assets/reference)")
    p.add_argument("--data-dir", help="data folder (default ../shared/data or $HSANET_DATA)")
    p.set_defaults(func=cmd_bench)
