"""The sliders of notebook 07 in a real browser.

JupyterLab starts on a free local port with a copy of the notebook's cells that the slider
needs; headless Chromium (Debian's `chromium` package, driven by Playwright, never a browser
Playwright downloads) opens it, runs the cells in the short mode, drags the theta slider and
checks that the widget draws a different image. Skipped, saying what to install, where Chromium
or Playwright is missing (`.ci/run` installs both).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

NOTEBOOK = "07_interpolations_and_text_diffs.ipynb"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# without these Chromium keeps calling home, and this machine's closed network refuses it
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]


# The slider needs only the set-up, the scenes it edits and itself: the browser runs these cells
# (nbval runs the whole notebook), which halves the test's time.
NEEDED_CELLS = ("import ipywidgets", "pipe.text_diff(latent=latent", "widgets.interactive(")


def _missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return "Chromium is not installed: `apt-get install chromium` (Debian's package; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: `pip install -e '.[test]'` (it drives Debian's chromium)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """(base URL, token) of a JupyterLab serving the slider's cells of the notebook, stopped afterwards."""
    notebook = json.loads((NOTEBOOKS / NOTEBOOK).read_text())
    notebook["cells"] = [c for c in notebook["cells"]
                         if c["cell_type"] == "code" and any(m in "".join(c["source"]) for m in NEEDED_CELLS)]
    assert len(notebook["cells"]) == len(NEEDED_CELLS), f"{NOTEBOOK} changed: update NEEDED_CELLS"
    (tmp_path / NOTEBOOK).write_text(json.dumps(notebook))
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.expose_app_in_browser=True",          # window.jupyterapp: run cells by command
         "--LabApp.extension_manager=readonly", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        cwd=tmp_path, env={**os.environ, "CI": "1", "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _image_src(page) -> str:
    """The src of the image the interactive widget last drew (a data: URL)."""
    return page.locator(".widget-interact .widget-output img").last.get_attribute("src") or ""


def test_theta_slider_redraws_the_edit(lab):
    from playwright.sync_api import sync_playwright

    url, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
            # the notebook open, with its kernel started and idle
            page.wait_for_function(
                "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
                " return k && k.status === 'idle'; }", timeout=120_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # the widget's first drawing (every cell above it has run by then)
            page.wait_for_selector(".widget-interact .widget-output img", timeout=600_000)
            errors = page.locator("[data-mime-type='application/vnd.jupyter.error']")
            assert errors.count() == 0, "a cell failed:\n" + "\n".join(errors.all_inner_texts())[:3000]
            before = _image_src(page)
            readout = page.locator(".widget-interact .widget-readout").first
            assert readout.inner_text().strip() == "0.30", readout.inner_text()

            # drag theta's handle to the right end of its track (moves the value off 0.30)
            handle = page.locator(".widget-interact .noUi-handle").first
            handle.scroll_into_view_if_needed()
            track = page.locator(".widget-interact .noUi-target").first.bounding_box()
            box = handle.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] + track["width"] - 1, box["y"] + box["height"] / 2, steps=10)
            page.mouse.up()

            if readout.inner_text().strip() == "0.30":
                # the drag can miss while the page still lays out: then the keyboard, as a user would
                handle.click()
                for _ in range(6):
                    handle.press("ArrowRight")
                page.wait_for_timeout(500)
            moved = readout.inner_text().strip()
            assert moved != "0.30", f"the slider did not move: {moved}"
            page.wait_for_function(
                "(old) => { const imgs = document.querySelectorAll('.widget-interact .widget-output img');"
                " return imgs.length && imgs[imgs.length - 1].src !== old; }", arg=before, timeout=120_000)
            after = _image_src(page)
            assert after.startswith("data:image/png") and after != before
        finally:
            browser.close()
