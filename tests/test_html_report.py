"""``relumilp stats --html``: a self-contained page with the expected sections, and how a browser shows it."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import random_mlp
from relumilp.cli import main

CHROMIUM = "/usr/bin/chromium"


class _Page(HTMLParser):
    """Section ids, headings, table cells and every URL-bearing attribute of a page."""

    def __init__(self):
        super().__init__()
        self.ids, self.headings, self.cells, self.urls, self.tags = [], [], [], [], set()
        self._text = None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        self.urls += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag in ("h1", "h2", "td", "th"):
            self._text = []

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "td", "th") and self._text is not None:
            text = " ".join("".join(self._text).split())
            (self.headings if tag.startswith("h") else self.cells).append(text)
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def _parse(path: Path) -> tuple[str, _Page]:
    text = path.read_text()
    page = _Page()
    page.feed(text)
    return text, page


def _self_contained(text: str, page: _Page) -> None:
    assert "<link" not in text and "<script" not in text
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:|//)', text)
    assert all(u.startswith(("#", "data:image/png;base64,")) for u in page.urls), page.urls


@pytest.fixture(scope="module")
def peaks_page(tmp_path_factory):
    pytest.importorskip("matplotlib")
    path = tmp_path_factory.mktemp("html") / "peaks.html"
    assert main(["stats", "--example", "peaks", "--samples", "1000", "--html", str(path), "--json"]) == 0
    return path


def test_peaks_page(peaks_page, capsys):
    from PIL import Image

    text, page = _parse(peaks_page)
    _self_contained(text, page)
    assert {"size", "stability", "big-m", "regions", "optimum", "times"} <= set(page.ids)
    assert page.headings[0].endswith("peaks")
    assert {"MILP size", "Neuron stability", "Big-M coefficients", "Linear regions", "Optimum of output 0"} <= set(
        page.headings)
    assert text.count("data:image/png;base64,") == 3  # stability, big-M, regions
    for url in page.urls:
        if url.startswith("data:"):
            Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).verify()
    # the numbers of the page are those of the JSON report of the same run
    assert main(["stats", "--example", "peaks", "--samples", "1000", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert f"{data['linear_regions']['count']} (exact)" in page.cells
    assert f"{data['model']['binaries']:,}" in page.cells and f"{data['model']['nonzeros']:,}" in page.cells
    for layer in data["layers"]:
        row = page.cells[page.cells.index(layer["name"]):][:6]
        assert row[2:6] == [str(layer[k]) for k in ("size", "stable_active", "stable_inactive", "unstable")]
    # the optimum is the vertex enumeration of the exact regions (the Peaks maximum is near 8.1)
    maximum = page.cells[page.cells.index("max") + 1]
    assert 7.5 < float(maximum) < 8.6
    assert "vertex enumeration" in text


def test_five_inputs_without_regions(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    model = tmp_path / "five.npz"
    random_mlp(np.random.default_rng(3), [5, 8, 8, 1]).save(model)
    path = tmp_path / "five.html"
    assert main(["stats", str(model), "--box", "-1:1", "--regions", "none", "--samples", "500",
                 "--tighten", "lp", "--html", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    text, page = _parse(path)
    _self_contained(text, page)
    assert {"size", "stability", "big-m", "regions", "optimum"} <= set(page.ids)
    assert "Region counting was skipped" in text
    assert text.count("data:image/png;base64,") == 2  # no region figure
    assert "baseline: interval" in page.cells and "requested: lp" in page.cells
    # the optimum comes from the MILP here, proven optimal on this small network
    row = page.cells[page.cells.index("max"):][:5]
    assert row[4] == "MILP optimal"
    assert float(row[1]) >= float(page.cells[page.cells.index("min") + 1])


def test_unwritable_path_is_refused_before_the_analysis(capsys):
    assert main(["stats", "--example", "peaks", "--html", "/proc/no/such/folder/r.html"]) != 0
    err = capsys.readouterr().err
    assert "cannot write /proc/no/such/folder/r.html" in err and "Traceback" not in err


def _browser(page: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    # the flags keep Chromium off the network (it has none here) and out of any user profile
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={out / 'profile'}", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
         *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_page_in_a_headless_browser(peaks_page, tmp_path):
    from PIL import Image

    shot = tmp_path / "page.png"
    # one launch: the screenshot, the DOM it built on stdout, its console on stderr
    run = _browser(peaks_page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    image = np.asarray(Image.open(shot).convert("RGB")).astype(np.int32)
    assert image.shape[:2] == (2000, 1280)
    colours = np.unique((image[..., 0] << 16) | (image[..., 1] << 8) | image[..., 2])
    assert colours.size > 50  # text, tables and figures, not a blank page
    # the DOM holds the whole page (nothing cut off by a parse error)
    assert run.stdout.count("data:image/png;base64,") == 3
    assert "Optimum of output 0" in run.stdout and "</footer>" in run.stdout
