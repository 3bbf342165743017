"""Checkpoint formats: detection, loading to identical logits, bit-exact round trips, safety, errors.

The references are independent of our writers: Hugging Face checkpoints come
from transformers' own ``save_pretrained``; Meta shards are built here by hand
the way Meta's fairscale model-parallel layers split them, with the wq/wk
permutation written as in transformers' ``convert_llama_weights_to_hf.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pickle
from pathlib import Path

import attrs
import pytest
import torch
from torch_testing import hf_model, left_padded, random_model, shrink

from codellama_zoo.errors import UsageError, WeightsError
from zoo_codellama.presets import ARCHITECTURES
from zoo_torch import checkpoints
from zoo_torch.model import Transformer
from zoo_torch.runtime import build_model

pytest.importorskip("transformers")

FORMATS = ["zoo", "hf", "hf-bin", "meta"]


@pytest.fixture
def gqa_model() -> Transformer:
    # 34B's grouping (8 query heads per kv head) with 2 kv heads, so 2 Meta shards split the kv heads
    return random_model(shrink(ARCHITECTURES["34b"], n_layers=2), seed=21)


def _logits(model: Transformer) -> torch.Tensor:
    ids, mask = left_padded(model.config.vocab_size, 2, 7, [0, 2], seed=9)
    with torch.no_grad():
        return model(ids, mask)


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name


def _hf_permute(w: torch.Tensor, n_heads: int, dim1: int, dim2: int) -> torch.Tensor:
    # transformers/models/llama/convert_llama_weights_to_hf.py: Meta (interleaved) -> HF (rotate-half)
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def _hf_unpermute(w: torch.Tensor, n_heads: int, dim1: int, dim2: int) -> torch.Tensor:
    # its inverse (HF -> Meta), as in transformers' convert_llama_weights_to_hf / llama.cpp
    return w.view(n_heads, 2, dim1 // n_heads // 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def _write_meta_by_hand(model: Transformer, path: Path, n_shards: int) -> None:
    """Meta's layout: ColumnParallelLinear splits dim 0, RowParallelLinear and ParallelEmbedding dim 1."""
    cfg = model.config
    path.mkdir()
    sd = model.state_dict()
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(n_shards)]
    for name, t in sd.items():
        if name.endswith("attention.wq.weight"):
            t = _hf_unpermute(t, cfg.n_heads, cfg.dim, cfg.dim)
        elif name.endswith("attention.wk.weight"):
            t = _hf_unpermute(t, cfg.kv_heads, cfg.kv_heads * cfg.head_dim, cfg.dim)
        if any(k in name for k in ("wq", "wk", "wv", "w1", "w3")) or name == "output.weight":
            parts = t.chunk(n_shards, 0)
        elif any(k in name for k in ("wo", "w2")) or name == "tok_embeddings.weight":
            parts = t.chunk(n_shards, 1)
        else:
            parts = (t,) * n_shards
        for i, p in enumerate(parts):
            shards[i][name] = p.clone()
    for i, shard in enumerate(shards):
        shard["rope.freqs"] = torch.zeros(cfg.head_dim // 2)  # present in Meta's Llama 2 files, ignored
        torch.save(shard, path / f"consolidated.{i:02d}.pth")
    params = {"dim": cfg.dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "n_kv_heads": cfg.kv_heads,
              "multiple_of": cfg.multiple_of, "ffn_dim_multiplier": cfg.ffn_dim_multiplier,
              "norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta, "vocab_size": -1}
    (path / "params.json").write_text(json.dumps(params))


def test_hf_written_by_transformers_loads_to_identical_logits(tmp_path: Path, gqa_model: Transformer) -> None:
    hf = hf_model(gqa_model)
    hf.save_pretrained(tmp_path / "hf", max_shard_size="2MB")  # sharded, with model.safetensors.index.json
    files = sorted(p.name for p in (tmp_path / "hf").iterdir())
    assert "model.safetensors.index.json" in files and sum(f.endswith(".safetensors") for f in files) > 1
    assert checkpoints.detect_format(tmp_path / "hf").name == "hf"
    cfg = checkpoints.read_config(tmp_path / "hf")
    assert cfg.ffn_hidden == gqa_model.config.ffn_hidden and cfg.kv_heads == gqa_model.config.kv_heads
    assert cfg.rope_theta == 1e6 and cfg.vocab_size == 32000
    loaded = build_model(None, tmp_path / "hf")
    assert torch.equal(_logits(loaded), _logits(gqa_model))


def test_hf_bin_written_by_transformers_loads_to_identical_logits(tmp_path: Path, gqa_model: Transformer) -> None:
    hf = hf_model(gqa_model)
    out = tmp_path / "bin"
    hf.save_pretrained(out, safe_serialization=False) if _supports_bin(hf) else _save_bin_by_hand(hf, out)
    assert checkpoints.detect_format(out).name == "hf-bin"
    loaded = build_model(None, out)
    assert torch.equal(_logits(loaded), _logits(gqa_model))


def _supports_bin(hf: object) -> bool:
    import inspect

    return "safe_serialization" in inspect.signature(hf.save_pretrained).parameters  # type: ignore[attr-defined]


def _save_bin_by_hand(hf: object, out: Path) -> None:
    out.mkdir()
    hf.config.save_pretrained(out)  # type: ignore[attr-defined]
    sd = {k: v.clone() for k, v in hf.state_dict().items()}  # type: ignore[attr-defined]
    torch.save(sd, out / "pytorch_model.bin")


def test_meta_two_shards_gqa_loads_to_identical_logits(tmp_path: Path, gqa_model: Transformer) -> None:
    _write_meta_by_hand(gqa_model, tmp_path / "meta", 2)
    assert checkpoints.detect_format(tmp_path / "meta").name == "meta"
    cfg = checkpoints.read_config(tmp_path / "meta")  # vocab_size -1 in params.json: read from the tensors
    assert cfg.vocab_size == gqa_model.config.vocab_size and cfg.kv_heads == 2 and cfg.n_rep == 8
    loaded = build_model(None, tmp_path / "meta")
    assert torch.equal(_logits(loaded), _logits(gqa_model))
    # and our writer produces exactly the hand-made shards
    checkpoints.save_checkpoint(gqa_model.state_dict(), gqa_model.config, tmp_path / "ours", "meta", shards=2)
    for i in range(2):
        ours = torch.load(tmp_path / "ours" / f"consolidated.0{i}.pth", weights_only=True)
        theirs = torch.load(tmp_path / "meta" / f"consolidated.0{i}.pth", weights_only=True)
        theirs.pop("rope.freqs")
        _assert_same_tensors(ours, theirs)


def test_all_formats_load_to_identical_logits(tmp_path: Path, gqa_model: Transformer) -> None:
    reference = _logits(gqa_model)
    for fmt in FORMATS:
        options = {"shards": 2} if fmt in ("meta", "hf") else {}
        checkpoints.save_checkpoint(gqa_model.state_dict(), gqa_model.config, tmp_path / fmt, fmt, **options)
        assert checkpoints.detect_format(tmp_path / fmt).name == fmt
        assert torch.equal(_logits(build_model(None, tmp_path / fmt)), reference), fmt


def test_our_hf_output_loads_in_transformers(tmp_path: Path, gqa_model: Transformer) -> None:
    import transformers

    checkpoints.save_checkpoint(gqa_model.state_dict(), gqa_model.config, tmp_path / "hf", "hf", shards=3)
    theirs = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
    ids, mask = left_padded(gqa_model.config.vocab_size, 1, 6, [0])
    with torch.no_grad():
        diff = (theirs(input_ids=ids).logits.float() - gqa_model(ids)).abs().max()
    assert float(diff) <= 1e-4


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(FORMATS, 2)))
def test_conversion_round_trips_bit_exactly(tmp_path: Path, gqa_model: Transformer, first: str, second: str) -> None:
    sd = gqa_model.state_dict()
    checkpoints.save_checkpoint(sd, gqa_model.config, tmp_path / "a", first)
    checkpoints.convert(tmp_path / "a", tmp_path / "b", second, quiet=True, shards=2)
    checkpoints.convert(tmp_path / "b", tmp_path / "c", first, quiet=True)
    for d in ("b", "c"):
        loaded, cfg = checkpoints.load_state_dict(tmp_path / d)
        _assert_same_tensors(loaded, sd)
        assert checkpoints.expected_shapes(cfg) == checkpoints.expected_shapes(gqa_model.config)
    # the files of the first format are identical after the round trip (config included)
    for p in (tmp_path / "a").iterdir():
        if p.suffix in (".json", ".safetensors"):
            assert p.read_bytes() == (tmp_path / "c" / p.name).read_bytes(), p.name


def test_dtype_conversion(tmp_path: Path, gqa_model: Transformer) -> None:
    sd = gqa_model.state_dict()
    checkpoints.save_checkpoint(sd, gqa_model.config, tmp_path / "fp32", "hf")
    checkpoints.convert(tmp_path / "fp32", tmp_path / "bf16", "meta", dtype="bf16", quiet=True)
    checkpoints.convert(tmp_path / "bf16", tmp_path / "back", "zoo", quiet=True)
    loaded, _ = checkpoints.load_state_dict(tmp_path / "back")
    _assert_same_tensors(loaded, {k: v.to(torch.bfloat16) for k, v in sd.items()})
    assert json.loads((tmp_path / "back" / "config.json").read_text())["dtype"] == "bf16"
    checkpoints.convert(tmp_path / "back", tmp_path / "fp32-again", "hf", dtype="fp32", quiet=True)
    checkpoints.convert(tmp_path / "fp32-again", tmp_path / "bf16-again", "hf", dtype="bf16", quiet=True)
    again, _ = checkpoints.load_state_dict(tmp_path / "bf16-again")
    _assert_same_tensors(again, loaded)  # bf16 -> fp32 -> bf16 is exact


def test_pickled_non_tensor_bin_is_refused(tmp_path: Path, gqa_model: Transformer) -> None:
    out = tmp_path / "evil"
    checkpoints.save_checkpoint(gqa_model.state_dict(), gqa_model.config, out, "hf-bin")
    sd = torch.load(out / "pytorch_model.bin", weights_only=True)
    sd["extra"] = argparse.Namespace(payload="not a tensor")  # any pickled class instance
    torch.save(sd, out / "pytorch_model.bin")
    with pytest.raises(WeightsError, match=r"pickled object that is not a tensor.*weights_only=True"):
        checkpoints.load_state_dict(out)


def test_pickle_with_code_is_never_run(tmp_path: Path, gqa_model: Transformer) -> None:
    out = tmp_path / "evil"
    checkpoints.save_checkpoint(gqa_model.state_dict(), gqa_model.config, out, "hf-bin")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, (f"touch {marker}",))

    with (out / "pytorch_model.bin").open("wb") as f:
        pickle.dump({"model.embed_tokens.weight": Exploit()}, f)
    with pytest.raises(WeightsError, match="not a tensor"):
        checkpoints.load_state_dict(out)
    assert not marker.exists()


def test_non_tensor_values_are_refused(tmp_path: Path, gqa_model: Transformer) -> None:
    out = tmp_path / "odd"
    checkpoints.save_checkpoint(gqa_model.state_dict(), gqa_model.config, out, "hf-bin")
    sd = torch.load(out / "pytorch_model.bin", weights_only=True)
    sd["step"] = 3
    torch.save(sd, out / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="'step' is a int, not a tensor"):
        checkpoints.load_state_dict(out)


def test_mismatched_tensors_are_one_clear_error(tmp_path: Path, gqa_model: Transformer) -> None:
    cfg = gqa_model.config
    sd = dict(gqa_model.state_dict())
    sd["layers.1.attention.wk.weight"] = torch.zeros(cfg.dim, cfg.dim)
    del sd["layers.0.feed_forward.w3.weight"]
    sd["layers.0.attention.bias"] = torch.zeros(3)
    with pytest.raises(WeightsError) as info:
        checkpoints.check_state_dict(sd, cfg, "somewhere")
    msg = str(info.value)
    kv = cfg.kv_heads * cfg.head_dim
    assert f"tensor layers.1.attention.wk.weight: expected shape ({kv}, {cfg.dim}), found ({cfg.dim}, {cfg.dim})" in msg
    assert "missing tensor layers.0.feed_forward.w3.weight" in msg
    assert "unexpected tensor layers.0.attention.bias" in msg
    # through a real checkpoint whose config disagrees with its tensors
    checkpoints.save_checkpoint(gqa_model.state_dict(), cfg, tmp_path / "z", "zoo")
    wrong = attrs.evolve(cfg, vocab_size=cfg.vocab_size + 16)
    with pytest.raises(WeightsError, match=r"tok_embeddings.weight: expected shape \(32016, "):
        build_model(wrong, tmp_path / "z")


def test_detection_and_errors(tmp_path: Path, gqa_model: Transformer) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        checkpoints.detect_format(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("hi")
    with pytest.raises(WeightsError, match=r"no known checkpoint format .*README.md.*known formats: .*zoo"):
        checkpoints.detect_format(tmp_path / "empty")
    checkpoints.save_checkpoint(gqa_model.state_dict(), gqa_model.config, tmp_path / "z", "zoo")
    with pytest.raises(UsageError, match="already exists"):
        checkpoints.save_checkpoint(gqa_model.state_dict(), gqa_model.config, tmp_path / "z", "zoo")
    (tmp_path / "z" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(WeightsError, match="corrupt safetensors header"):
        checkpoints.load_state_dict(tmp_path / "z")


def test_failed_save_leaves_nothing_behind(tmp_path: Path, gqa_model: Transformer, monkeypatch: pytest.MonkeyPatch) -> None:
    import zoo_torch.safetensors_io as st

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_checkpoint(gqa_model.state_dict(), gqa_model.config, tmp_path / "out", "hf")
    assert list(tmp_path.iterdir()) == []


def test_safetensors_reader_matches_the_safetensors_library(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = {"a": torch.randn(3, 4), "b": torch.arange(10, dtype=torch.int64), "c": torch.randn(5).bfloat16(),
               "d": torch.randn(2, 2).half(), "e": torch.zeros(0, 3)}
    save_file(tensors, tmp_path / "lib.safetensors")
    from zoo_torch import safetensors_io

    _assert_same_tensors(safetensors_io.load_file(tmp_path / "lib.safetensors"), tensors)
    safetensors_io.save_file(tensors, tmp_path / "ours.safetensors", {"format": "pt"})
    _assert_same_tensors(load_file(tmp_path / "ours.safetensors"), tensors)


def test_config_round_trips_through_every_format(tmp_path: Path) -> None:
    for size in ("7b", "13b", "34b", "70b"):
        cfg = ARCHITECTURES[size]
        from_hf = checkpoints.config_from_hf(checkpoints.config_to_hf(cfg))
        assert checkpoints.same_architecture(from_hf, cfg) and from_hf.ffn_hidden == cfg.ffn_hidden
        assert from_hf.max_seq_len == cfg.max_seq_len and from_hf.kv_heads == cfg.kv_heads
        assert checkpoints.config_from_meta(cfg.to_params(), None) == cfg
    tiny = shrink(ARCHITECTURES["70b"])
    sd = random_model(tiny).state_dict()
    for fmt in FORMATS:
        checkpoints.save_checkpoint(sd, tiny, tmp_path / fmt, fmt)
        declared = checkpoints.read_config(tmp_path / fmt)
        assert checkpoints.same_architecture(declared, tiny), fmt
        if fmt in ("zoo", "meta"):  # these keep Meta's own fields
            assert declared == tiny, fmt
