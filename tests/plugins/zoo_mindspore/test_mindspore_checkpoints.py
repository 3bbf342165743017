"""MindSpore .ckpt / safetensors formats, HF <-> MindSpore conversion, tensor-parallel split and merge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from mindspore_testing import tiny  # sets GLOG_v before MindSpore is imported

pytest.importorskip("mindspore")
torch = pytest.importorskip("torch")


from codellama_zoo.cli import cli  # noqa: E402
from codellama_zoo.errors import UsageError  # noqa: E402

pytestmark = pytest.mark.mindspore
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CONFIG = tiny("34b", n_layers=2, vocab_size=96)  # grouped-query: 8 heads, 1 kv head


def canonical_state(config: Any, dtype: str, seed: int = 0) -> dict[str, Any]:
    """Random tensors with the canonical names and shapes of ``config``."""
    gen = torch.Generator().manual_seed(seed)
    q, kv, f = config.n_heads * config.head_dim, config.kv_heads * config.head_dim, config.ffn_hidden
    shapes = {"tok_embeddings.weight": (config.vocab_size, config.dim), "norm.weight": (config.dim,),
              "output.weight": (config.vocab_size, config.dim)}
    for i in range(config.n_layers):
        shapes |= {
            f"layers.{i}.attention.wq.weight": (q, config.dim),
            f"layers.{i}.attention.wk.weight": (kv, config.dim),
            f"layers.{i}.attention.wv.weight": (kv, config.dim),
            f"layers.{i}.attention.wo.weight": (config.dim, q),
            f"layers.{i}.feed_forward.w1.weight": (f, config.dim),
            f"layers.{i}.feed_forward.w2.weight": (config.dim, f),
            f"layers.{i}.feed_forward.w3.weight": (f, config.dim),
            f"layers.{i}.attention_norm.weight": (config.dim,),
            f"layers.{i}.ffn_norm.weight": (config.dim,),
        }
    return {name: torch.randn(shape, generator=gen).to(TORCH_DTYPES[dtype]) for name, shape in shapes.items()}


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name


def test_seed_converter_names_on_disk(tmp_path: Path) -> None:
    import mindspore as ms

    from zoo_mindspore import checkpoints

    checkpoints.save_ckpt(canonical_state(CONFIG, "fp32"), CONFIG, tmp_path)
    names = set(ms.load_checkpoint(str(tmp_path / "model.ckpt")))
    assert {"model.tok_embeddings.embedding_weight", "model.norm_out.weight", "lm_head.weight",
            "model.layers.1.attention.wq.weight", "model.layers.0.feed_forward.w3.weight",
            "model.layers.0.attention_norm.weight", "model.layers.1.ffn_norm.weight"} <= names
    assert not any(name.startswith("layers.") or "self_attn" in name for name in names)
    assert checkpoints.read_config(tmp_path) == CONFIG


def test_training_checkpoint_extras_are_skipped_and_unknown_weights_refused(tmp_path: Path) -> None:
    """A MindFormers training .ckpt also holds optimizer moments, step and lr: reading keeps only the weights."""
    import mindspore as ms

    from codellama_zoo.errors import WeightsError
    from zoo_mindspore import checkpoints

    state = canonical_state(CONFIG, "fp32")
    items = [{"name": checkpoints.to_seed_name(k), "data": ms.Tensor(v.numpy())} for k, v in state.items()]
    extras = ["adam_m.model.layers.0.attention.wq.weight", "global_step", "learning_rate", "scale_sense",
              "model.freqs_mgr.freqs_cos"]
    items += [{"name": name, "data": ms.Tensor(np.ones((2,), np.float32))} for name in extras]
    (tmp_path / "train").mkdir()
    ms.save_checkpoint(items, str(tmp_path / "train" / "model.ckpt"))
    assert_same(checkpoints.load_ckpt(tmp_path / "train"), state)
    ms.save_checkpoint(items + [{"name": "model.layers.0.attention.bogus.weight", "data": ms.Tensor(np.ones(2))}],
                       str(tmp_path / "train" / "model.ckpt"))
    with pytest.raises(WeightsError, match="bogus"):
        checkpoints.load_ckpt(tmp_path / "train")


@pytest.mark.parametrize("kind", ["mindspore", "mindspore-safetensors"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_round_trip_is_bit_exact_in_every_dtype(tmp_path: Path, kind: str, dtype: str) -> None:
    from codellama_zoo.registry import get_registry

    spec = get_registry().checkpoint_formats.get(kind)
    state = canonical_state(CONFIG, dtype)
    spec.save(state, CONFIG, tmp_path)
    detected = sorted((s for s in get_registry().checkpoint_formats if s.detect(tmp_path)), key=lambda s: -s.priority)
    assert detected[0].name == kind
    assert_same(spec.load(tmp_path, CONFIG), state)
    assert spec.read_config(tmp_path) == CONFIG


def test_save_casts_on_request(tmp_path: Path) -> None:
    from zoo_mindspore import checkpoints

    state = canonical_state(CONFIG, "fp32")
    checkpoints.save_safetensors(state, CONFIG, tmp_path, dtype="bf16")
    loaded = checkpoints.load_safetensors(tmp_path)
    assert all(t.dtype == torch.bfloat16 for t in loaded.values())
    assert torch.equal(loaded["output.weight"], state["output.weight"].to(torch.bfloat16))


def test_hugging_face_safetensors_are_not_taken_for_mindspore(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from mindspore_testing import hf_model

    from zoo_mindspore import checkpoints

    hf_model(CONFIG).save_pretrained(tmp_path)
    assert not checkpoints.detect_safetensors(tmp_path)
    assert not checkpoints.detect_ckpt(tmp_path)


def _convert(src: Path, dst: Path, to: str, *extra: str) -> None:
    result = CliRunner().invoke(cli, ["convert", str(src), str(dst), "--to", to, *extra])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("via", ["mindspore", "mindspore-safetensors"])
def test_hf_to_mindspore_to_hf_is_bit_exact(tmp_path: Path, via: str) -> None:
    pytest.importorskip("transformers")
    from mindspore_testing import hf_model
    from safetensors.torch import load_file

    from codellama_zoo.registry import get_registry

    if "hf" not in get_registry().checkpoint_formats or CliRunner().invoke(cli, ["convert", "--help"]).exit_code:
        pytest.skip("the hf checkpoint format / `zoo convert` are not in this checkout")
    hf = hf_model(CONFIG).to(torch.bfloat16)
    hf.save_pretrained(tmp_path / "hf")
    _convert(tmp_path / "hf", tmp_path / "ms", via)
    assert (tmp_path / "ms" / ("model.ckpt" if via == "mindspore" else "model.safetensors")).is_file()
    _convert(tmp_path / "ms", tmp_path / "back", "hf")
    original, back = load_file(tmp_path / "hf" / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert_same(original, back)


def test_meta_checkpoints_convert_to_the_same_mindspore_tensors(tmp_path: Path) -> None:
    """Meta's interleaved-RoPE shards -> MindSpore gives exactly what HF -> MindSpore gives (GQA wk permuted right)."""
    pytest.importorskip("transformers")
    from mindspore_testing import hf_model

    from codellama_zoo.registry import get_registry
    from zoo_mindspore import checkpoints

    formats = get_registry().checkpoint_formats
    if "hf" not in formats or "meta" not in formats:
        pytest.skip("the hf / meta checkpoint formats are not in this checkout")
    hf_model(CONFIG).save_pretrained(tmp_path / "hf")
    _convert(tmp_path / "hf", tmp_path / "meta", "meta")
    _convert(tmp_path / "meta", tmp_path / "from-meta", "mindspore")
    _convert(tmp_path / "hf", tmp_path / "from-hf", "mindspore")
    assert_same(checkpoints.load_ckpt(tmp_path / "from-meta"), checkpoints.load_ckpt(tmp_path / "from-hf"))


def test_convert_to_mindspore_with_dtype(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from mindspore_testing import hf_model

    from codellama_zoo.registry import get_registry
    from zoo_mindspore import checkpoints

    if "hf" not in get_registry().checkpoint_formats or CliRunner().invoke(cli, ["convert", "--help"]).exit_code:
        pytest.skip("the hf checkpoint format / `zoo convert` are not in this checkout")
    hf_model(CONFIG).save_pretrained(tmp_path / "hf")
    _convert(tmp_path / "hf", tmp_path / "ms", "mindspore", "--dtype", "fp16")
    loaded = checkpoints.load_ckpt(tmp_path / "ms")
    assert loaded["layers.0.attention.wk.weight"].dtype == torch.float16


def test_split_rules_and_merge_of_split_is_identity(tmp_path: Path) -> None:
    from zoo_mindspore import checkpoints

    state = canonical_state(CONFIG, "bf16")
    checkpoints.save_ckpt(state, CONFIG, tmp_path / "one")
    runner = CliRunner()
    wide = tiny("7b", n_layers=1, vocab_size=96)  # MHA: n_kv_heads = n_heads
    checkpoints.save_ckpt(canonical_state(wide, "fp32"), wide, tmp_path / "mha")
    result = runner.invoke(cli, ["mindspore", "split", str(tmp_path / "mha"), str(tmp_path / "mha2"), "-mp", "2"])
    assert result.exit_code == 0, result.output

    # the GQA config has a single kv head: it cannot be split over two ranks, and says so
    result = runner.invoke(cli, ["mindspore", "split", str(tmp_path / "one"), str(tmp_path / "x"), "-mp", "2"])
    assert result.exit_code != 0 and "n_kv_heads=1" in result.output

    shards = [checkpoints.load_ckpt(tmp_path / "mha2" / f"rank_{r}") for r in range(2)]
    full = checkpoints.load_ckpt(tmp_path / "mha")
    assert torch.equal(shards[1]["layers.0.attention.wq.weight"], full["layers.0.attention.wq.weight"][wide.dim // 2 :])
    assert torch.equal(shards[0]["layers.0.attention.wo.weight"], full["layers.0.attention.wo.weight"][:, : wide.dim // 2])
    assert torch.equal(shards[1]["layers.0.feed_forward.w2.weight"],
                       full["layers.0.feed_forward.w2.weight"][:, wide.ffn_hidden // 2 :])
    assert torch.equal(shards[1]["output.weight"], full["output.weight"][48:])
    assert torch.equal(shards[1]["norm.weight"], full["norm.weight"])

    result = runner.invoke(cli, ["mindspore", "merge", str(tmp_path / "mha2"), str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert_same(checkpoints.load_ckpt(tmp_path / "merged"), full)
    assert checkpoints.read_config(tmp_path / "merged") == wide


@pytest.mark.parametrize("kind", ["ckpt", "safetensors"])
def test_merge_split_round_trip_four_ranks(tmp_path: Path, kind: str) -> None:
    from zoo_mindspore import checkpoints, distributed

    config = tiny("7b", n_layers=1, vocab_size=96)  # 4 heads, ffn 192
    mp = 4
    state = canonical_state(config, "fp16")
    checkpoints.save_ckpt(state, config, tmp_path / "one")
    with pytest.raises(UsageError, match="model_parallel=3 does not divide n_heads=4"):
        distributed.split_checkpoint(tmp_path / "one", tmp_path / "bad", 3)
    distributed.split_checkpoint(tmp_path / "one", tmp_path / "shards", mp, kind=kind)
    assert len(distributed.rank_dirs(tmp_path / "shards")) == mp
    distributed.merge_checkpoint(tmp_path / "shards", tmp_path / "merged", kind=kind)
    merged = (checkpoints.load_ckpt if kind == "ckpt" else checkpoints.load_safetensors)(tmp_path / "merged")
    assert_same(merged, state)


def test_merge_refuses_mismatched_replicas(tmp_path: Path) -> None:
    from codellama_zoo.errors import WeightsError
    from zoo_mindspore import checkpoints, distributed

    config = tiny("7b", n_layers=1, vocab_size=96)
    checkpoints.save_ckpt(canonical_state(config, "fp32"), config, tmp_path / "one")
    distributed.split_checkpoint(tmp_path / "one", tmp_path / "shards", 2)
    shard = checkpoints.load_ckpt(tmp_path / "shards" / "rank_1")
    shard["norm.weight"] = shard["norm.weight"] + 1
    checkpoints.save_ckpt(shard, None, tmp_path / "shards" / "rank_1")
    with pytest.raises(WeightsError, match="norm.weight differs"):
        distributed.merge_checkpoint(tmp_path / "shards", tmp_path / "merged")
