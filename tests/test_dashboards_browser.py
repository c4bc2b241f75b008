"""In a real browser: headless Chromium loads the report from file and optuna-dashboard's page
over HTTP. No console message at all, every figure drawn (plotly's `main-svg` inside each
figure's element), and the screenshot's pixels are not blank.

Chromium is driven by its command line only (--dump-dom after a virtual-time budget,
--screenshot, console messages on stderr), so no test dependency beyond the browser. The
tests skip where no `chromium` is installed (Debian: apt-get install chromium).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from dashboards.figures import FIGURES, GRAPH_ID_PREFIX, make_figures, save_figures
from dashboards.report import write_report
from search import compat
from tests.test_dashboards_figures import make_trial, populated_study, study_of
from tests.test_dashboards_serve import running

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs headless chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
]


class Page:
    """What Chromium saw: the DOM after scripts ran, console messages, screenshot pixels."""

    def __init__(self, dom: str, console: list[str], pixels: np.ndarray) -> None:
        self.dom, self.console, self.pixels = dom, console, pixels


def load(url: str, width: int = 1280, height: int = 3000, budget_ms: int = 20000) -> Page:
    """Load `url` in a fresh headless Chromium profile (virtual time lets scripts finish)."""
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        # Half scale keeps the PNG small enough to decode in pure Python quickly.
        done = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}",
             f"--virtual-time-budget={budget_ms}", "--force-device-scale-factor=0.5",
             f"--screenshot={shot}", "--dump-dom", url],
            capture_output=True, text=True, timeout=180,
        )
        assert shot.is_file(), done.stderr[-2000:]
        console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
        return Page(done.stdout, console, read_png(shot))


def read_png(path: Path) -> np.ndarray:
    """An 8-bit RGB(A), non-interlaced PNG (what Chromium writes) as an (h, w, 3) array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    w, h, depth, ctype, _, _, interlace = header
    assert depth == 8 and ctype in (2, 6) and not interlace, header
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(b"".join(idat)), w * bpp
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(h):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if kind == 0:  # None
            cur = line
        elif kind == 1:  # Sub: running sum along the row, per channel
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) & 255
        elif kind == 2:  # Up
            cur = (line + prev) & 255
        else:  # Average (3) or Paeth (4): sequential along the row
            c, p = line.tolist(), prev.tolist()
            for i in range(stride):
                a = c[i - bpp] if i >= bpp else 0
                if kind == 3:
                    c[i] = (c[i] + ((a + p[i]) >> 1)) & 255
                    continue
                b, d = p[i], p[i - bpp] if i >= bpp else 0
                pa, pb, pc = abs(b - d), abs(a - d), abs(a + b - 2 * d)
                c[i] = (c[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else d)) & 255
            cur = np.asarray(c, dtype=np.int64)
        out[y], prev = cur, cur
    return out.reshape(h, w, bpp)[:, :, :3]


class _Drawn(HTMLParser):
    """For each element id in `ids`: does its subtree hold an <svg class="main-svg">?"""

    def __init__(self, ids: set[str]) -> None:
        super().__init__()
        self.ids, self.drawn = ids, {i: False for i in ids}
        self.open: list[tuple[str, str, int]] = []  # (id, tag, depth of that tag)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.open = [(i, t, d + (t == tag)) for i, t, d in self.open]
        if a.get("id") in self.ids:
            self.open.append((a["id"], tag, 1))
        if tag == "svg" and "main-svg" in (a.get("class") or "").split():
            for i, _, _ in self.open:
                self.drawn[i] = True

    def handle_endtag(self, tag: str) -> None:
        self.open = [(i, t, d - (t == tag)) for i, t, d in self.open]
        self.open = [(i, t, d) for i, t, d in self.open if d > 0]


def drawn(dom: str, ids: set[str]) -> dict[str, bool]:
    parser = _Drawn(ids)
    parser.feed(dom)
    return parser.drawn


def assert_not_blank(pixels: np.ndarray, bands: int = 10, coloured: int = 6) -> None:
    """Pixels, not a file size: the page has ink, and coloured marks (plotted traces, not only
    text and links) run down most of it. Split the inked height into `bands`; at least
    `coloured` of them must hold colour. A page whose figures failed keeps its header and
    text but is white below, and fails this."""
    flat = pixels.astype(np.int16)
    inked_rows = np.flatnonzero((flat.min(axis=2) < 235).any(axis=1))
    assert inked_rows.size, "the screenshot is blank"
    bottom = int(inked_rows[-1]) + 1
    saturated = (flat.max(axis=2) - flat.min(axis=2)) > 60
    share = [band.mean() for band in np.array_split(saturated[:bottom], bands)]
    assert sum(v > 0.001 for v in share) >= coloured, f"colour by band: {np.round(share, 4)}"
    distinct = len(np.unique(flat.reshape(-1, 3)[::7], axis=0))
    assert distinct > 50, f"only {distinct} colours"


def test_read_png_decodes_chromium_output(tmp_path):
    """The decoder itself, on a page of known colour."""
    page = tmp_path / "red.html"
    page.write_text('<body style="margin:0"><div style="width:200px;height:100px;'
                    'background:#cc0000"></div></body>')
    shot = tmp_path / "red.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path}/p", "--window-size=400,300",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120,
                   check=True)
    pixels = read_png(shot)
    assert pixels.shape == (300, 400, 3)
    assert (pixels[50, 100] == [204, 0, 0]).all() and (pixels[200, 300] == 255).all()


def test_report_renders_in_chromium(tmp_path):
    path = write_report(populated_study(), tmp_path / "lr-report.html", save=False)
    page = load(path.as_uri(), height=4600)
    assert page.console == []  # no errors, warnings or logs at all
    figures = {f"fig-{name}" for name in FIGURES}
    assert drawn(page.dom, figures) == dict.fromkeys(figures, True)
    assert ": best trial " in page.dom  # best's first line
    assert_not_blank(page.pixels)


def test_report_of_awkward_studies_renders_with_reasons(tmp_path):
    """Part 5 in the browser: only pruned trials, then a study with no trials at all."""
    from optuna.trial import TrialState

    for n, trials in enumerate([[make_trial(state=TrialState.PRUNED, value=None)], []]):
        path = write_report(study_of(*trials), tmp_path / f"r{n}.html", save=False)
        page = load(path.as_uri(), height=2400)
        assert page.console == []
        figures = {f"fig-{name}" for name in FIGURES}
        assert drawn(page.dom, figures) == dict.fromkeys(figures, True)
        assert "Nothing to recommend yet" in page.dom and "no complete trial" in page.dom


def test_dashboard_page_renders_saved_figures_in_chromium(tmp_path):
    study = populated_study(f"sqlite:///{tmp_path / 'store.db'}", name="browser")
    save_figures(study, make_figures(study))
    with running(compat.storage_of(study)) as base:
        page = load(f"{base}/dashboard/studies/{compat.study_id(study)}", width=1400, height=4000)
    assert page.console == []
    slots = {f"user-defined-plot:{GRAPH_ID_PREFIX}{name}" for name in FIGURES}
    assert drawn(page.dom, slots) == dict.fromkeys(slots, True)
    assert "browser" in page.dom  # the study's name in the dashboard's header
    assert_not_blank(page.pixels)
