"""The HTML drift report, checked in a real headless browser (Debian's chromium).

The report itself runs no script and loads nothing. For the check, a copy gets two small
scripts: one in <head> that records resource and script errors, one that, after ``load``,
writes how many images decoded (``naturalWidth > 0``) into a marker element; chromium's
``--dump-dom`` then shows the marker. A screenshot must not be blank. Skipped only when
chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_llmops.monitoring import DriftReport, compare_traces
from pytest_llmops.monitoring.synthetic import Generator, Shift

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)

ERROR_PROBE = """<script>
window.__errors = [];
window.addEventListener("error", (e) => {
  window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || "error"));
}, true);
</script>"""
LOAD_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const decoded = images.filter((i) => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);
  const marker = document.createElement("pre");
  marker.id = "llmops-check";
  marker.textContent = `images=${images.length} decoded=${decoded.length} ` +
    `errors=${window.__errors.length} rows=${document.querySelectorAll("#summary tbody tr").length} ` +
    `first=${images.length ? images[0].naturalWidth : 0}x${images.length ? images[0].naturalHeight : 0}`;
  document.body.appendChild(marker);
});
</script>"""


@pytest.fixture(scope="module")
def report() -> DriftReport:
    generator = Generator()
    shift = Shift(
        completion_scale=1.3,
        preamble="Certainly! Here is my answer. ",
        finish_mix={"stop": 0.7, "length": 0.25, "content_filter": 0.05},
        error_rate=0.1,
    )
    return compare_traces(generator.traces(60, seed=1), generator.traces(60, seed=2, shift=shift))


@pytest.fixture(scope="module")
def html(report: DriftReport) -> str:
    return report.to_html()


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            # Nothing may leave the machine: no name resolves, and any proxied request dies locally.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_report_is_self_contained(html: str, report: DriftReport) -> None:
    assert "<script" not in html.lower()
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html, flags=re.IGNORECASE)
    assert references, "expected images and in-page links"
    assert all(ref.startswith(("data:image/png;base64,", "#")) for ref in references), references
    assert "url(" not in html and "@import" not in html
    assert html.count('<img class="plot"') == len(report.features)


@needs_chromium
def test_report_renders_and_every_plot_decodes_in_chromium(
    html: str, report: DriftReport, tmp_path: Path
) -> None:
    probed = html.replace("</title>", "</title>" + ERROR_PROBE, 1).replace(
        "</body>", LOAD_PROBE + "</body>", 1
    )
    page = tmp_path / "report.html"
    page.write_text(probed, encoding="utf-8")
    done = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    marker = re.search(r'<pre id="llmops-check">([^<]*)</pre>', done.stdout)
    assert marker, f"the load probe did not run:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    values = dict(item.split("=") for item in marker.group(1).split())
    features = len(report.features)
    assert values["images"] == values["decoded"] == str(features), marker.group(1)
    assert values["errors"] == "0", marker.group(1)
    assert values["rows"] == str(features)
    width, height = (int(v) for v in values["first"].split("x"))
    assert width >= 400 and height >= 100  # 8 x 2.6 inches at 90 dpi
    assert "DRIFT in" in done.stdout


@needs_chromium
def test_report_screenshot_is_not_blank(html: str, tmp_path: Path) -> None:
    import numpy as np
    from matplotlib import image

    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "shot.png"
    done = _chromium(
        tmp_path, "--hide-scrollbars", "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    ink = np.any(pixels < 0.9, axis=-1).mean()
    assert ink > 0.03, f"only {ink:.1%} of the page is not white"
    colours = np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 100  # text, table shading and the plots' blue and orange
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    orange = ((red - blue > 0.2) & (red > green)).mean()  # current side, blended or not
    steel_blue = ((blue - red > 0.15) & (blue > green)).mean()  # baseline side (and links)
    # measured: 0.6 % each with the plots, 0.2 % (links, shading) with the images blanked
    assert orange > 0.004 and steel_blue > 0.004, f"plots not visible: {orange=:.2%} {steel_blue=:.2%}"
