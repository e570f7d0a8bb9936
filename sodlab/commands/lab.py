"""`sodlab lab`: open the study notebooks in JupyterLab with this environment's kernel."""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from ..errors import ConfigError

NAME = "lab"
HELP = "open the study notebooks in JupyterLab (the way to explore the studies and their live controls)"
DESCRIPTION = (HELP + ". JupyterLab runs from this environment, so the notebooks' kernel is the Python that has sodlab; "
               "the notebooks run in quick mode unless their `mode` parameter is changed. Extra arguments after `--` "
               "go to JupyterLab (e.g. `sodlab lab -- --ServerApp.token=...`).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--notebooks", metavar="DIR", default=None, help="notebooks folder (default: notebooks/ at the repository root)")
    p.add_argument("--port", type=int, default=None, help="port to listen on (default: JupyterLab's, 8888 or the next free one)")
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser (print the address to open instead)")
    p.add_argument("--print-command", action="store_true", help="print the JupyterLab command line and exit")
    p.add_argument("lab_args", nargs=argparse.REMAINDER, help="arguments for JupyterLab, after --")


def lab_command(notebooks: Path, port: int | None = None, ip: str = "127.0.0.1", browser: bool = True,
                extra: list[str] | None = None) -> list[str]:
    """The command line that starts JupyterLab on ``notebooks`` with this interpreter."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={notebooks}", f"--ServerApp.ip={ip}"]
    if port is not None:
        cmd.append(f"--ServerApp.port={port}")
    if not browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # containers and CI run as root, which JupyterLab refuses unless told; it listens on
        # localhost only unless --ip says otherwise
        cmd.append("--ServerApp.allow_root=True")
    return cmd + [a for a in (extra or []) if a != "--"]


def lab_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for JupyterLab: this environment's kernel specs first (scripts/setup.sh
    installs ``python3`` there), so that a ``python3`` kernel of another Python installed
    for the user does not run the notebooks."""
    env = dict(os.environ if base is None else base)
    share = Path(sys.prefix) / "share" / "jupyter"
    if (share / "kernels").is_dir():
        env["JUPYTER_PATH"] = os.pathsep.join([str(share), *filter(None, [env.get("JUPYTER_PATH")])])
    return env


def run(args: argparse.Namespace) -> int:
    from ..studies.paths import default_notebooks_dir

    notebooks = Path(args.notebooks).expanduser().resolve() if args.notebooks else default_notebooks_dir()
    if not notebooks.is_dir():
        raise ConfigError(f"{notebooks}: no notebooks folder (pass --notebooks DIR)")
    cmd = lab_command(notebooks, args.port, args.ip, not args.no_browser, args.lab_args)
    if args.print_command:
        print(" ".join(cmd))
        return 0
    missing = [m for m in ("jupyterlab", "ipywidgets") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not installed in {sys.prefix}: run `bash scripts/setup.sh` "
                          f"(or pip install {' '.join(missing)})")
    # JupyterLab handles Ctrl-C itself (it asks to confirm); its exit code is ours.
    return subprocess.call(cmd, env=lab_env())
