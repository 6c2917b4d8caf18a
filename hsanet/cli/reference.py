"""``hsanet reference build``: the reference set behind the app's embedding map
(:mod:`hsanet.reference.build`)."""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from hsanet.cli.errors import UsageError, check_device
from hsanet.paths import REFERENCE_DIR


# ---------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    """Add ``hsanet reference build`` to the ``hsanet`` command line."""
    p = subparsers.add_parser("reference", help="build the reference set behind the app's embedding map")
    sub = p.add_subparsers(dest="reference_command", required=True)
    b = sub.add_parser("build", help="run the model over a molecule set, fit UMAP maps, save to assets/reference",
                       description="Run HSA-Net over the ChEBI-20 test molecules (or --smiles-file), fit one 2-D "
                                   "UMAP and k-means per stage and save the reference set (JSON + npz, no pickle).")
    b.add_argument("--checkpoint", help="checkpoint folder (default: the embedded model in assets/)")
    b.add_argument("--untrained", action="store_true",
                   help="use an untrained model when no checkpoint exists (development only)")
    b.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    b.add_argument("--data-dir", help="data folder (default: ../shared/data or $HSANET_DATA)")
    b.add_argument("--split", default="test", choices=["test", "validation", "train"], help="ChEBI-20 split")
    b.add_argument("--smiles-file", help="your own molecules: one SMILES per line, optionally followed by "
                                         "whitespace and an id")
    b.add_argument("--limit", type=int, help="use only the first N molecules")
    b.add_argument("--out", default=str(REFERENCE_DIR), help="output folder (default: assets/reference)")
    b.add_argument("--no-caption", action="store_true", help="skip caption generation (fast)")
    b.add_argument("--captions-from", dest="captions_from",
                   help="predictions TSV of the same model (hsanet evaluate --out): reuse its captions")
    b.add_argument("--max-new-tokens", type=int, default=None)
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=cmd_build)


def _read_smiles_file(path: str) -> tuple[list[str], list[str]]:


    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    smiles, ids = [], []
    for i, line in enumerate(lines):
        parts = line.split(None, 1)
        if not parts or parts[0].startswith("#"):
            continue
        smiles.append(parts[0])
        ids.append(parts[1].strip() if len(parts) > 1 else str(i + 1))
    if not smiles:
        raise UsageError(f"{path} holds no SMILES")
    return smiles, ids


def _command_line(args) -> str:
    """The ``hsanet reference build`` command that reproduces this build (recorded in meta.json)."""
    parts = ["hsanet", "reference", "build"]
    for opt in ("checkpoint", "device", "data_dir", "smiles_file", "limit", "max_new_tokens", "captions_from"):
        value = getattr(args, opt)
        if value is not None:
            parts += ["--" + opt.replace("_", "-"), str(value)]
    if not args.smiles_file and args.split != "test":
        parts += ["--split", args.split]
    if args.out != str(REFERENCE_DIR):
        parts += ["--out", args.out]
    for opt, default in (("batch_size", 64), ("seed", 0)):
        if getattr(args, opt) != default:
            parts += ["--" + opt.replace("_", "-"), str(getattr(args, opt))]
    parts += [f for f, on in (("--no-caption", args.no_caption), ("--untrained", args.untrained)) if on]
    return shlex.join(parts)


def cmd_build(args) -> int:

    from hsanet.paths import DEFAULT_CHECKPOINT
    from hsanet.reference.build import build_reference
    from hsanet.reference.store import FILES

    if args.limit is not None and args.limit < 3:
        raise UsageError("--limit must be at least 3")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    check_device(args.device)
    descriptions = None
    if args.smiles_file:
        smiles, cids = _read_smiles_file(args.smiles_file)
        source = args.smiles_file
    else:
        from hsanet.data.chebi import load_chebi

        split = load_chebi(args.split, data_dir=args.data_dir)
        smiles, cids, descriptions = list(split.smiles), list(split.cids), list(split.descriptions)
        source = f"ChEBI-20 {args.split}"
    if args.limit is not None:
        smiles, cids = smiles[:args.limit], cids[:args.limit]
        descriptions = descriptions[:args.limit] if descriptions is not None else None

    captions = None
    if args.captions_from:
        from hsanet.metrics.captions import outputs_for

        try:
            captions, missing = outputs_for(args.captions_from, smiles)
        except ValueError as exc:            # not a predictions TSV (missing columns, empty)
            raise UsageError(str(exc)) from None
        if missing:
            raise UsageError(f"{args.captions_from} has no caption for {missing} of the {len(smiles)} molecules")

    from hsanet.models.hsanet import HSANet

    checkpoint = args.checkpoint
    if not checkpoint and not DEFAULT_CHECKPOINT.is_dir():
        if not args.untrained:
            raise UsageError(f"no checkpoint: {DEFAULT_CHECKPOINT} does not exist; pass --checkpoint DIR "
                             "(or --untrained for a development map)")
        print("hsanet reference: using an untrained model (no captions)", file=sys.stderr)
        model = HSANet().eval()
        checkpoint_name = "untrained"
    else:
        model = HSANet.from_pretrained(checkpoint or None, device=args.device)
        checkpoint_name = str(Path(checkpoint or DEFAULT_CHECKPOINT).resolve().name)
    caption = not args.no_caption and model.decoder is not None
    print(f"reference: {len(smiles)} molecules from {source}, model {checkpoint_name} "
          f"({'trained' if model.meta.get('trained') else 'untrained'}), captions {'on' if caption else 'off'}",
          flush=True)
    if captions is not None:
        print(f"reference: captions taken from {args.captions_from}", flush=True)
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(smiles), desc="analyzing", unit="mol", file=sys.stderr, mininterval=2.0)

    def progress(done, total):          # progress on stderr; the summary lines on stdout
        bar.total = total
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    command = _command_line(args)
    ref = build_reference(model, smiles, args.out, descriptions=descriptions, cids=cids, caption=caption,
                          captions=captions,
                          batch_size=args.batch_size, seed=args.seed, progress=progress,
                          max_new_tokens=args.max_new_tokens, checkpoint=checkpoint_name, command=command)
    size = sum(f.stat().st_size for f in Path(args.out).iterdir() if f.name in FILES)
    t = ref.meta["timings_s"]
    print(f"reference: {len(ref)} molecules ({len(ref.meta['skipped'])} skipped), {len(ref.stages)} stages, "
          f"saved to {args.out} ({size / 1e6:.1f} MB); analyze {t['analyze']:.0f} s, maps {t['maps']:.0f} s, "
          f"total {time.perf_counter() - t0:.0f} s", flush=True)
    return 0
