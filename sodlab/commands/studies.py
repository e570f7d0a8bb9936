"""`sodlab studies`: run the study notebooks headless into results/."""
from __future__ import annotations

import argparse
import logging

from ._common import parse_assignments

NAME = "studies"
HELP = "run the study notebooks headless (executed notebooks, figures, tables and findings go to results/)"

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="mode",
                      help="quick mode: proves every code path in minutes, too small to conclude anything (same as --mode quick)")
    size.add_argument("--mode", choices=["quick", "standard", "full"], default=None,
                      help="quick (CI, minutes), standard (CPU, meaningful, <= 2 h for all) or full (GPU, real data); default quick")
    p.add_argument("--only", nargs="+", metavar="NAME", default=None,
                   help="run only these notebooks: full name, number (4) or name prefix (category)")
    p.add_argument("--results", metavar="DIR", default=None, help="results folder (default: results/ at the repository root)")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="a dataset root (DUTS-TR/DUTS-TE/ECSSD layout, see data/README.md); default: the built-in generated benchmark")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set another notebook parameter (a Python literal or a string), e.g. -p checkpoint=csnet-L-x2.pth.tar")
    p.add_argument("--resume", action="store_true", help="skip notebooks whose last run succeeded with the same parameters")
    p.add_argument("--timeout", type=int, default=None, metavar="SECONDS", help="limit per cell (default: none)")
    p.add_argument("--notebooks", metavar="DIR", default=None, help="notebooks folder (default: notebooks/ at the repository root)")
    p.add_argument("--list", action="store_true", help="list the notebooks and exit")
    p.add_argument("--sync", action="store_true", help="rewrite each notebook's paired .ipynb (no outputs) from its .py script and exit")
    p.add_argument("--check-sync", action="store_true", help="exit 1 if a paired .ipynb is missing or differs from its script")
    p.add_argument("--docs", action="store_true",
                   help="after running, copy each notebook's key figure into docs/, write docs/findings.md and the findings block of README.md")
    p.add_argument("--docs-only", action="store_true", help="only regenerate docs/ from the findings already in the results folder")


def run(args: argparse.Namespace) -> int:
    from .. import studies

    if args.list:
        for script in studies.discover_notebooks(args.notebooks):
            print(f"{script.stem:32s} {studies.notebook_title(script)}")
        return 0
    if args.sync:
        written = studies.sync_notebooks(args.notebooks)
        for path in written:
            print(f"wrote {path}")
        print(f"{len(written)} notebook(s) updated")
        return 0
    if args.check_sync:
        stale = studies.out_of_sync(args.notebooks)
        for name in stale:
            print(f"{name}: paired .ipynb missing or out of date (run `sodlab studies --sync`)")
        return 1 if stale else 0
    if args.docs_only:
        path = studies.regenerate_docs(args.results, notebooks_dir=args.notebooks, readme=studies.default_readme())
        print(f"wrote {path}")
        return 0

    extra = parse_assignments(args.param, "--param")
    runs = studies.run_studies(
        only=args.only,
        mode=args.mode or "quick",
        data_root=args.data,
        device=args.device,
        results_dir=args.results,
        notebooks_dir=args.notebooks,
        extra_params=extra,
        timeout=args.timeout,
        resume=args.resume,
    )
    print(studies.summary_table(runs))
    failed = [r for r in runs if not r.ok]
    for r in failed:
        print(f"FAILED {r.name}: {r.failure} -- see {r.executed}")
    if args.docs:
        path = studies.regenerate_docs(args.results, notebooks_dir=args.notebooks, readme=studies.default_readme())
        print(f"wrote {path}")
    return 1 if failed else 0


def resume_hint(args: argparse.Namespace) -> str:
    return "add --resume to the same command to skip the notebooks that already finished"
