"""Every study notebook in a real browser: JupyterLab on a free local port, headless Chromium
driven by selenium. Per notebook: run all cells (quick mode, the notebooks' default), assert
that no cell raised, that the live panel rendered, and that moving its probe control (the one
marked `sodlab.viz.widgets.PROBE_CLASS`) redraws its figure.

The notebooks run on a copy in a temporary folder (JupyterLab saves what it runs), writing
their results into the repository's ``results/`` like ``sodlab studies --quick``; what that run
computed (trained models, cached results) is reused, so after ``scripts/main.sh`` each notebook
only redraws. Without it, the browser run trains the quick models itself.

Screenshots of every notebook's panel, before and after the move, go to ``results/browser/``
(``$SODLAB_BROWSER_SHOTS`` to change it); a failure names the folder. Skips, saying what to
install, when Chromium, chromedriver, selenium or JupyterLab is missing. Every wait polls for a
condition (``$SODLAB_BROWSER_TIMEOUT`` seconds per notebook, default 1800): none assumes speed.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.py"))
SHOTS = Path(os.environ.get("SODLAB_BROWSER_SHOTS", REPO / "results" / "browser"))
TIMEOUT = float(os.environ.get("SODLAB_BROWSER_TIMEOUT", "1800"))
INSTALL = "apt-get install -y chromium chromium-driver (Debian) and pip install selenium (the test extra)"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _find(*names: str) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


def _requirements() -> tuple[str, str]:
    browser = _find("chromium", "chromium-browser", "google-chrome")
    driver = _find("chromedriver")
    missing = [what for what, found in (("chromium", browser), ("chromedriver", driver)) if not found]
    for module in ("selenium", "jupyterlab"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        message = f"browser test needs {', '.join(missing)}: {INSTALL}"
        if os.environ.get("CI") == "true":  # .ci/run installs them: missing there is a failure, not a skip
            pytest.fail(message)
        pytest.skip(message)
    return browser, driver


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> None:
    # Every cell in the DOM (JupyterLab 4 otherwise renders only the cells in view), and no
    # news or update pop-ups over the notebook.
    for plugin, values in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                           "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


class Lab:
    def __init__(self, url: str, token: str, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.token, self.proc, self.log = url, token, proc, log

    def api(self, method: str, path: str) -> Any:
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    _requirements()
    from sodlab.commands.lab import lab_command, lab_env

    root = tmp_path_factory.mktemp("lab")
    work = root / "notebooks"
    work.mkdir()
    for name in NOTEBOOKS:
        for suffix in (".ipynb", ".py"):
            shutil.copy2(REPO / "notebooks" / f"{name}{suffix}", work / f"{name}{suffix}")
    _settings(root / "settings")
    port, token = _free_port(), "sodlab-browser-test"
    env = lab_env() | {"JUPYTERLAB_SETTINGS_DIR": str(root / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces")}
    cmd = lab_command(work, port=port, browser=False, extra=[
        f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True",
        "--ServerApp.open_browser=False"])
    log = root / "lab.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=root)
    lab = Lab(f"http://127.0.0.1:{port}", token, proc, log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{lab.log_tail()}")
        try:
            return lab.api("GET", "status") is not None
        except OSError:
            return False

    try:
        wait_for(ready, 180, "JupyterLab to answer")
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(lab):
    chromium, chromedriver = _requirements()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1500,1100"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    driver.set_script_timeout(300)  # the one asynchronous script: JupyterLab restoring its layout
    try:
        yield driver
    finally:
        driver.quit()


# What the notebook holds, read from JupyterLab's own model of it: per code cell its execution
# count and its error outputs, and the kernel's status.
_STATE_JS = """
const app = window.jupyterapp;
if (!app) return {phase: 'loading'};
const w = app.shell.currentWidget;
if (!w || !w.context || w.context.path !== arguments[0] || !w.content || !w.content.model) return {phase: 'opening'};
const kernel = w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
const cells = w.content.model.cells;
let code = 0, done = 0; const errors = [];
for (let i = 0; i < cells.length; i++) {
  const c = cells.get(i);
  if (c.type !== 'code') continue;
  code++;
  if (c.executionCount) done++;
  for (const o of c.outputs.toJSON()) {
    if (o.output_type === 'error') errors.push(`cell ${i + 1}: ${o.ename}: ${o.evalue}`);
  }
}
const broken = [...w.node.querySelectorAll('.jp-OutputArea-output')]
  .map(e => e.innerText || '').filter(t => /Error displaying widget|Failed to load model class/.test(t));
return {phase: 'open', kernel: kernel ? kernel.status : null, code, done, errors: errors.concat(broken)};
"""

_PANEL_JS = "const w = window.jupyterapp.shell.currentWidget; return w ? w.node.querySelector('.sodlab-panel') : null;"
_PANEL_IMAGE_JS = """
const w = window.jupyterapp.shell.currentWidget;
const panel = w && w.node.querySelector('.sodlab-panel');
if (!panel) return null;
const img = panel.querySelector('.jp-OutputArea-output img');
return img && img.complete && img.naturalWidth > 0 ? img.src : null;
"""


def _shot(driver, element, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    if element is not None:
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _move(driver, probe) -> str:
    """Move the probe control one step, as a reader would; returns what was done."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    selects = probe.find_elements("css selector", "select")
    if selects:
        sel = Select(selects[0])
        n = len(sel.options)
        current = next(i for i, o in enumerate(sel.options) if o.is_selected())
        sel.select_by_index((current + 1) % n)
        return f"chose option {(current + 1) % n} of {n}"
    handles = probe.find_elements("css selector", ".noUi-handle")
    if handles:
        handles[0].click()
        handles[0].send_keys(Keys.ARROW_RIGHT)
        return "moved the slider one step right"
    boxes = probe.find_elements("css selector", "input[type=checkbox]")
    if boxes:
        boxes[0].click()
        return "toggled the checkbox"
    raise AssertionError(f"probe control has no select, slider handle or checkbox: {probe.get_attribute('outerHTML')[:300]}")


def _lab_page(driver, lab: Lab) -> None:
    """JupyterLab's page, loaded once for all notebooks (each test opens and closes its own);
    loaded again after a failure left a dialog or no app behind."""
    ready = ("return !!(window.jupyterapp && window.jupyterapp.shell) && !document.querySelector('.jp-Dialog')"
             " && ['docmanager:open', 'notebook:run-all-cells'].every(c => window.jupyterapp.commands.hasCommand(c));")
    if driver.execute_script(ready):
        return
    driver.get(f"{lab.url}/lab/workspaces/browser-test?reset&token={lab.token}")
    wait_for(lambda: driver.execute_script("return !!(window.jupyterapp && window.jupyterapp.restored);"), 300,
             "JupyterLab's page to load")
    # the layout restored: a document opened before that can lose its kernel session
    restored = driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.jupyterapp.restored.then(() => done(true), e => done(String(e)));")
    assert restored is True, f"JupyterLab did not restore its layout: {restored}"
    wait_for(lambda: driver.execute_script(ready), 300, "JupyterLab's commands")
    driver.execute_script("window.jupyterapp.shell.collapseLeft();")  # the file browser: room for the figures


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_its_panel_responds(name: str, lab: Lab, browser):
    driver = browser
    path = f"{name}.ipynb"
    where = f"screenshots in {SHOTS}; JupyterLab log: {lab.log}"

    def state() -> dict:
        return driver.execute_script(_STATE_JS, path) or {}

    try:
        _lab_page(driver, lab)
        driver.execute_script("window.jupyterapp.commands.execute('docmanager:open', {path: arguments[0], factory: 'Notebook'});", path)
        wait_for(lambda: state().get("kernel") == "idle", 300, f"{path} to open with an idle kernel")
        t0 = time.monotonic()
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")

        def finished() -> dict | None:
            s = state()
            if s.get("errors"):
                return s
            return s if s.get("code") and s["done"] == s["code"] and s.get("kernel") == "idle" else None

        final = wait_for(finished, TIMEOUT, f"every cell of {path} to run")
        seconds = time.monotonic() - t0
        assert not final["errors"], f"{path}: error output: {final['errors']}"
        assert driver.execute_script("return window.jupyterapp.shell.currentWidget.node.querySelectorAll('.jupyter-widgets').length"), \
            f"{path}: no widget rendered"
        panel = wait_for(lambda: driver.execute_script(_PANEL_JS), 120, f"{path}'s live panel")
        before = wait_for(lambda: driver.execute_script(_PANEL_IMAGE_JS), 120, f"{path}'s panel to draw its figure")
        _shot(driver, panel, f"{name}-before")
        probe = panel.find_element("css selector", ".sodlab-probe")
        done = _move(driver, probe)
        wait_for(lambda: (driver.execute_script(_PANEL_IMAGE_JS) or before) != before, 120,
                 f"{path}'s figure to change after the probe {done}")
        errors = state().get("errors")
        assert not errors, f"{path}: error output after moving the control: {errors}"
        _shot(driver, panel, f"{name}-after")
        print(f"{name}: all cells in {seconds:.1f} s; probe {done}; figure redrawn")
        # closed unsaved: the copy's outputs are not needed, and a clean document closes without a dialog
        driver.execute_script("const w = window.jupyterapp.shell.currentWidget; w.context.model.dirty = false; w.close();")
        wait_for(lambda: driver.execute_script(_STATE_JS, path).get("phase") != "open", 60, f"{path} to close")
    except Exception as exc:
        try:
            _shot(driver, None, f"{name}-FAILED")
        finally:
            raise AssertionError(f"{name} in the browser: {exc}\n({where})\n{lab.log_tail()}") from exc
    finally:
        for kernel in lab.api("GET", "kernels") or []:
            lab.api("DELETE", f"kernels/{kernel['id']}")
