"""Notebook 09's sliders in a real browser: JupyterLab driven by headless Chromium through Playwright.

The test copies the notebook (and the shipped weights) into a temporary folder, starts JupyterLab there,
runs all cells, moves every slider one step with the keyboard (the epoch slider among them: the shipped
networks' replay), clicks a pixel of the picture (the sliders and the caption must follow), ticks "where all
queries look", and checks that the picture changes each time and that no cell shows an error. It prints how long each redraw took. The kernel inherits SACNN_SMOKE from pytest (set by conftest.py),
so the notebook runs in its small size.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`) and the `playwright` package
(`pip install playwright`); without them the test is skipped. `.ci/run` installs both.
Set SACNN_SCREENSHOT=path.png to also save a screenshot of the sliders and the map (the README's picture).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "09_attention_maps.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
HOW = "install Chromium and Playwright to run it: `apt-get install -y chromium` and `pip install playwright`"
# what the notebook's status line says after the explorer's first draw (8x8 map: query at its centre)
STATUS = "image {index}, pixel (y={y}, x={x}), head {head}, layer {layer}, epoch {epoch}"
KEYS = {"image": "index", "query row y": "y", "query col x": "x", "head": "head", "layer": "layer", "epoch": "epoch"}


def aria(handle, what: str) -> int:
    """A slider handle's aria-valuenow / aria-valuemax (noUiSlider writes them as "4.0")."""
    return int(float(handle.get_attribute(f"aria-value{what}")))


# The bytes of the PNG an <img> shows (ipywidgets 8 hands it over as a blob: URL, new on every update).
PNG_BYTES = """async (img) => {
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let s = ""; for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_settings(folder: Path) -> None:
    """No news pop-up over the page; no virtual scrolling, so every cell is in the page."""
    settings = {"apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
                "notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"}}
    for name, value in settings.items():
        path = folder / "@jupyterlab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a copy of the notebook; yields (base url, token)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}; {HOW}")
    pytest.importorskip("playwright.sync_api", reason=f"the playwright package is missing; {HOW}")
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, tmp_path / "notebooks" / NOTEBOOK)
    if (ROOT / "weights").is_dir():  # the shipped weights, as on a clean checkout (no runs/)
        shutil.copytree(ROOT / "weights", tmp_path / "weights")
    write_settings(tmp_path / ".settings")
    port, token = free_port(), "sacnn-browser-test"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               JUPYTER_CONFIG_DIR=str(tmp_path / ".jupyter"))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={tmp_path}", "--ServerApp.allow_root=True",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--LabApp.user_settings_dir={tmp_path / '.settings'}",
           f"--LabApp.workspaces_dir={tmp_path / '.ws'}"]
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start: " + (tmp_path / "jupyter.log").read_text()[-2000:])
                time.sleep(0.3)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.mark.slow  # over 5 s: left out of the fast run (pytest -m "not slow")
def test_sliders_clicks_and_toggle_redraw_the_attention_maps(lab):
    from playwright.sync_api import sync_playwright

    base, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                          "--disable-background-networking", "--disable-component-update",
                                          "--no-first-run", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1700})  # tall enough for the whole explorer
            page.goto(f"{base}/lab/tree/notebooks/{NOTEBOOK}?token={token}")
            page.wait_for_function("() => window.jupyterapp?.shell?.currentWidget?.sessionContext"
                                   "?.session?.kernel?.status === 'idle'", timeout=30_000)
            # Clear the stored outputs first, so everything waited for below comes from this run.
            page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
            page.wait_for_function("() => !document.body.innerText.includes('exercise 09.4:')",
                                   timeout=10_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # The last cell (exercise 4's check) prints this once everything above ran.
            page.get_by_text("exercise 09.4:").wait_for(timeout=45_000)

            box = page.locator(".widget-vbox").filter(has=page.locator(".widget-slider")).first
            box.scroll_into_view_if_needed()
            handles = box.locator(".noUi-handle")
            status = box.locator(".widget-label").last
            picture = box.locator("img").first
            names = [box.locator(".widget-slider .widget-label").nth(i).inner_text()
                     for i in range(handles.count())]
            assert names[:3] == ["image", "query row y", "query col x"] and "epoch" in names, names
            keys = [KEYS[name] for name in names]
            state = dict(index=0, y=aria(handles.nth(1), "now"), x=aria(handles.nth(2), "now"), head=0, layer=0,
                         epoch=aria(handles.nth(keys.index("epoch")), "now"))
            assert state["epoch"] == aria(handles.nth(keys.index("epoch")), "max")  # starts at the trained network
            assert status.inner_text() == STATUS.format(**state)
            for i in range(handles.count()):
                before_src = picture.get_attribute("src")
                before = base64.b64decode(picture.evaluate(PNG_BYTES))
                assert before[:8] == b"\x89PNG\r\n\x1a\n"
                handle = handles.nth(i)
                value = aria(handle, "now")
                handle.focus()
                pressed = time.perf_counter()
                if value == aria(handle, "max"):
                    handle.press("ArrowLeft")  # at its end: move the other way
                    state[keys[i]] = value - 1
                else:
                    handle.press("ArrowRight")
                    state[keys[i]] = value + 1
                assert aria(handle, "now") == state[keys[i]]
                expected = STATUS.format(**state)
                try:
                    page.wait_for_function("([el, text]) => el.innerText === text",
                                           arg=[status.element_handle(), expected], timeout=10_000)
                except Exception:
                    raise AssertionError(f"status {status.inner_text()!r}, expected {expected!r}; box: {box.inner_text()!r}")
                page.wait_for_function("([el, old]) => el.getAttribute('src') !== old",
                                       arg=[picture.element_handle(), before_src], timeout=10_000)
                after = base64.b64decode(picture.evaluate(PNG_BYTES))
                assert after[:8] == b"\x89PNG\r\n\x1a\n"
                assert after != before, f"slider {names[i]!r} did not change the picture"
                print(f"slider {names[i]!r}: new picture {1000 * (time.perf_counter() - pressed):.0f} ms after the key press")

            # A click inside the first row's image, up and to the left of its centre (with notebook 09's two
            # networks the figure puts that image at about 6-30 % of the picture's width and 11-46 % of its
            # height), picks the map cell under it.
            before_src = picture.get_attribute("src")
            before_status = status.inner_text()
            bounds = picture.bounding_box()
            pressed = time.perf_counter()
            picture.click(position={"x": 0.10 * bounds["width"], "y": 0.14 * bounds["height"]})
            page.wait_for_function("([el, old]) => el.innerText !== old",
                                   arg=[status.element_handle(), before_status], timeout=10_000)
            page.wait_for_function("([el, old]) => el.getAttribute('src') !== old",
                                   arg=[picture.element_handle(), before_src], timeout=10_000)
            print(f"click: new picture {1000 * (time.perf_counter() - pressed):.0f} ms after the click")
            y_now, x_now = aria(handles.nth(1), "now"), aria(handles.nth(2), "now")
            assert status.inner_text() == STATUS.format(**dict(state, y=y_now, x=x_now)), status.inner_text()
            assert (y_now, x_now) != (state["y"], state["x"]), "the click did not move the query"
            assert y_now < 4 and x_now < 4  # up and to the left of the centre of the 8 x 8 map

            toggle = box.locator(".widget-checkbox input")
            before_src = picture.get_attribute("src")
            pressed = time.perf_counter()
            toggle.check()
            page.wait_for_function("([el]) => el.innerText.includes('where all queries look')",
                                   arg=[status.element_handle()], timeout=10_000)
            page.wait_for_function("([el, old]) => el.getAttribute('src') !== old",
                                   arg=[picture.element_handle(), before_src], timeout=10_000)
            print(f"toggle: new picture {1000 * (time.perf_counter() - pressed):.0f} ms after the tick")

            errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
            texts = [errors.nth(i).inner_text() for i in range(errors.count())]
            assert not texts, f"cells wrote to stderr or raised: {texts}"
            assert page.locator(".jp-OutputArea-output", has_text="Traceback").count() == 0

            shot = os.environ.get("SACNN_SCREENSHOT")
            if shot:
                box.scroll_into_view_if_needed()
                box.screenshot(path=shot)
        finally:
            browser.close()
