"""Drawing on the real playground: the service's page in Debian's chromium, the mouse on #pad.

The app is started as in development (`python -m flask --app service:create_app run`) on a free
loopback port; the page is driven the way a person uses it: ink set to black on white with the
#ink select, the brush with the #brush slider, strokes with the mouse button held, Clear between
digits. What the pad drew is read back with its own canvas.toDataURL(). Pad (service/static/
canvas.js) draws each pointer event as a round-capped line of the brush's width, so the pixels are
exactly what a user's mouse would leave.
"""
from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PAD_SIDE = 280             # the #pad canvas's width and height attributes
BRUSH_RANGE = (8, 40)      # the #brush slider's min and max


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Playground:
    """`with Playground() as pad: image = pad.draw(strokes, brush)`."""

    def __enter__(self) -> "Playground":
        from playwright.sync_api import sync_playwright   # dev-time only, like this whole module

        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLENS_")}
        self.server = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "service:create_app", "run",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _answers(base + "/readyz"):
            if self.server.poll() is not None or time.monotonic() > deadline:
                self.server.kill()
                raise RuntimeError("the service did not start: try "
                                   "`.venv/bin/python -m flask --app service:create_app run`")
            time.sleep(0.2)
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        self.page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.goto(base + "/")
        self.page.wait_for_selector("body[data-ready=true]")
        self.page.select_option("#ink", "black")
        box = self.page.locator("#pad").bounding_box()
        self.origin = np.array([box["x"], box["y"]])
        self.css_per_pixel = np.array([box["width"], box["height"]]) / PAD_SIDE
        return self

    def __exit__(self, *exc) -> None:
        self.browser.close()
        self.playwright.stop()
        self.server.terminate()
        self.server.wait(timeout=15)

    def draw(self, polylines: list[np.ndarray], brush: int) -> Image.Image:
        """Clear the pad, set the brush, draw each polyline (pad pixels) as one mouse stroke,
        and return the pad's pixels as a greyscale image (black ink on white)."""
        page = self.page
        page.click("#clear")
        page.evaluate("(b) => { const s = document.getElementById('brush');"
                      " s.value = b; s.dispatchEvent(new Event('input')); }", brush)
        for polyline in polylines:
            points = self.origin + polyline * self.css_per_pixel
            page.mouse.move(*points[0])
            page.mouse.down()
            for point in points[1:]:
                page.mouse.move(*point)
            page.mouse.up()
        url = page.evaluate("() => document.getElementById('pad').toDataURL('image/png')")
        png = base64.b64decode(url.split(",", 1)[1])
        return Image.open(io.BytesIO(png)).convert("L")
