"""The training engine (issue: training engine): the batched loss equals a plain per-token one,
bf16 autocast stays within bf16 tolerance of float32."""
from __future__ import annotations

import torch
from torch import nn

from hsanet import HSANet
from hsanet.featurizers import featurize, parse
from hsanet.retrieval import FingerprintIndex

from conftest import MOLECULES, _CORPUS, small_config


def plain_caption_nll(dec, graph_tokens, prompts, targets):
    """Per-sample caption NLL written the obvious way: one sample at a time, one position at a time
    (the pointer-generator mixture of lm/decoder.py, p = g p_vocab + (1 - g) p_copy)."""
    emb = dec.lm.get_input_embeddings()
    out = []
    for i, (p, t) in enumerate(zip(prompts, targets)):
        x = torch.cat([dec.graph_proj(graph_tokens[i:i + 1])[0], emb(torch.tensor(p + t))], 0)[None]
        hid = dec.lm.base_model(inputs_embeds=x).last_hidden_state[0]
        g = graph_tokens.shape[1]
        src = hid[g:g + len(p)]
        nll = []
        for j, label in enumerate(t):
            h = hid[g + len(p) - 1 + j]
            p_vocab = dec.lm.get_output_embeddings()(h).float().softmax(-1)[label]
            if dec.copy is None:
                nll.append(-torch.log(p_vocab))
                continue
            a = ((dec.copy.q(h) @ dec.copy.k(src).T) / src.shape[-1] ** 0.5).float().softmax(-1)
            p_copy = sum(a[s] for s, tok in enumerate(p) if tok == label) if label in p else a.new_zeros(())
            gate = torch.sigmoid(dec.copy.gate(h).float())[0]
            nll.append(-torch.log(gate * p_vocab + (1 - gate) * p_copy + 1e-9))
        out.append(torch.stack(nll).mean())
    return torch.stack(out)


def _setup(tokenizer, copy: bool):
    torch.manual_seed(0)
    index = FingerprintIndex.build(MOLECULES, _CORPUS[: len(MOLECULES)])
    model = HSANet(small_config(copy_mechanism=copy, retrieval_k=2, max_caption_tokens=40), tokenizer,
                   retrieval=index).train()
    mols = [parse(s) for s in MOLECULES[:5]]
    refs = [[n.caption for n in r] for r in model.references([m.smiles for m in mols])]
    prompts = [model.decoder.prompt_ids(m.smiles, r) for m, r in zip(mols, refs)]
    targets = [model.decoder.target_ids(_CORPUS[(i * 3) % len(_CORPUS)]) for i in range(len(mols))]
    # a model with trained-looking copy weights: the gate half open
    if copy:
        nn.init.constant_(model.decoder.copy.gate.bias, 0.0)
    return model, mols, prompts, targets


def test_batched_loss_equals_plain_loss_and_gradients(tokenizer):
    for copy in (False, True):
        model, mols, prompts, targets = _setup(tokenizer, copy)
        graph = model.encode(featurize(mols), generator=torch.Generator().manual_seed(0))["fused"].detach()
        graph.requires_grad_(True)
        fast = model.decoder.loss(graph, prompts, targets, per_sample=True)
        plain = plain_caption_nll(model.decoder, graph, prompts, targets)
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
        (g_fast,) = torch.autograd.grad(fast.sum(), graph)
        (g_plain,) = torch.autograd.grad(plain.sum(), graph)
        torch.testing.assert_close(g_fast, g_plain, rtol=1e-4, atol=1e-6)
        # the training loss is the token mean
        n = torch.tensor([len(t) for t in targets], dtype=torch.float)
        torch.testing.assert_close(model.decoder.loss(graph, prompts, targets), (fast * n).sum() / n.sum())


def test_left_padded_embeddings_match_per_sample(tokenizer):
    model, mols, prompts, _ = _setup(tokenizer, True)
    graph = model.encode(featurize(mols))["fused"].detach()
    embeds, mask, lengths = model.decoder._embed(graph, prompts, left_pad=True)
    for i, n in enumerate(lengths):
        one, m1, _ = model.decoder._embed(graph[i:i + 1], prompts[i:i + 1], left_pad=True)
        torch.testing.assert_close(embeds[i, -n:], one[0])
        assert mask[i].sum() == n and bool(mask[i, -n:].all()) and m1.sum() == n
        assert float(embeds[i, :-n].abs().sum()) == 0.0


# ---- runs of the real training command on a tiny slice of ChEBI-20 -----------------------------
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsanet.data.chebi import chebi_path

try:
    chebi_path("train")
    HAVE_TRAIN = True
except FileNotFoundError:
    HAVE_TRAIN = False
needs_chebi = pytest.mark.skipif(not HAVE_TRAIN, reason="ChEBI-20 train split not found")

TINY_MODEL = {"hidden": 32, "proj_dim": 16, "num_queries": 2, "num_heads": 2, "d_state": 4, "lm_dim": 32,
              "lm_layers": 1, "lm_heads": 2, "num_motif_queries": 2, "max_caption_tokens": 24,
              "max_ref_tokens": 12, "max_smiles_tokens": 24, "retrieval_k": 1, "copy_mechanism": True}


def _options(out, cache, **over):
    from hsanet.cli.train import TRAIN_DEFAULTS

    opts = dict(TRAIN_DEFAULTS, out=str(out), cache_dir=str(cache), limit=48, val_limit=16, epochs=2,
                batch_size=8, warmup_steps=2, vocab_size=300, max_minutes=10.0, threads=1,
                precision="32-true", ckpt_every_steps=0)
    opts.update(over)
    return opts


def _weights(ckpt):
    import torch

    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


@needs_chebi
def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    from hsanet.training.caption import train_caption

    full = train_caption(_options(tmp_path / "full", tmp_path / "cache"), dict(TINY_MODEL))
    assert full["steps"] == 12                                    # 2 epochs of 6 batches
    part = train_caption(_options(tmp_path / "cut", tmp_path / "cache", max_steps=4), dict(TINY_MODEL))
    assert part["steps"] == 4 and Path(part["last"]).exists()
    done = train_caption(_options(tmp_path / "cut", tmp_path / "cache", resume=part["last"]), dict(TINY_MODEL))
    assert done["steps"] == 12
    a, b = _weights(full["last"]), _weights(done["last"])
    assert a.keys() == b.keys()
    for k in a:
        assert bool((a[k] == b[k]).all()), k
    assert Path(done["out"], "model.safetensors").exists()
    # the prepared data came from the cache the second and third time
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2


@needs_chebi
def test_time_budget_ends_cleanly_with_last_checkpoint(tmp_path):
    from hsanet.training.caption import train_caption

    res = train_caption(_options(tmp_path / "t", tmp_path / "cache", max_minutes=0.0001), dict(TINY_MODEL))
    assert res["steps"] == 1 and Path(res["last"]).exists()


DDP_SCRIPT = """
import json, sys
import torch
import lightning as L
from safetensors.torch import save_file
from hsanet.training.caption import train_caption

class Dump(L.Callback):
    def on_train_end(self, trainer, pl_module):
        state = {k: v.detach().clone().contiguous() for k, v in pl_module.model.named_parameters()}
        save_file(state, sys.argv[2] + f"/rank{trainer.global_rank}.safetensors")

train = json.loads(open(sys.argv[1]).read())
model = json.loads(open(sys.argv[3]).read())
train_caption(train, model, callbacks=[Dump()])
"""


@needs_chebi
@pytest.mark.timeout(600)
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    """Lightning DDP with 2 CPU processes (gloo): both ranks end with the same weights, and they
    equal one process that trains the same global batches as 2 accumulated micro-batches (the
    per-device batches of DDP: batch-norm statistics and SAF's balance loss are per device batch)."""
    from safetensors.torch import load_file

    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    (tmp_path / "model.json").write_text(json.dumps(TINY_MODEL))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    runs = {"ddp": dict(devices=2, strategy="ddp", accelerator="cpu"), "one": dict(accumulate=2)}
    for name, over in runs.items():
        out = tmp_path / name
        out.mkdir()
        (tmp_path / f"{name}.json").write_text(json.dumps(_options(out, tmp_path / "cache", epochs=1, **over)))
        proc = subprocess.run([sys.executable, str(script), str(tmp_path / f"{name}.json"), str(out),
                               str(tmp_path / "model.json")], env=env, capture_output=True, text=True, timeout=500)
        assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = load_file(str(tmp_path / "ddp" / "rank0.safetensors")), load_file(str(tmp_path / "ddp" / "rank1.safetensors"))
    one = load_file(str(tmp_path / "one" / "rank0.safetensors"))
    for k in r0:
        assert bool((r0[k] == r1[k]).all()), f"ranks differ in {k}"
    import torch

    for k in r0:
        torch.testing.assert_close(r0[k], one[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")


def test_stop_file_ends_the_sitting(tmp_path):
    """touch OUT/STOP ends training at the next batch, as the time budget would; a stale file of an
    earlier sitting is removed when training starts."""
    from types import SimpleNamespace

    from hsanet.training.module import StopAfter

    stop = tmp_path / "STOP"
    stop.touch()
    cb = StopAfter(60.0, stop)
    trainer = SimpleNamespace(world_size=1, should_stop=False)
    cb.on_train_start(trainer, None)
    assert not stop.exists()
    cb.on_train_batch_end(trainer, None, None, None, 0)
    assert not trainer.should_stop
    stop.touch()
    cb.on_train_batch_end(trainer, None, None, None, 1)
    assert trainer.should_stop and cb.stopped_early


@needs_chebi
def test_hsanet_train_caption_command_end_to_end(tmp_path, capsys):
    """``hsanet train --task caption`` with a config file, on a tiny slice, through Lightning: exit 0,
    a JSON result on stdout, the best model saved by SaveBest (a ModelCheckpoint) as safetensors with
    the training pool attached, and it loads and captions."""
    import json

    from hsanet.cli import main

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model:\n" + "".join(f"  {k}: {str(v).lower() if isinstance(v, bool) else v}\n"
                                        for k, v in TINY_MODEL.items())
                   + "train:\n  vocab_size: 300\n  val_limit: 8\n  warmup_steps: 2\n  ckpt_every_steps: 0\n")
    out = tmp_path / "run"
    rc = main(["train", "--task", "caption", "--config", str(cfg), "--out", str(out), "--limit", "24",
               "--epochs", "1", "--batch-size", "8", "--threads", "1", "--precision", "32-true",
               "--cache-dir", str(tmp_path / "cache"), "--max-minutes", "5"])
    assert rc == 0
    stdout = capsys.readouterr().out
    result = json.loads(stdout[stdout.rindex("\n{") + 1:])            # the JSON result comes last
    assert result["out"] == str(out / "best") and result["steps"] >= 1
    best = out / "best"
    assert (best / "model.safetensors").exists() and (out / "last.ckpt").exists()
    meta = json.loads((best / "metadata.json").read_text())
    assert meta["trained"] is True and "best_val_loss" in meta and meta["retrieval_pool"]
    model = HSANet.from_pretrained(best, device="cpu")
    assert model.retrieval is not None and model.analyze("CCO").caption is not None
