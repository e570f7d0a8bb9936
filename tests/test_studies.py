"""The studies runner: headless execution, failure reports, parameter injection, pairing, CLI."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from queue import Empty

import nbformat
import pytest

from sodlab import studies
from sodlab.cli import main as cli_main
from sodlab.errors import ConfigError
from sodlab.studies import runner

OK = '''# %% [markdown]
# # A notebook that works

# %% tags=["parameters"]
mode = "quick"
data_root = None
device = "auto"
results_dir = None
scale = 2

# %%
from pathlib import Path
Path(results_dir, "answer.txt").write_text(f"{mode}:{scale * 21}:{data_root}")
'''

BAD = '''# %% [markdown]
# # A notebook that fails

# %% tags=["parameters"]
mode = "quick"
results_dir = None

# %%
x = 1

# %%
raise ValueError("deliberate failure " + mode)

# %%
never_reached = True
'''


@pytest.fixture
def nbdir(tmp_path: Path) -> Path:
    d = tmp_path / "notebooks"
    d.mkdir()
    (d / "01_works.py").write_text(OK)
    (d / "02_breaks.py").write_text(BAD)
    (d / "notes.py").write_text("# not a study: no NN_ prefix\n")
    return d


def test_runner_reports_failing_notebook_and_runs_the_others(nbdir: Path, tmp_path: Path, capsys):
    results = tmp_path / "results"
    # the failing notebook comes first in this selection: the one after it must still run
    rc = cli_main(["studies", "--notebooks", str(nbdir), "--results", str(results), "--mode", "standard",
                   "-p", "scale=3", "--only", "2", "works"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAILED 02_breaks: cell 5 ('raise ValueError(\"deliberate failure \" + mode)'): " \
           "ValueError: deliberate failure standard" in out
    assert (results / "01_works" / "answer.txt").read_text() == "standard:63:None"
    assert "01_works" in out and "1 ok, 1 failed" in out
    # both executed notebooks are kept, with outputs; the failed one shows the traceback
    bad = nbformat.read(results / "02_breaks" / "02_breaks.ipynb", as_version=4)
    errors = [o for c in bad.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert [e.ename for e in errors] == ["ValueError"]
    rec = json.loads((results / "02_breaks" / "run.json").read_text())
    assert rec["ok"] is False and rec["failure"]["cell"] == 5 and rec["mode"] == "standard"
    summary = (results / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("notebook,mode,status,seconds")
    assert [line.split(",")[2] for line in summary[1:]] == ["ok", "failed"]


INTERRUPTED = BAD.replace('raise ValueError("deliberate failure " + mode)', "raise KeyboardInterrupt  # as Ctrl-C does in the kernel")


def test_an_interruption_stops_the_run(tmp_path: Path, capsys):
    """Ctrl-C reaches the kernel as a KeyboardInterrupt in the running cell: the runner saves
    that notebook as failed, runs none after it, writes the summary and says how to resume."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    (nbdir / "01_stops.py").write_text(INTERRUPTED)
    (nbdir / "02_works.py").write_text(OK)
    results = tmp_path / "results"
    rc = cli_main(["studies", "--notebooks", str(nbdir), "--results", str(results)])
    assert rc == 130
    assert capsys.readouterr().err.strip().endswith(
        "sodlab studies: interrupted; add --resume to the same command to skip the notebooks that already finished")
    assert not (results / "02_works").exists()  # after the interrupted one: never started
    rec = json.loads((results / "01_stops" / "run.json").read_text())
    assert rec["ok"] is False and rec["failure"]["cell"] == 5 and rec["failure"]["exception"].startswith("KeyboardInterrupt")
    assert (results / "01_stops" / "01_stops.ipynb").is_file()
    summary = (results / "summary.csv").read_text().splitlines()
    assert len(summary) == 2 and summary[1].startswith("01_stops,quick,failed,")


def test_all_passing_returns_zero_and_resume_skips(nbdir: Path, tmp_path: Path):
    results = tmp_path / "r"
    runs = studies.run_studies(only=["works"], results_dir=results, notebooks_dir=nbdir, show_progress=False)
    assert [(r.name, r.ok, r.skipped) for r in runs] == [("01_works", True, False)]
    assert (results / "01_works" / "answer.txt").read_text() == "quick:42:None"
    again = studies.run_studies(only=["01_works"], results_dir=results, notebooks_dir=nbdir, resume=True,
                                show_progress=False)
    assert again[0].skipped
    # other parameters: not the same run, so it runs again
    other = studies.run_studies(only=["1"], mode="standard", results_dir=results, notebooks_dir=nbdir,
                                resume=True, show_progress=False)
    assert not other[0].skipped and other[0].ok


SLEEPS = OK.replace('Path(results_dir, "answer.txt")', 'import time\ntime.sleep(3)  # the kernel busy for 3 s\nPath(results_dir, "answer.txt")')


def test_waiting_for_the_kernel_costs_the_runner_no_cpu(tmp_path: Path):
    """While the kernel works, the runner's process waits on its sockets; it must not poll in a
    loop (a busy wait would cost it about as much CPU time as the kernel's 3 s take). CPU time,
    unlike wall time, does not grow when a loaded machine makes the process wait."""
    import resource

    def own_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)  # this process, all its threads; not the kernel
        return r.ru_utime + r.ru_stime

    (tmp_path / "01_sleeps.py").write_text(SLEEPS)
    at_cell = {}  # CPU time when each code cell finished: the last one is the sleeping cell
    out = tmp_path / "out"
    run = studies.execute_notebook(tmp_path / "01_sleeps.py", {"mode": "quick", "results_dir": str(out)}, out,
                                   progress=lambda i, n: at_cell.update({i: own_cpu()}))
    assert run.ok and len(at_cell) == 3
    used = at_cell[3] - at_cell[2]
    assert used < 0.5, f"the runner used {used:.2f} s of CPU while the kernel slept 3 s"


def test_inject_parameters_goes_after_the_parameters_cell(nbdir: Path):
    nb = studies.read_notebook(nbdir / "01_works.py")
    assert studies.parameter_names(nb) == ["mode", "data_root", "device", "results_dir", "scale"]
    n = len(nb.cells)
    studies.inject_parameters(nb, {"mode": "full", "data_root": "/data/DUTS", "scale": 1.5})
    studies.inject_parameters(nb, {"mode": "full", "data_root": "/data/DUTS", "scale": 1.5})  # replaces, not adds
    assert len(nb.cells) == n + 1
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    i = tags.index(["parameters"])
    assert tags[i + 1] == ["injected-parameters"]
    ns: dict = {}
    exec(nb.cells[i].source + "\n" + nb.cells[i + 1].source, ns)
    assert (ns["mode"], ns["data_root"], ns["scale"], ns["device"]) == ("full", "/data/DUTS", 1.5, "auto")


def test_inject_without_parameters_cell_goes_first_and_rejects_non_literals(nbdir: Path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    studies.inject_parameters(nb, {"mode": "quick"})
    assert nb.cells[0].source.endswith("mode = 'quick'")
    with pytest.raises(ConfigError, match="not a plain literal"):
        studies.inject_parameters(nb, {"x": object()})
    with pytest.raises(ConfigError, match="identifier"):
        studies.inject_parameters(nb, {"a-b": 1})


def test_unknown_param_and_unknown_notebook_are_errors(nbdir: Path, tmp_path: Path, capsys):
    with pytest.raises(ConfigError, match="no selected notebook has such a parameter"):
        studies.run_studies(notebooks_dir=nbdir, results_dir=tmp_path, extra_params={"scal": 1}, show_progress=False)
    assert cli_main(["studies", "--notebooks", str(nbdir), "--only", "nope"]) == 2
    assert "no notebook matches 'nope'; available: 01_works, 02_breaks" in capsys.readouterr().err


def test_cli_list(nbdir: Path, capsys):
    assert cli_main(["studies", "--notebooks", str(nbdir), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["01_works", "02_breaks"]
    assert lines[0].split(None, 1)[1] == "A notebook that works"


def test_cli_list_real_notebooks(capsys):
    assert cli_main(["studies", "--list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["01_quickstart", "02_anatomy", "03_pruning", "04_category_sensitivity",
                     "05_pretraining", "06_redundancy", "07_mechanisms"]


def test_pair_sync_detects_and_fixes_drift(nbdir: Path, capsys):
    assert studies.out_of_sync(nbdir) == ["01_works", "02_breaks"]  # no .ipynb yet
    assert len(studies.sync_notebooks(nbdir)) == 2
    assert studies.out_of_sync(nbdir) == []
    assert studies.sync_notebooks(nbdir) == []  # idempotent: nothing rewritten
    paired = nbformat.read(nbdir / "01_works.ipynb", as_version=4)
    assert all(c.get("outputs", []) == [] for c in paired.cells)
    assert paired.metadata["jupytext"] == {"formats": "ipynb,py:percent"}
    (nbdir / "01_works.py").write_text(OK.replace("scale = 2", "scale = 4"))
    assert studies.out_of_sync(nbdir) == ["01_works"]
    assert cli_main(["studies", "--notebooks", str(nbdir), "--check-sync"]) == 1
    assert "01_works: paired .ipynb missing or out of date" in capsys.readouterr().out


def test_repository_notebooks_are_in_sync():
    assert studies.out_of_sync() == [], "run `sodlab studies --sync`"


def test_every_repository_notebook_has_the_standard_parameters():
    for script in studies.discover_notebooks():
        names = studies.parameter_names(studies.read_notebook(script))
        assert names[:4] == ["mode", "data_root", "device", "results_dir"], script.name


PANELS = ("SaliencyThresholds(", "allocation_panel(", "pruning_panel(", "category_panel(", "learning_panel(",
          "redundancy_panel(", "channel_explorer(")


def test_every_repository_notebook_teaches_and_has_a_live_panel():
    for script in studies.discover_notebooks():
        nb = studies.read_notebook(script)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
        assert "**New here?**" in markdown[0] and "viz.task_primer(" in code, f"{script.name}: no newcomer's introduction"
        assert any(p in code for p in PANELS), f"{script.name}: no live panel"
        assert any(m.startswith("## What we found") for m in markdown), f"{script.name}: no verdict section"
        assert markdown[-1].startswith("## Try this") and nb.cells[-1].cell_type == "code", f"{script.name}: no try-this cell at the end"
        trains = any(call in code for call in ("fit(", "_study,", "_effect,", "category_sensitivity,"))
        assert not trains or "study.device_note()" in code, f"{script.name}: a training cell that does not print its device"


def test_findings_and_docs(tmp_path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    (nbdir / "01_works.py").write_text(OK)
    study = studies.Study("01_works", "quick", {}, "cpu", tmp_path, tmp_path / "res" / "01_works", True)
    study.results_dir.mkdir(parents=True)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert study.savefig(fig, "key").name == "key.png"
    verdict = studies.judge(study="01_works", claim="SOD is category-insensitive.", quantity="seen minus unseen max-F",
                            effect=0.01, ci=(-0.01, 0.015), margin=0.02, rule="equivalent", mode="quick", seeds=[0],
                            lines=["- gap 0.01 (90% CI -0.01..0.015)"])
    md = study.findings(verdict, key_figure="key.png")
    text = getattr(md, "data", md)
    assert "too small to conclude anything" in text and "**Outcome: inconclusive** (quick mode)." in text and "gap 0.01" in text
    # results/<notebook>/findings.json is the verdict object itself
    assert json.loads((study.results_dir / "findings.json").read_text()) == verdict.to_dict()
    assert json.loads((study.results_dir / "findings_context.json").read_text())["key_figure"] == "key.png"
    with pytest.raises(Exception, match="key figure missing.png not found"):
        study.findings(verdict, key_figure="missing.png")
    with pytest.raises(Exception, match="a verdict of 02_other in quick mode cannot close 01_works in quick mode"):
        study.findings(dataclasses.replace(verdict, study="02_other"))
    docs = tmp_path / "docs"
    out = studies.regenerate_docs(tmp_path / "res", docs, nbdir)
    body = out.read_text()
    assert "## A notebook that works" in body and "**Outcome: inconclusive** (quick mode)." in body and "![01_works](01_works.png)" in body
    assert json.loads((docs / "findings.json").read_text()) == [verdict.to_dict()]
    assert (docs / "01_works.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the README's findings block is replaced, the rest kept; a README without the block is an error
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{studies.README_START}\nold findings\n{studies.README_END}\n\n## after\n")
    studies.regenerate_docs(tmp_path / "res", docs, nbdir, readme=readme)
    text = readme.read_text()
    assert text.startswith("# title\n\n") and text.endswith(f"{studies.README_END}\n\n## after\n")
    assert "old findings" not in text and "#### A notebook that works" in text and "![01_works](docs/01_works.png)" in text
    bare = tmp_path / "bare.md"
    bare.write_text("# no block\n")
    with pytest.raises(Exception, match="bare.md: expected one <!-- studies:findings:start -->"):
        studies.regenerate_docs(tmp_path / "res", docs, nbdir, readme=bare)
    assert bare.read_text() == "# no block\n"
    # a findings.json from before the verdict rule is named, not half-read
    (study.results_dir / "findings.json").write_text(json.dumps({"claim": "c", "verdict": "held"}))
    with pytest.raises(Exception, match=r"01_works/findings.json: not a verdict record"):
        studies.regenerate_docs(tmp_path / "res", docs, nbdir)


def test_viz_figures_are_labelled_and_saved_atomically(tmp_path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    from conftest import fake_explorer_data

    from sodlab import viz

    data = fake_explorer_data()
    data["importance_sod"][1, 4] = 50.0
    fig = viz.channel_explorer(data, image=1, class_names=["cat", "dog"], interactive=False)
    titles = [ax.get_title() for ax in fig.axes]
    assert "stage3 channel 4" in " ".join(titles)  # defaults to the channel that matters most for saliency
    assert any("classifier says: cat" in t for t in titles)
    with pytest.raises(IndexError, match="channel 9 out of range"):
        viz.channel_figure(data, 0, channel=9)
    df = pd.DataFrame({"x": [1, 2, 3, 1, 2, 3], "y": [0.1, 0.2, 0.3, 0.2, 0.3, 0.5], "task": ["a"] * 3 + ["b"] * 3})
    f2 = viz.metric_curves(df, x="x", y="y", hue="task", xlabel="epoch", ylabel="max-F (0-1)")
    assert (f2.axes[0].get_xlabel(), f2.axes[0].get_ylabel()) == ("epoch", "max-F (0-1)")
    f3 = viz.heatmap(df.pivot(index="task", columns="x", values="y"), xlabel="x", ylabel="task", cbar_label="max-F (0-1)")
    assert f3.axes[1].get_ylabel() == "max-F (0-1)"
    out = viz.savefig(fig, tmp_path / "sub" / "explorer")
    assert out == tmp_path / "sub" / "explorer.png" and out.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in out.parent.iterdir()] == ["explorer.png"]  # no temporary left behind


def test_start_study_uses_the_small_benchmark_in_quick_mode_only(tmp_path: Path, monkeypatch):
    from sodlab.data import synthetic

    calls = []

    def fake_ensure_benchmark(**kw):
        calls.append(kw)
        return tmp_path / "bench"

    monkeypatch.setattr(synthetic, "ensure_benchmark", fake_ensure_benchmark)
    sizes = {"quick": {"n": 1}, "standard": {"n": 2}}
    s = studies.start_study("01_x", "quick", sizes, device="cpu", results_dir=tmp_path / "q")
    assert calls[-1] == studies.QUICK_BENCHMARK and s.data_root == tmp_path / "bench" and s.builtin_data
    studies.start_study("01_x", "quick", sizes, device="cpu", results_dir=tmp_path / "q", benchmark={"n_test": 60})
    assert calls[-1] == {**studies.QUICK_BENCHMARK, "n_test": 60}
    studies.start_study("01_x", "standard", sizes, device="cpu", results_dir=tmp_path / "s")
    assert calls[-1] == {}


def test_work_dir_depends_on_mode_and_data(tmp_path: Path):
    def study(mode, root, builtin):
        return studies.Study("01_x", mode, {}, "cpu", root, tmp_path / "res", builtin)

    a = study("quick", tmp_path / "synthetic-aaaa", True).work_dir
    b = study("quick", tmp_path / "synthetic-bbbb", True).work_dir
    c = study("standard", tmp_path / "synthetic-aaaa", True).work_dir
    d = study("quick", tmp_path / "my data", False).work_dir
    assert len({a, b, c, d}) == 4 and a.name == "synthetic-aaaa" and d.name.startswith("my_data-")
    assert study("quick", None, True).work_dir == tmp_path / "res" / "runs" / "quick"


def test_a_table_of_saliency_scores_names_its_protocol(tmp_path: Path):
    import pandas as pd

    from sodlab.errors import ConfigError
    from sodlab.studies.common import PROTOCOL, VALIDATION_PROTOCOL, with_protocol

    st = studies.Study("09_x", "quick", {}, "cpu", None, tmp_path, True)
    bare = pd.DataFrame({"model": ["a"], "max_f": [0.8], "mae": [0.05]})
    with pytest.raises(ConfigError, match="09_x: table 'final' holds saliency scores \\(max_f, mae\\) but no 'protocol'"):
        st.save_table(bare, "final")
    long = pd.DataFrame({"task": ["sod", "sod", "encoder"], "metric": ["max_f", "mae", "ncm_accuracy"], "value": [0.8, 0.1, 0.5]})
    with pytest.raises(ConfigError, match="holds saliency scores \\(max_f, mae\\)"):
        st.save_table(long, "gaps")
    assert not (tmp_path / "final.csv").exists() and not (tmp_path / "gaps.csv").exists()
    # a study's tables gain theirs: per row from a metric column, else from the columns
    assert list(with_protocol(long)["protocol"]) == [PROTOCOL, PROTOCOL, "top-1"]
    assert list(with_protocol(bare)["protocol"]) == [PROTOCOL]
    log = pd.DataFrame({"epoch": [1], "val_max_f": [0.7], "val_mae": [0.1]})
    assert list(with_protocol(log)["protocol"]) == [VALIDATION_PROTOCOL]
    with pytest.raises(ValueError, match="several protocols"):
        with_protocol(pd.DataFrame({"max_f": [0.8], "val_max_f": [0.7]}))
    # tables without saliency scores, or with their protocol, are saved as they are
    st.save_table(pd.DataFrame({"model": ["c"], "accuracy": [0.9]}), "classifiers")
    st.save_table(with_protocol(bare), "final")
    assert pd.read_csv(tmp_path / "final.csv")["protocol"].tolist() == [PROTOCOL]


class _LateChannel:
    """A channel whose message is there from the start but whose waits without a timeout
    never wake (the missed edge-triggered wake-up); a wait with a timeout finds it."""

    def __init__(self, ready_after_calls: int = 0) -> None:
        self.calls: list = []
        self.ready_after_calls = ready_after_calls

    async def get_msg(self, timeout=None):
        self.calls.append(timeout)
        if timeout is None:
            await asyncio.Event().wait()  # would block forever
        if len(self.calls) > self.ready_after_calls:
            return {"msg": "reply"}
        await asyncio.sleep(timeout)  # a timed wait that finds nothing takes its time, as a poll does
        raise Empty


def test_sliced_get_msg_never_waits_without_a_timeout():
    ch = _LateChannel(ready_after_calls=2)
    get = runner.sliced_get_msg(ch.get_msg, slice_s=0.01)
    assert asyncio.run(asyncio.wait_for(get(timeout=None), 5)) == {"msg": "reply"}
    assert len(ch.calls) == 3 and all(t == 0.01 for t in ch.calls)


def test_sliced_get_msg_keeps_the_callers_deadline():
    ch = _LateChannel(ready_after_calls=10**9)
    get = runner.sliced_get_msg(ch.get_msg, slice_s=0.01)
    t0 = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(get(timeout=0.05))
    # no wait longer than a slice, and no giving up before the caller's deadline (however
    # slowly a loaded machine runs the loop, so no count of calls is asserted)
    assert ch.calls and all(t is not None and t <= 0.01 for t in ch.calls) and time.monotonic() - t0 >= 0.05
    ch0 = _LateChannel(ready_after_calls=10**9)
    with pytest.raises(Empty):
        asyncio.run(runner.sliced_get_msg(ch0.get_msg)(timeout=0))
    assert ch0.calls == [0.0]
