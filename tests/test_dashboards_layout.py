"""Layout in a real browser at a laptop width (1366 x 768) and at 1920: titles, legends, axis
titles and notes of every figure lie inside the figure's box, and none of them overlaps
another (the legend on the x-axis title, a menu on the title).

The check runs in the page: a script reads each text's rendered box (getBoundingClientRect)
after plotly has drawn, and writes what it found into the DOM, which Chromium dumps. The
report is checked as written (plus that script). For optuna-dashboard, the tile width is read
from the real dashboard page (the width plotly gave each saved figure's SVG), then every saved
figure is drawn as the dashboard draws it (Plotly.react into a 450-px box of that width).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from dashboards.figures import FIGURES, GRAPH_ID_PREFIX, make_figures, save_figures
from dashboards.report import write_report
from search import compat
from tests.test_dashboards_browser import CHROMIUM, load
from tests.test_dashboards_figures import populated_study
from tests.test_dashboards_serve import running
from tests.test_dashboards_why import with_companion

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs headless chromium")
WIDTHS = [1366, 1920]

CHECK = """
<script>
window.addEventListener('load', () => setTimeout(() => {
  const out = {clipped: [], overlaps: [], figures: 0};
  const inside = (r, b) => r.left >= b.left - 1 && r.right <= b.right + 1 &&
                           r.top >= b.top - 1 && r.bottom <= b.bottom + 1;
  const meets = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 &&
                          a.top < b.bottom - 1 && b.top < a.bottom - 1;
  document.querySelectorAll('.js-plotly-plot').forEach(div => {
    out.figures += 1;
    const box = div.getBoundingClientRect();
    const texts = div.querySelectorAll(
      '.gtitle, .legendtext, .xtitle, .ytitle, .x2title, .y2title, .annotation-text, ' +
      '.updatemenu-item-text');
    texts.forEach(t => {
      const r = t.getBoundingClientRect();
      if (r.width > 0 && !inside(r, box)) out.clipped.push(div.id + ': ' + t.textContent);
    });
    const parts = [...div.querySelectorAll(
      '.gtitle, .legend, .xtitle, .x2title, .updatemenu-header-group')]
      .map(e => [e.getAttribute('class'), e.getBoundingClientRect()])
      .filter(([, r]) => r.width > 0);
    for (let i = 0; i < parts.length; i++)
      for (let j = i + 1; j < parts.length; j++)
        if (meets(parts[i][1], parts[j][1]))
          out.overlaps.push(div.id + ': ' + parts[i][0] + ' / ' + parts[j][0]);
  });
  const pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 2000));
</script>
"""


def checked(dom: str) -> dict:
    found = re.search(r'<pre id="layout-check">(.*?)</pre>', dom, re.S)
    assert found, "the layout check did not run"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def realistic(storage: str | None = None, name: str = "lr") -> object:
    study = populated_study(storage, name=name)
    with_companion(study)
    return study


def page_of(figures: dict[str, str], width: int) -> str:
    """A page drawing plotly JSON figures as optuna-dashboard does, with the layout check."""
    boxes = "".join(f'<div id="tile-{name}" style="width:{width}px;height:450px"></div>'
                    for name in figures)
    calls = "".join(f"var f=JSON.parse({json.dumps(obj)});"
                    f"Plotly.react('tile-{name}', f.data, f.layout);"
                    for name, obj in figures.items())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><script>{get_plotlyjs()}"
            f"</script></head><body style='margin:0'>{boxes}<script>{calls}</script>{CHECK}"
            "</body></html>")


def test_the_check_finds_a_clipped_title_and_a_legend_on_the_axis_title(tmp_path):
    """The check itself: a long title in a narrow box, a legend placed on the x-axis title."""
    fig = go.Figure(go.Scatter(x=[1, 2], y=[1, 2], name="a long legend entry"))
    fig.update_layout(title={"text": "a title far too long for this box " * 3},
                      xaxis={"title": {"text": "the x axis"}},
                      legend={"orientation": "h", "y": -0.1}, showlegend=True)
    page = tmp_path / "bad.html"
    page.write_text(page_of({"bad": fig.to_json()}, 500), encoding="utf-8")
    result = checked(load(page.as_uri(), width=540, height=600).dom)
    assert result["figures"] == 1
    assert any("a title far too long" in c for c in result["clipped"])
    assert any("legend" in o and "xtitle" in o for o in result["overlaps"])


@pytest.mark.parametrize("width", WIDTHS)
def test_report_titles_and_legends_are_inside_and_apart(tmp_path, width):
    path = write_report(realistic(), tmp_path / "lr-report.html", save=False)
    html = path.read_text(encoding="utf-8").replace("</body>", CHECK + "</body>")
    page_file = tmp_path / "checked.html"
    page_file.write_text(html, encoding="utf-8")
    page = load(page_file.as_uri(), width=width, height=768)
    assert page.console == []
    result = checked(page.dom)
    assert result["figures"] == len(FIGURES)
    assert result["clipped"] == [] and result["overlaps"] == []


def tile_widths(dom: str) -> dict[str, int]:
    """The width plotly drew each saved figure at, in optuna-dashboard's page."""
    out = {}
    for m in re.finditer(rf'id="user-defined-plot:{GRAPH_ID_PREFIX}([\w-]+)"', dom):
        svg = re.search(r'<svg class="main-svg"[^>]*?width="(\d+)', dom[m.end():])
        if svg:
            out[m.group(1)] = int(svg.group(1))
    return out


@pytest.mark.parametrize("width", WIDTHS)
def test_dashboard_tiles_keep_titles_and_legends_inside(tmp_path, width):
    study = realistic(f"sqlite:///{tmp_path / 'store.db'}", name="tiles")
    save_figures(study, make_figures(study))
    with running(compat.storage_of(study)) as base:
        page = load(f"{base}/dashboard/studies/{compat.study_id(study)}", width=width, height=768)
    assert page.console == []
    tiles = tile_widths(page.dom)
    assert set(tiles) == set(FIGURES)
    tile = min(tiles.values())  # half the page, less the side bar and padding
    assert width / 3 < tile < width / 2, tiles
    # Each saved figure as the dashboard draws it: Plotly.react into a 450-px box.
    saved = {k.removeprefix(GRAPH_ID_PREFIX): v for k, v in compat.saved_figures(
        compat.storage_of(study), compat.study_id(study)).items()}
    page_file = Path(tmp_path / "tiles.html")
    page_file.write_text(page_of(saved, tile), encoding="utf-8")
    result = checked(load(page_file.as_uri(), width=tile + 40, height=768).dom)
    assert result["figures"] == len(FIGURES)
    assert result["clipped"] == [] and result["overlaps"] == []
