"""What every benchmark section shares: the molecules, the targets, the table and timing helpers,
the model under test and the data it runs on."""
from __future__ import annotations

import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path


# One molecule per size class (heavy atoms in brackets); the 30-atom one is the headline molecule.
MOLECULES = {
    "10": ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),                                            # 11
    "30": ("losartan", "CCCCc1nc(Cl)c(CO)n1Cc1ccc(-c2ccccc2-c2nn[nH]n2)cc1"),                # 30
    "60": ("vincristine",                                                                    # 60
           "CC[C@@]1(O)C[C@@H]2CN(CCc3c([nH]c4ccccc34)[C@@](C(=O)OC)(c3cc4c(cc3OC)N(C=O)[C@H]3[C@@](O)"
           "(C(=O)OC)[C@H](OC(C)=O)[C@]5(CC)C=CCN6CC[C@]43[C@@H]65)C2)C1"),
}


HEADLINE = "30"


# used when ChEBI-20 is not available (embedding pool, training molecules, tokenizer)
FALLBACK_POOL = [
    ("CC(=O)Oc1ccccc1C(=O)O", "The molecule is a member of benzoic acids and an acetate ester."),
    ("CC(C)Cc1ccc(C(C)C(=O)O)cc1", "The molecule is a monocarboxylic acid that is propionic acid substituted."),
    ("CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "The molecule is a trimethylxanthine. It has a role as a stimulant."),
    ("CC(=O)Nc1ccc(O)cc1", "The molecule is a member of phenols and a member of acetamides."),
    (MOLECULES["30"][1], "The molecule is a biphenylyltetrazole. It has a role as an antihypertensive agent."),
    ("O=C(O)c1ccccc1O", "The molecule is a monohydroxybenzoic acid. It has a role as a plant metabolite."),
    ("CCN(CC)CCNC(=O)c1ccc(N)cc1", "The molecule is a benzamide. It has a role as an anti-arrhythmia drug."),
    ("COc1ccc2[nH]cc(CCNC(C)=O)c2c1", "The molecule is a member of acetamides and a member of tryptamines."),
]


SCALING_SIZES = (25, 50, 100, 200, 400)


EMBED_BATCHES = (1, 32, 256)


CAPTION_TOKENS = 64


# target per headline key: (comparison, value, what it means)
TARGETS = {
    "analysis_ms_median": ("<=", 100.0, "analysis of a ~30-atom molecule without caption, ms"),
    "caption_ms_median": ("<=", 1000.0, "64-token greedy caption with KV cache, ms"),
    "embed_per_s_b256": (">=", 500.0, "embedding throughput at batch 256, molecules/s"),
    "mamba_400_over_50": ("<=", 10.0, "E_Mamba time at 400 atoms / at 50 atoms"),
    "app_cold_start_s": ("<=", 15.0, "app cold start to first rendered result, s"),
    "app_paste_first_s": ("<=", 0.5, "paste + Enter -> first results in the browser (warm), s"),
    "app_paste_caption_s": ("<=", 2.5, "paste + Enter -> caption in the browser (warm; target 1.5), s"),
    "app_click_caption_s": ("<=", 2.5, "click an example -> caption in the browser (warm), s"),
    "map_place_ms_median": ("<=", 500.0, "placing a new molecule on the map, ms"),
}


# ------------------------------------------------------------------------------------- helpers
@dataclass
class Row:
    section: str
    name: str
    median: float
    p90: float | None
    unit: str
    n: int
    target: str = ""
    met: bool | None = None
    note: str = ""


def stats(values: list[float]) -> tuple[float, float]:
    import numpy as np

    a = np.asarray(values, dtype=float)
    return float(np.median(a)), float(np.percentile(a, 90))


def timeit(fn, runs: int, warmup: int, sync=None) -> list[float]:
    """Seconds per call of ``fn`` over ``runs`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        out.append(time.perf_counter() - t0)
    return out


def target_met(key: str, value) -> tuple[str, bool | None]:
    if key not in TARGETS or value is None:
        return "", None
    op, target, _ = TARGETS[key]
    return f"{op} {target:g}", (value <= target if op == "<=" else value >= target)


class Report:
    """Collects the table rows and the JSON result."""

    def __init__(self, quick: bool) -> None:
        self.rows: list[Row] = []
        self.result: dict = {"quick": quick, "sections": {}, "skipped": {}, "notes": []}

    def add(self, section: str, name: str, seconds_or_value: list[float] | float, unit: str = "ms",
            key: str | None = None, note: str = "", scale: float = 1000.0) -> float:
        """A row from timings in seconds (scaled to ``unit``) or from one value already in ``unit``."""
        if isinstance(seconds_or_value, list):
            med, p90 = stats([v * scale for v in seconds_or_value])
            n = len(seconds_or_value)
        else:
            med, p90, n = float(seconds_or_value), None, 1
        target, met = target_met(key, med) if key else ("", None)
        self.rows.append(Row(section, name, med, p90, unit, n, target, met, note))
        return med

    def skip(self, section: str, why: str) -> None:
        self.result["skipped"][section] = why
        print(f"[bench] {section}: skipped ({why})", file=sys.stderr, flush=True)

    def table(self) -> str:
        lines = [f"{'section':<9} {'measurement':<56} {'median':>10} {'p90':>10}  {'unit':<7} {'n':>3}  "
                 f"{'target':<9} met"]
        for r in self.rows:
            p90 = f"{r.p90:10.3g}" if r.p90 is not None else " " * 10
            met = "" if r.met is None else ("yes" if r.met else "NO")
            lines.append(f"{r.section:<9} {r.name[:56]:<56} {r.median:10.4g} {p90}  {r.unit:<7} {r.n:>3}  "
                         f"{r.target:<9} {met}" + (f"  ({r.note})" if r.note else ""))
        return "\n".join(lines)


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- model
def chebi(split: str = "validation", data_dir=None):
    """(smiles, captions) of a ChEBI-20 split, or None when the data is missing."""
    try:
        from hsanet.data.chebi import load_chebi

        s = load_chebi(split, data_dir)
        return list(s.smiles), list(s.descriptions)
    except (FileNotFoundError, OSError):
        return None


def load_model(checkpoint: str | None, device: str, data_dir=None):
    """(model, label): the checkpoint, else the embedded default, else an untrained HSA-Net whose
    tokenizer is trained here on a few hundred ChEBI-20 captions (or a built-in handful)."""
    import torch

    from hsanet.models.hsanet import HSANet
    from hsanet.paths import DEFAULT_CHECKPOINT

    if checkpoint or DEFAULT_CHECKPOINT.is_dir():
        folder = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        model = HSANet.from_pretrained(folder, device=device)
        state = "trained" if model.meta.get("trained") else "untrained"
        try:
            shown = str(folder.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            shown = str(folder)
        return model.eval(), f"{shown} ({state})"
    from hsanet.lm import TextTokenizer

    data = chebi("validation", data_dir)
    if data:
        texts = data[0][:500] + data[1][:500]
        src = "500 ChEBI-20 validation pairs"
    else:
        texts = [s for s, _ in FALLBACK_POOL] + [c for _, c in FALLBACK_POOL]
        src = "a built-in handful of captions"
    tok = TextTokenizer.train(texts * (1 if data else 3), vocab_size=6000, min_frequency=2 if data else 1)
    torch.manual_seed(0)
    model = HSANet(tokenizer=tok).to(device).eval()
    return model, f"untrained default config (no checkpoint; tokenizer trained on the fly on {src})"


def drug_like_pool(n: int, data_dir=None) -> list[str]:
    """``n`` drug-like SMILES: ChEBI-20 test molecules with 10-50 heavy atoms (cycled if needed)."""
    from hsanet.featurizers import MoleculeError, parse

    data = chebi("test", data_dir)
    cands = data[0] if data else [s for s, _ in FALLBACK_POOL]
    out = []
    for s in cands:
        try:
            m = parse(s)
        except MoleculeError:
            continue
        if 10 <= m.num_atoms <= 50 or not data:
            out.append(s)
        if len(out) >= n:
            break
    while len(out) < n:
        out += out[: n - len(out)]
    return out


def measure_peak(dtype, n: int = 2048, reps: int = 5, device: str = "cpu", sync=None) -> float:
    """This machine's matmul peak now: TFLOP/s of an n x n x n product in ``dtype`` (best of ``reps``)."""
    import torch

    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(reps + 1):
        if sync:
            sync()
        t0 = time.perf_counter()
        a @ b
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e12


def autocast(device: str, precision: str):
    import torch

    if precision.startswith("bf16"):
        return torch.autocast(device, torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device, torch.float16)
    return nullcontext()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:
        pass
    return str(o)
