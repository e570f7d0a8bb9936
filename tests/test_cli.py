"""The command line's own behaviour: warnings as one log line, and interruptions reported
whole whatever the user presses meanwhile."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sodlab.commands._common import parse_assignments
from sodlab.errors import ConfigError


def test_a_warning_is_one_log_line_without_the_source_line(repo_env):
    code = ("import sys, warnings\nfrom sodlab import cli\n"
            "def run(a):\n    warnings.warn('masks in /x are 0/1', UserWarning)\n    return 0\n"
            "class M:\n NAME='fake'; HELP='h'\n add_arguments=staticmethod(lambda p: None)\n run=staticmethod(run)\n"
            "cli._command_modules = lambda: [M]\n"
            "sys.argv = ['sodlab', 'fake']\n"
            "sys.exit(cli.console_main())\n")
    r = subprocess.run([sys.executable, "-c", code], env=repo_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "WARNING: masks in /x are 0/1\n", r.stderr


def test_a_second_ctrl_c_while_the_interruption_is_reported_is_ignored(repo_env):
    # In a child process: without the fix the second Ctrl-C escapes as KeyboardInterrupt,
    # which inside pytest itself would stop the whole session.
    code = ("import signal, sys\nfrom sodlab import cli\n"
            "def run(a):\n    raise KeyboardInterrupt\n"
            "def hint(a):\n    signal.raise_signal(signal.SIGINT)\n    return 'run it again'\n"
            "class M:\n NAME='fake'; HELP='h'\n add_arguments=staticmethod(lambda p: None)\n"
            " run=staticmethod(run); resume_hint=staticmethod(hint)\n"
            "cli._command_modules = lambda: [M]\n"
            "before = signal.getsignal(signal.SIGINT)\n"
            "rc = cli.main(['fake'])\n"
            "print('restored' if signal.getsignal(signal.SIGINT) is before else 'not restored')\n"
            "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code], env=repo_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip() == "sodlab fake: interrupted; run it again"
    assert r.stdout.strip() == "restored"


def test_an_interrupted_command_exits_130_in_a_real_process(repo_env):
    code = ("import sys\nfrom sodlab import cli\n"
            "class M:\n NAME='fake'; HELP='h'\n add_arguments=staticmethod(lambda p: None)\n"
            " run=staticmethod(lambda a: (_ for _ in ()).throw(KeyboardInterrupt))\n"
            "cli._command_modules = lambda: [M]\n"
            "sys.exit(cli.main(['fake']))\n")
    r = subprocess.run([sys.executable, "-c", code], env=repo_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 130 and r.stderr.strip() == "sodlab fake: interrupted", r.stderr


def test_one_key_value_parser_for_every_command():
    got = parse_assignments(["x=[1, 2]", "ckpt=/a/b.pth.tar", "flag=true", "py=True", "t=(1, 2)", "image-size=64",
                             "name=csnet", "f=1e-3", "s='quoted'", "empty="], "--set")
    assert got == {"x": [1, 2], "ckpt": "/a/b.pth.tar", "flag": True, "py": True, "t": (1, 2), "image_size": 64,
                   "name": "csnet", "f": 1e-3, "s": "quoted", "empty": ""}
    with pytest.raises(ConfigError, match=r"^--param 'scale': expected KEY=VALUE$"):
        parse_assignments(["scale"], "--param")
    with pytest.raises(ConfigError, match=r"^--model-arg '2x=1': '2x' is not a valid name$"):
        parse_assignments(["2x=1"], "--model-arg")
