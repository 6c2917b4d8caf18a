"""``hsanet report``: regenerate docs/RESULTS.md from ablation runs (:mod:`hsanet.evaluation.report`)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from hsanet.cli.errors import UsageError

from hsanet.evaluation.report import __doc__ as REPORT_DOC, build_report


def register(sub) -> None:
    p = sub.add_parser("report", help="regenerate docs/RESULTS.md (ablations vs the paper's claims)",
                       description=REPORT_DOC.split("\n\n")[0])
    p.add_argument("--runs", default="runs/ablations", help="folder of <variant>-s<seed> runs")
    p.add_argument("--out", default="docs/RESULTS.md")
    p.add_argument("--baseline", help="metrics.json of the retrieval baseline on the same split")
    p.add_argument("--recipe", help="markdown file describing the runs' recipe, copied into the report")
    p.add_argument("--collect", action="store_true", help="first write traces.npz for runs that lack one")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    if not Path(args.runs).is_dir():
        raise UsageError(f"--runs {args.runs}: no such folder (it holds one <variant>-s<seed> folder per run)")
    if args.baseline and not Path(args.baseline).is_file():
        raise UsageError(f"--baseline {args.baseline}: no such file (a metrics.json of hsanet baseline retrieval --out)")
    if args.recipe and not Path(args.recipe).is_file():
        raise UsageError(f"--recipe {args.recipe}: no such file")

    command = "hsanet " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["report"] else "hsanet report"
    res = build_report(args.runs, args.out, args.baseline, args.data_dir, args.collect, not args.no_figures,
                       args.recipe, command)
    for c in res["claims"]:
        print(f"{c['verdict']:>40}  {c['claim']}")
    print(f"wrote {args.out}")
    return 0
