"""``hsanet analyze``: run HSA-Net on one molecule or a file of them and print the trace
(:mod:`hsanet.inference.analyze`)."""
from __future__ import annotations

import contextlib
import io
import json
import sys

from hsanet.cli.errors import UsageError, check_at_least, check_device, check_strategy
from hsanet.config import VARIANTS


def _load_model(args):
    from hsanet.models.hsanet import HSANet
    from hsanet.paths import DEFAULT_CHECKPOINT

    checkpoint = getattr(args, "checkpoint", None)
    if not checkpoint and not DEFAULT_CHECKPOINT.is_dir():
        print("hsanet: no embedded default model in assets/ yet; using an untrained model", file=sys.stderr)
        model = HSANet().eval()
    else:
        from hsanet.config import ConfigError
        from hsanet.models.hsanet import CheckpointError

        try:
            model = HSANet.from_pretrained(checkpoint or None, device=getattr(args, "device", None))
        except (CheckpointError, ConfigError, UsageError):
            raise
        except Exception as exc:   # truncated weights, bad JSON side files, shape mismatches: one line
            raise UsageError(f"cannot load the checkpoint {checkpoint or DEFAULT_CHECKPOINT}: "
                             f"{type(exc).__name__}: {exc}") from exc
    variant = getattr(args, "variant", None)
    if variant and variant != model.config.variant:
        model.set_variant(variant)
    return model


def cmd_analyze(args) -> int:
    from hsanet.featurizers import MoleculeError, parse

    if args.devices and (not args.file or (args.file == "-" and args.devices > 1)):
        raise UsageError("--devices needs --file FILE (a file every process can read, not stdin)")
    if args.devices < 0:
        raise UsageError(f"--devices must be >= 0, got {args.devices}")
    check_at_least(("--beams", args.beams, 1), ("--max-new-tokens", args.max_new_tokens, 1))
    check_device(args.device)
    check_at_least(("--num-nodes", args.num_nodes, 1))
    check_strategy(args.strategy)
    if args.jsonl and not args.file:
        args.json = True          # one molecule: its JSON object is one JSON line
    # bad input (a bad molecule, an unreadable file) is reported before the model loads
    if args.file:
        # opened before the model loads (a bad path fails fast), read line by line (any size);
        # undecodable bytes become U+FFFD, so that line gets an error object, not the whole batch
        if args.file == "-":
            lines = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        else:
            try:
                lines = open(args.file, encoding="utf-8", errors="replace")
            except OSError as exc:
                raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    else:
        if not args.smiles:
            raise UsageError("give a SMILES string or --file FILE")
        parse(args.smiles)
    try:
        model = _load_model(args)
    except BaseException:
        if args.file and args.file != "-":
            lines.close()
        raise
    kwargs = dict(caption=not args.no_caption, num_beams=args.beams, max_new_tokens=args.max_new_tokens)

    def one(line: str) -> dict:
        try:
            return model.analyze(line, **kwargs).to_json()
        except MoleculeError as exc:
            return {"input": line, "error": str(exc)}
        except Exception as exc:   # a bad line never stops the batch
            return {"input": line, "error": f"analysis failed ({type(exc).__name__}: {exc})"}

    if args.file:
        with lines if args.file != "-" else contextlib.nullcontext(lines):
            if args.devices:           # Lightning's predict loop on several devices; rank 0 prints
                from hsanet.inference.predict import predict_rows

                rows = [ln.rstrip("\r\n") for ln in lines]
                got = predict_rows(model, [r for r in rows if r.strip()], lambda chunk: [one(r) for r in chunk],
                                   batch_size=16, devices=args.devices, strategy=args.strategy,
                                   num_nodes=args.num_nodes)
                for obj in got or []:
                    print(json.dumps(obj), flush=True)
                return 0
            from tqdm.auto import tqdm

            # progress on stderr when it is a terminal (a count: the file is read as it goes); JSON on stdout
            with tqdm(desc="analyzing", unit="mol", file=sys.stderr, mininterval=2.0, disable=None) as bar:
                for line in lines:
                    line = line.rstrip("\r\n")
                    if not line.strip():
                        continue
                    print(json.dumps(one(line)), flush=True)
                    bar.update(1)
        return 0
    if not args.smiles:
        raise UsageError("give a SMILES string or --file FILE")
    try:
        trace = model.analyze(args.smiles, **kwargs)
    except MoleculeError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps(trace.to_json()))
        return 0
    print(f"SMILES     {trace.smiles}  ({trace.num_atoms} heavy atoms, {trace.num_fragments} fragment(s))")
    print(f"model      variant={trace.variant} trained={trace.trained} device={trace.device} "
          f"mamba={trace.mamba_backend}")
    print("level  MAD     Dirichlet  eff.rank  mean cos  p_attn  p_mamba  choice")
    for lv in trace.levels:
        m = lv.metrics
        print(f"{lv.level:>5}  {m['mad']:.3f}   {m['dirichlet_energy']:9.3f}  {m['effective_rank']:8.2f}  "
              f"{m['mean_cosine']:8.3f}  {lv.p_attn:.3f}   {lv.p_mamba:.3f}    {lv.choice}")
    for name, value in trace.properties.items():
        print(f"property   {name}: {value:.3f}")
    print(f"caption    {trace.caption}")
    for w in trace.warnings:
        print(f"warning    {w}")
    return 0


def register(sub) -> None:
    a = sub.add_parser("analyze", help="run HSA-Net on a molecule and print its trace")
    a.add_argument("smiles", nargs="?", help="SMILES string (or a MOL block)")
    a.add_argument("--file", help="one molecule per line ('-' reads stdin); prints one JSON object per line")
    a.add_argument("--jsonl", action="store_true", help="with --file: JSON lines (the default for --file)")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.add_argument("--variant", choices=VARIANTS, help="HAP routing of these weights (nosaf: a nosaf checkpoint)")
    a.add_argument("--checkpoint", help="checkpoint folder (default: the embedded model in assets/)")
    a.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    a.add_argument("--beams", type=int, default=1, help="beam width for the caption (1 = greedy)")
    a.add_argument("--max-new-tokens", type=int, default=None, help="caption length limit (default: the checkpoint's)")
    a.add_argument("--no-caption", action="store_true", help="structure, metrics and properties only")
    a.add_argument("--devices", type=int, default=0,
                   help="with --file: run under Lightning's predict loop on N devices/processes (0 = plain loop)")
    a.add_argument("--strategy", default="auto", help="Lightning strategy with --devices (auto: ddp when N > 1)")
    a.add_argument("--num-nodes", dest="num_nodes", type=int, default=1, help="machines with --devices")
    a.set_defaults(func=cmd_analyze)
