"""Shared pieces of the training tests: a small BPE vocabulary and stdlib datasets.

A 512-piece BPE model trained on the source tree itself keeps the output
layer small, so a tiny model learns in a few hundred CPU steps; the data is
still real code (this machine's Python standard library).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from codellama_zoo.training import TrainConfig, load_train_config

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TRAIN_TREE = STDLIB / "email"
EVAL_TREE = STDLIB / "json"
ROOT = Path(__file__).resolve().parents[3]
TINY_PRETRAIN = ROOT / "zoo" / "zoo_codellama" / "configs" / "pretrain_codellama_tiny.yaml"
VOCAB = 512
SEQ = 64


def train_bpe(tree: Path, dst: Path) -> Path:
    import sentencepiece as spm

    corpus = dst / "corpus.txt"
    corpus.write_text("\n".join(p.read_text(encoding="utf-8") for p in sorted(tree.rglob("*.py"))), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(dst / "bpe"), vocab_size=VOCAB, model_type="bpe",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0, byte_fallback=True,
        max_sentence_length=1 << 16, split_by_whitespace=True, minloglevel=2, num_threads=1,
        remove_extra_whitespaces=False,
    )
    return dst / "bpe.model"


def prepare_stdlib(tokenizer_model: Path, dst: Path) -> tuple[Path, Path]:
    from zoo_datasets.prepare import prepare
    from zoo_datasets.tokenizer import SentencePieceTokenizer

    tok = SentencePieceTokenizer(tokenizer_model)
    prepare("code", input=TRAIN_TREE, tokenizer=tok, seq_length=SEQ, output=dst / "train", progress=False)
    prepare("code", input=EVAL_TREE, tokenizer=tok, seq_length=SEQ, output=dst / "eval", progress=False)
    return dst / "train", dst / "eval"


def tiny_config(output: Path, train: Path, eval_dir: Path | None = None, *extra: str) -> TrainConfig:
    """The shipped tiny pretraining config, pointed at test data and the test vocabulary."""
    overrides = [
        f"output_dir={output}",
        f"train_dataset.data_loader.dataset_dir={train}",
        f"model_config.vocab_size={VOCAB}",
        f"model_config.seq_length={SEQ}",
        "trainer.progress=false",
    ]
    if eval_dir is not None:
        overrides += [
            f"eval_dataset.data_loader.dataset_dir={eval_dir}",
            "eval_dataset.data_loader.shuffle=false",
            "do_eval=true",
        ]
    return load_train_config(TINY_PRETRAIN, [*overrides, *extra])
