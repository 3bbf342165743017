"""Batches for training from a prepared dataset (``zoo data prepare``).

The order of samples is a function of ``(seed, epoch)`` only, so the data
position ``(epoch, step_in_epoch)`` is all a checkpoint needs to continue
exactly. Under ``torch.distributed`` each rank takes its own slice of every
global batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from codellama_zoo.errors import ConfigError

IGNORE_INDEX = -100


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size (0, 1 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class SampleArrays:
    """``input_ids`` (and ``labels``) as ``[count, length]`` arrays, memory-mapped when possible."""

    def __init__(self, dataset_cfg: Any, seq_length: int, what: str) -> None:
        from zoo_datasets.storage import NumpySamples, open_samples

        loader = dataset_cfg.data_loader
        if not loader.dataset_dir:
            raise ConfigError(f"{what}.data_loader.dataset_dir is empty; set it to a `zoo data prepare` output")
        fmt = {"auto": "auto", "MindDataset": "mindrecord", "NumpyDataset": "numpy"}[loader.type]
        try:
            samples = open_samples(loader.dataset_dir, fmt)
        except Exception:
            if fmt != "mindrecord":
                raise
            samples = open_samples(loader.dataset_dir, "auto")  # a MindDataset config trained on torch: any format
        self.path = loader.dataset_dir
        if not isinstance(samples, NumpySamples):
            samples = samples.random_access()  # MindRecord: a memory-mapped copy, made once
        columns = {c: samples.column(c) for c in samples.columns}
        missing = [c for c in dataset_cfg.input_columns if c not in columns]
        if missing:
            raise ConfigError(
                f"{what}.input_columns asks for {missing} but {self.path} has columns {sorted(columns)}"
            )
        self.input_ids = columns["input_ids"]
        self.labels = columns.get("labels") if "labels" in dataset_cfg.input_columns else None
        length = self.input_ids.shape[1]
        if length - 1 > seq_length:
            raise ConfigError(
                f"{self.path}: samples hold {length} tokens (seq_length {length - 1}) but model_config.seq_length "
                f"is {seq_length}; prepare the data with --seq-length {seq_length} or raise model_config.seq_length"
            )
        if len(self.input_ids) == 0:
            raise ConfigError(f"{self.path}: the dataset is empty")

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, targets)``: inputs ``[:, :-1]`` and the labels they predict ``[:, 1:]``."""
        order = np.sort(indices)  # memory maps read faster in file order; restore the requested order after
        ids = np.asarray(self.input_ids[order], dtype=np.int64)
        labels = ids if self.labels is None else np.asarray(self.labels[order], dtype=np.int64)
        inverse = np.argsort(np.argsort(indices))
        ids, labels = ids[inverse], labels[inverse]
        return torch.from_numpy(ids[:, :-1].copy()), torch.from_numpy(labels[:, 1:].copy())

    def target_tokens(self) -> np.ndarray:
        """Every learned target token id (for baselines)."""
        labels = self.input_ids if self.labels is None else self.labels
        targets = np.asarray(labels[:, 1:]).reshape(-1)
        return targets[targets != IGNORE_INDEX]


class BatchPlan:
    """Which samples each optimizer step uses, deterministic in ``(seed, epoch)``."""

    def __init__(self, size: int, micro_batch: int, accumulation: int, shuffle: bool, seed: int,
                 drop_remainder: bool = True) -> None:
        self.size = size
        self.rank, self.world = rank_and_world()
        self.micro_batch = micro_batch
        self.accumulation = accumulation
        self.global_batch = micro_batch * accumulation * self.world
        self.shuffle, self.seed = shuffle, seed
        if drop_remainder or size < self.global_batch:
            self.steps_per_epoch = size // self.global_batch
        else:
            self.steps_per_epoch = -(-size // self.global_batch)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"the dataset has {size} samples, fewer than one global batch of {self.global_batch} "
                f"(batch_size {micro_batch} x gradient_accumulation_steps {accumulation} x {self.world} ranks)"
            )

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def micro_batches(self, epoch: int, step_in_epoch: int) -> list[np.ndarray]:
        """This rank's micro batches of one optimizer step (wrapping for a partial last step)."""
        order = self.order(epoch)
        start = step_in_epoch * self.global_batch
        picked = np.take(order, np.arange(start, start + self.global_batch), mode="wrap")
        mine = picked.reshape(self.accumulation, self.world, self.micro_batch)[:, self.rank]
        return [mine[i] for i in range(self.accumulation)]

    def position(self, global_step: int) -> tuple[int, int]:
        """``(epoch, step_in_epoch)`` of optimizer step ``global_step`` (0-based)."""
        return divmod(global_step, self.steps_per_epoch)
