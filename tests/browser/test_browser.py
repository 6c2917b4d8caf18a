"""Real-browser test of the app: Playwright driving Debian's Chromium (``/usr/bin/chromium``).

It starts ``streamlit run app/main.py`` on 127.0.0.1, draws benzene in the Ketcher editor (clear,
benzene template, click on the canvas, Apply) and checks that the app received and analysed it; then
enters a SMILES and waits for the caption and the plots. Screenshots go to each test's temporary
folder. (Drawing comes first so that the editor's slow first load is waited for only once.)

``HSANET_SCREENSHOT=docs/screenshot.png pytest tests/browser/test_browser.py`` also writes the README's
screenshot there (on the embedded default model when it exists, else on the untrained fallback).

Never run ``playwright install`` (it downloads browsers): the system Chromium is used.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hsanet import HSANet, HSANetConfig
from hsanet.bench.browser import CHROMIUM, CHROMIUM_FLAGS, app_command, free_port, healthy

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:          # the app package lives at the repository root
    sys.path.insert(0, str(ROOT))
KETCHER = 'iframe[title="streamlit_ketcher.streamlit_ketcher"]'
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
SLOW = 420_000         # ms: the first load compiles Ketcher's large bundle, on a slow shared CPU
SCREENSHOT = os.environ.get("HSANET_SCREENSHOT")

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`./run setup` does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tokenizer, tmp_path_factory):
    """The app on a free port of 127.0.0.1 (a small untrained checkpoint unless taking the README
    screenshot)."""
    tmp = tmp_path_factory.mktemp("browser")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if SCREENSHOT:
        env.pop("HSANET_CHECKPOINT", None)     # the embedded default, or the untrained fallback
    else:
        torch.manual_seed(0)
        cfg = HSANetConfig(num_layers=2, hidden=32, proj_dim=16, num_queries=2, num_heads=4, d_state=8,
                           num_motif_queries=2, lm_dim=32, lm_layers=1, lm_heads=2, max_positions=256,
                           max_caption_tokens=8, retrieval_k=0)
        HSANet(cfg, tokenizer).save_pretrained(tmp / "model")
        env["HSANET_CHECKPOINT"] = str(tmp / "model")
        (tmp / "no-data").mkdir()
        env["HSANET_DATA"] = str(tmp / "no-data")    # no ChEBI-20 indexing competing for the CPU
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(app_command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while not healthy(url):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start: {(tmp / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(SLOW)
        pg = context.new_page()
        _open(pg, server)
        yield pg
        context.close()


def _open(pg, url: str) -> None:
    """Load the page with explicit waits; the first plain load after a server start can come back
    blank, so reload until the app's title shows."""
    for attempt in range(4):
        pg.goto(url, wait_until="domcontentloaded", timeout=SLOW)
        try:
            pg.get_by_role("heading", name="HSA-Net Explorer").first.wait_for(timeout=90_000)
            return
        except sync_api.TimeoutError:
            if attempt == 3:
                raise


def _smiles_box(pg):
    return pg.locator('[data-testid="stTextInput"] input').first


def _wait_idle(pg) -> None:
    """Wait until Streamlit has finished the current script run."""
    pg.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=SLOW)


def _tall_screenshot(pg, path: Path, height: int | None = None) -> None:
    """Screenshot of the app; Streamlit scrolls inside its main container, so the window is made tall
    (the whole page, or ``height`` pixels) for the picture."""
    size = pg.viewport_size
    full = pg.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]') || document.body).scrollHeight")
    pg.set_viewport_size({"width": size["width"], "height": int(height or min(full, 12000))})
    pg.wait_for_timeout(3000)                                               # plots re-layout
    pg.screenshot(path=str(path))
    pg.set_viewport_size(size)


def test_draw_benzene_in_ketcher(page, tmp_path):
    frame = page.frame_locator(KETCHER)
    frame.get_by_role("button", name="Apply").wait_for()
    page.wait_for_function(
        f"() => {{ const f = document.querySelector('{KETCHER}');"
        " return f && f.contentDocument && f.contentDocument.querySelector('button[title^=\"Benzene\"]'); }",
        timeout=SLOW)
    frame.locator('button[title^="Clear Canvas"]').click()
    frame.locator('button[title^="Benzene"]').click()
    # click in the middle of the drawing area (the largest SVG of the editor)
    handle = page.locator(KETCHER).element_handle()
    editor = handle.content_frame()
    box = editor.evaluate("""() => {
        let best = null, area = 0;
        for (const s of document.querySelectorAll('svg')) {
            const r = s.getBoundingClientRect();
            if (r.width * r.height > area) { area = r.width * r.height; best = r; }
        }
        return {x: best.x + best.width / 2, y: best.y + best.height / 2};
    }""")
    outer = handle.bounding_box()
    page.mouse.click(outer["x"] + box["x"], outer["y"] + box["y"])
    frame.get_by_role("button", name="Apply").click()
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=\"stTextInput\"] input');"
        " return i && i.value === 'c1ccccc1'; }", timeout=SLOW)
    page.get_by_text("6 heavy atoms").first.wait_for()                    # analysed
    _wait_idle(page)
    page.screenshot(path=str(tmp_path / "benzene.png"))


def test_smiles_caption_and_plots(page, tmp_path):
    box = _smiles_box(page)
    box.fill(ASPIRIN)
    box.press("Enter")
    page.get_by_text(f"{ASPIRIN}", exact=True).first.wait_for()           # canonical SMILES in view 2
    page.get_by_text("Generated caption").first.wait_for()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .main-svg').length >= 5", timeout=SLOW)
    page.get_by_text("13 heavy atoms").first.wait_for()
    _wait_idle(page)
    _tall_screenshot(page, tmp_path / "aspirin.png")
    if SCREENSHOT:
        out = Path(SCREENSHOT)
        out = out if out.is_absolute() else ROOT / out
        out.parent.mkdir(parents=True, exist_ok=True)
        page.wait_for_function(                                           # the editor shows the molecule
            f"() => {{ const f = document.querySelector('{KETCHER}');"
            " return f && f.contentDocument && f.contentDocument.querySelector('button[title^=\"Benzene\"]'); }",
            timeout=SLOW)
        _tall_screenshot(page, out, height=1900)


CANVAS_SMILES_JS = (f"async () => {{ const f = document.querySelector('{KETCHER}');"
                    " const k = f && f.contentWindow && f.contentWindow.__hsanetKetcher;"
                    " return k ? await k.getSmiles() : null; }")


def _canvas_shows(pg, smiles: str | None) -> None:
    """Wait until the editor's canvas holds ``smiles`` (canonical; None: an empty canvas)."""
    from hsanet.featurizers import MoleculeError, parse

    deadline = time.time() + 60
    while True:
        got = pg.evaluate(CANVAS_SMILES_JS)
        try:
            shown = parse(got).smiles if got else None
        except MoleculeError:
            shown = got
        if shown == smiles:
            return
        if time.time() > deadline:
            raise AssertionError(f"the canvas shows {got!r}, not {smiles!r}")
        pg.wait_for_timeout(200)


def test_canvas_follows_the_input_without_remounting(page):
    """The editor shows the molecule being analysed (a pasted SMILES, an example, nothing after a
    bad input) and is never re-mounted: the same frame window keeps its state throughout."""
    from app.views.input import EXAMPLES
    from hsanet.featurizers import parse

    _wait_idle(page)
    page.evaluate(f"() => {{ document.querySelector('{KETCHER}').contentWindow.__mark = 'kept'; }}")
    box = _smiles_box(page)
    box.fill("CCN(CC)CC")
    box.press("Enter")
    _canvas_shows(page, "CCN(CC)CC")
    name, smiles, size = EXAMPLES[3]
    page.get_by_role("button", name=f"{name} ({size})").click()
    _canvas_shows(page, parse(smiles).smiles)
    box.fill("C1CC")                          # an unclosed ring: not a molecule
    box.press("Enter")
    page.get_by_text("Not a molecule HSA-Net can analyze").first.wait_for()
    _canvas_shows(page, None)
    assert page.evaluate(f"() => document.querySelector('{KETCHER}').contentWindow.__mark") == "kept"
    box.fill(ASPIRIN)
    box.press("Enter")
    _canvas_shows(page, ASPIRIN)
    _wait_idle(page)


POINT_JS = """() => {
    const gd = document.querySelector('.st-key-map_chart .js-plotly-plot');
    if (!gd || !gd._fullLayout || !gd._fullData) return null;
    const t = gd._fullData.find(d => d.customdata && d.x && d.x.length);
    if (!t) return null;
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
    return {x: r.left + xa._offset + xa.l2p(t.x[0]), y: r.top + ya._offset + ya.l2p(t.y[0]), row: t.customdata[0]};
}"""
TIP_JS = """() => {
    const tip = document.querySelector('[data-testid="hsanet-structure-tip"]');
    const img = tip && tip.querySelector('img');
    return !!(tip && tip.style.display === 'block' && img.complete && img.naturalWidth > 0) && img.src;
}"""


def test_map_hover_shows_the_structure_picture(page):
    """Hovering a reference point on the embedding map shows that molecule's structure picture."""
    from app import state

    if state.paths.REFERENCE_DIR.is_dir() is False:
        pytest.skip("no reference set (assets/reference), so no map")
    page.locator(".st-key-map_chart").scroll_into_view_if_needed()
    page.wait_for_function(POINT_JS, timeout=SLOW)
    deadline = time.time() + 90                         # the pictures are drawn in the background
    while True:
        point = page.evaluate(POINT_JS)
        page.mouse.move(point["x"] - 30, point["y"] - 30)
        page.mouse.move(point["x"], point["y"], steps=5)
        page.wait_for_timeout(400)
        src = page.evaluate(TIP_JS)
        if src:
            break
        assert time.time() < deadline, "no structure picture appeared on hover"
    assert re.search(r"/app/static/structures/\d+/\d+\.png$", src), src     # a reference row's picture
    page.mouse.move(5, 5)


EDITOR_JS = """() => {
    const vis = (el) => { if (!el) return false; const r = el.getBoundingClientRect();
        return r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight; };
    const byTitle = (t) => [...document.querySelectorAll('button[title]')].find(b => b.title.startsWith(t));
    const zoom = [...document.querySelectorAll('span, div')].find(e => /^\\d+%$/.test((e.innerText || '').trim()));
    return {atoms: ['Hydrogen', 'Carbon', 'Nitrogen', 'Oxygen', 'Periodic Table'].filter(t => !vis(byTitle(t))),
            zoom: zoom ? zoom.innerText.trim() : null, zoomShown: vis(zoom)};
}"""


def test_editor_has_room_for_its_toolbars(page):
    """The Ketcher frame is wide enough: the atom palette and the whole zoom label are inside it."""
    frame = page.locator(KETCHER).element_handle().content_frame()
    got = frame.evaluate(EDITOR_JS)
    assert got["atoms"] == [], f"atom buttons cut off or hidden: {got['atoms']}"
    assert got["zoom"] and got["zoom"].endswith("%") and got["zoomShown"], got


def test_export_renders_svg_and_png_offline():
    """The export view's server-side rendering (kaleido + the system Chromium, MathJax off)."""
    import plotly.graph_objects as go

    from app.views.export import render_image

    fig = go.Figure(go.Bar(x=["level 0", "level 1"], y=[0.3, 0.7]), layout=dict(title="gate", height=300))
    svg = render_image(fig.to_json(), "svg")
    assert svg.lstrip().startswith(b"<svg") and b"level 1" in svg
    png = render_image(fig.to_json(), "png")
    assert png.startswith(b"\x89PNG")
