"""The ``app`` and ``map`` sections: the app in a real browser (Chromium, Playwright): its cold start,
and on the warm server what a user waits for (paste a SMILES and press Enter -> first results and
caption; click an example -> caption); and the time ``ReferenceSet.place`` takes to put a new
molecule on the map."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hsanet.bench.core import FALLBACK_POOL, MOLECULES, Report, say, timeit


# the molecule view's summary line appears only once a trace is rendered: "15 heavy atoms · 3 BRICS fragments"
APP_RESULT_JS = r"() => /\d+\s*heavy atoms\s*·\s*\d+\s*BRICS/.test(document.body.innerText)"


# the caption section's label appears once the second pass (with the caption) is rendered
APP_CAPTION_JS = r"() => /Generated caption \(/.test(document.body.innerText)"
# a given molecule's structural views (its canonical SMILES in the molecule view) / its caption written
SHOWN_JS = r"(smi) => document.body.innerText.includes(smi)"
CAPTIONED_JS = (r"(smi) => document.body.innerText.includes(smi) && /Generated caption \(/.test(document.body.innerText)"
                r" && !document.body.innerText.includes('Writing the caption')")
# the paste set (caffeine, ibuprofen, glucose, testosterone) and two example buttons
PASTE = ("CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O",
         "C[C@]12CC[C@H]3[C@@H](CCC4=CC(=O)CC[C@@]34C)[C@@H]1CC[C@@H]2O")
CLICK = ("Benzoic acid", "Cefadroxil")


def _interactions(page, timeout_ms: float) -> dict[str, list[float]]:
    """On a warm server: paste a SMILES and press Enter, or click an example, and time until the
    molecule's first results (its canonical SMILES in the molecule view) and its caption are shown."""
    import sys

    from hsanet.featurizers import parse
    from hsanet.paths import REPO_ROOT

    if str(REPO_ROOT) not in sys.path:          # the app package sits at the repository root
        sys.path.insert(0, str(REPO_ROOT))
    from app.views.input import EXAMPLES

    got = {"paste_first_s": [], "paste_caption_s": [], "click_caption_s": []}
    box = page.locator('[data-testid="stTextInput"] input').first
    for smiles in PASTE:
        canonical = parse(smiles).smiles
        box.fill(smiles)
        t0 = time.perf_counter()
        box.press("Enter")
        page.wait_for_function(SHOWN_JS, arg=canonical, timeout=timeout_ms, polling=20)
        got["paste_first_s"].append(time.perf_counter() - t0)
        page.wait_for_function(CAPTIONED_JS, arg=canonical, timeout=timeout_ms, polling=20)
        got["paste_caption_s"].append(time.perf_counter() - t0)
    for name in CLICK:
        label, smiles = next((f"{n} ({size})", s) for n, s, size in EXAMPLES if n == name)
        canonical = parse(smiles).smiles
        t0 = time.perf_counter()
        page.get_by_role("button", name=label).click()
        page.wait_for_function(CAPTIONED_JS, arg=canonical, timeout=timeout_ms, polling=20)
        got["click_caption_s"].append(time.perf_counter() - t0)
    return got


def bench_app(rep: Report, runs: int, checkpoint: str | None, timeout_s: float = 180.0,
              section: str = "app") -> dict:
    """Cold start: server process start -> first trace rendered in headless Chromium, per run."""
    from hsanet.bench.browser import APP, CHROMIUM, CHROMIUM_FLAGS, app_command, chromium_available, free_port, healthy
    from hsanet.paths import REPO_ROOT

    if not APP.exists():
        rep.skip(section, "app/main.py is missing")
        return {}
    if not chromium_available():
        rep.skip(section, f"{CHROMIUM} is missing (Debian package chromium)")
        return {}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        rep.skip(section, "playwright is not installed")
        return {}
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", PYTHONUNBUFFERED="1")
    if checkpoint:
        env["HSANET_CHECKPOINT"] = str(Path(checkpoint).resolve())
    ready, first, captioned, errors = [], [], [], []
    warm: dict[str, list[float]] = {"paste_first_s": [], "paste_caption_s": [], "click_caption_s": []}
    with sync_playwright() as pw:
        for i in range(runs):
            port = free_port()
            profile = tempfile.mkdtemp(prefix="hsanet-bench-chromium-")
            server_log = tempfile.TemporaryFile()
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                        args=CHROMIUM_FLAGS)
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            cmd = app_command(port)
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=env, stdout=server_log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                url = f"http://127.0.0.1:{port}"
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"streamlit exited with code {proc.returncode}")
                    if time.perf_counter() - t0 > timeout_s:
                        raise TimeoutError("the server did not answer")
                    if healthy(url, timeout=1):
                        break
                    time.sleep(0.05)
                t_ready = time.perf_counter() - t0
                page.goto(url, wait_until="domcontentloaded")
                left_ms = max(1000.0, (timeout_s - (time.perf_counter() - t0)) * 1000.0)
                page.wait_for_function(APP_RESULT_JS, timeout=left_ms, polling=50)
                t_first = time.perf_counter() - t0
                left_ms = max(1000.0, (timeout_s - (time.perf_counter() - t0)) * 1000.0)
                page.wait_for_function(APP_CAPTION_JS, timeout=left_ms, polling=50)
                t_caption = time.perf_counter() - t0
                ready.append(t_ready)
                first.append(t_first)
                captioned.append(t_caption)
                say(f"app cold start {i + 1}/{runs}: server {t_ready:.1f} s, first result {t_first:.1f} s, "
                     f"caption {t_caption:.1f} s")
                if i == 0:                     # the warm server: what a user waits for after each input
                    for k, v in _interactions(page, 60_000.0).items():
                        warm[k] += v
                    say("app, warm: paste -> caption " + ", ".join(f"{x:.2f}" for x in warm["paste_caption_s"])
                        + " s; click -> caption " + ", ".join(f"{x:.2f}" for x in warm["click_caption_s"]) + " s")
            except Exception as exc:  # noqa: BLE001 - recorded, the benchmark goes on
                server_log.seek(0)
                tail = server_log.read().decode(errors="replace")[-600:]
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]} | server log: {tail}")
                say(f"app run {i + 1} failed: {errors[-1]}")
            finally:
                try:
                    os.killpg(proc.pid, 15)
                    proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, 9)
                    except ProcessLookupError:
                        pass
                ctx.close()
                server_log.close()
                shutil.rmtree(profile, ignore_errors=True)
    out = {"runs": len(first), "errors": errors, "result_marker": APP_RESULT_JS}
    if first:
        out["cold_start_s"] = rep.add(section, "cold start -> first result in browser", first, unit="s",
                                      key="app_cold_start_s", scale=1.0,
                                      note="server start to the molecule view of the default example")
        out["caption_s"] = rep.add(section, "cold start -> caption rendered", captioned, unit="s", scale=1.0,
                                   key=None,
                                   note="the second pass: the same molecule with its 64-token greedy caption")
        out["server_ready_s"] = rep.add(section, "cold start -> server answers /_stcore/health", ready,
                                        unit="s", scale=1.0)
    if warm["paste_caption_s"]:
        out["paste_first_s"] = rep.add(section, "paste SMILES + Enter -> first results (warm)", warm["paste_first_s"],
                                       unit="s", scale=1.0, key="app_paste_first_s",
                                       note="caffeine, ibuprofen, glucose, testosterone: the molecule view shows it")
        out["paste_caption_s"] = rep.add(section, "paste SMILES + Enter -> caption shown (warm)",
                                         warm["paste_caption_s"], unit="s", scale=1.0, key="app_paste_caption_s",
                                         note="the same four; the caption section written")
        out["click_caption_s"] = rep.add(section, "click an example -> caption shown (warm)", warm["click_caption_s"],
                                         unit="s", scale=1.0, key="app_click_caption_s",
                                         note="benzoic acid, cefadroxil")
    else:
        rep.skip(section, "every run failed: " + (errors[0] if errors else "?"))
    return out


def bench_map(model, rep: Report, runs: int, warmup: int, folder=None, section: str = "map") -> dict:
    """Placing a new molecule on the reference map: ``ReferenceSet.place`` for a computed trace (what the
    app does once the analysis is there), and analysis without caption + placement."""
    from hsanet.paths import REFERENCE_DIR

    try:
        from hsanet.reference.store import ReferenceSet
    except ImportError as exc:
        rep.skip(section, f"hsanet.reference.store is not available ({exc})")
        return {}
    folder = Path(folder) if folder else REFERENCE_DIR
    if not folder.is_dir():
        rep.skip(section, f"no reference set at {folder} (build it with `hsanet reference build`)")
        return {}
    t0 = time.perf_counter()
    ref = ReferenceSet.load(folder)
    load_s = time.perf_counter() - t0
    stages = list(ref.stages)
    smiles = [s for _, s in MOLECULES.values()] + [s for s, _ in FALLBACK_POOL[:5]]
    traces = [model.analyze(s, caption=False) for s in smiles]
    out = {"load_s": load_s, "stages": [str(s) for s in stages], "reference_size": len(ref)}
    stage = stages[-1]                                   # the app's default stage

    def place_one(trace, st):
        try:                                             # exact=False: compute even if the molecule is in the set
            return ref.place(trace, st, exact=False)
        except TypeError:
            return ref.place(trace, st)

    try:
        t0 = time.perf_counter()
        place_one(traces[0], stage)
        out["first_place_ms"] = (time.perf_counter() - t0) * 1000.0
    except Exception as exc:  # noqa: BLE001 - e.g. a reference set built with another model
        rep.skip(section, f"place() failed: {type(exc).__name__}: {exc}")
        return out
    it = iter(range(10 ** 9))

    def place(st=stage):
        place_one(traces[next(it) % len(traces)], st)

    out["place_ms"] = rep.add(section, f"place a new molecule on the map ({stage})", timeit(place, runs, warmup),
                              key="map_place_ms_median", note=f"{len(ref)} reference molecules; trace given")

    def analyze_place():
        place_one(model.analyze(smiles[next(it) % len(smiles)], caption=False), stage)

    out["analyze_place_ms"] = rep.add(section, "analysis (no caption) + place on the map",
                                      timeit(analyze_place, runs, warmup))
    rep.add(section, "first place() in the process", out["first_place_ms"], unit="ms")
    rep.add(section, "ReferenceSet.load()", load_s * 1000.0, unit="ms")
    for st in stages[:-1]:
        out[f"place_ms_{st}"] = rep.add(section, f"place a new molecule on the map ({st})",
                                        timeit(lambda st=st: place(st), runs, warmup))
    return out
