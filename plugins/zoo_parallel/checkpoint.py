"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP), and their conversion.

Layout of a sharded checkpoint folder: DCP's ``.metadata`` and one
``__<rank>_0.distcp`` file per writing rank (each holds that rank's shards),
plus ``zoo_parallel.json`` with the architecture and the layout that wrote it.
Model tensors are stored under ``model.<canonical name>``.

It is registered as the checkpoint format ``dcp``: reading it (``load``)
merges the shards in one process, so ``zoo convert SHARDED DST --to zoo``
(or ``zoo parallel merge``) gives one file a single process can serve, and
``zoo run --weights SHARDED`` works directly. Writing it (``save`` with
``shards=N``, i.e. ``zoo convert SRC DST --to dcp --shards N`` or ``zoo
parallel split --mp N``) starts N local ranks that shard the weights for
tensor parallel over N and save with DCP — the files a ``model_parallel: N``
job loads without resharding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codellama_zoo.errors import WeightsError
from codellama_zoo.specs import LlamaConfig

if TYPE_CHECKING:
    from zoo_parallel.engine import ParallelModel

INFO_FILE = "zoo_parallel.json"
METADATA_FILE = ".metadata"
PREFIX = "model."


def detect(path: Path) -> bool:
    return (Path(path) / METADATA_FILE).is_file() and (Path(path) / INFO_FILE).is_file()


def read_info(path: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(path) / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read {INFO_FILE}: {exc}") from None


def read_config(path: Path) -> LlamaConfig | None:
    params = read_info(path).get("config")
    return LlamaConfig(**params) if params else None


def _write_info(path: Path, config: LlamaConfig, layout: dict[str, Any]) -> None:
    info = {"format": "dcp", "config": config.to_params(), "layout": layout}
    (Path(path) / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def load(path: Path, config: LlamaConfig | None = None) -> dict[str, Any]:
    """Every model tensor of a sharded checkpoint, merged, in one process (no process group)."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    reader = dcp.FileSystemReader(str(path))
    metadata = reader.read_metadata()
    state: dict[str, Any] = {}
    for key, meta in metadata.state_dict_metadata.items():
        if key.startswith(PREFIX) and isinstance(meta, TensorStorageMetadata):
            state[key] = torch.empty(tuple(meta.size), dtype=meta.properties.dtype)
    if not state:
        raise WeightsError(f"{path}: the sharded checkpoint holds no model tensors (keys starting with {PREFIX!r})")
    import warnings

    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, storage_reader=reader, no_dist=True)
    return {key[len(PREFIX):]: value for key, value in state.items()}


def save_sharded(parallel: ParallelModel, path: str | Path, optimizer: Any = None) -> Path:
    """Every rank writes its own shards of the model (and optimizer) into ``path`` (collective)."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    out = Path(path)
    state: dict[str, Any] = {PREFIX + k: v for k, v in parallel.sharded_state_dict().items()}
    if optimizer is not None:
        state["optim"] = get_optimizer_state_dict(parallel.module, optimizer)
    dcp.save(state, checkpoint_id=str(out))
    if dist.get_rank() == 0:
        plan = parallel.plan
        module: Any = getattr(parallel.module, "module", parallel.module)  # under DDP, the wrapped model
        _write_info(out, module.config, {"dp": plan.dp, "mp": plan.mp, "pp": plan.pp})
    dist.barrier()
    return out


def load_sharded(parallel: ParallelModel, path: str | Path, optimizer: Any = None) -> None:
    """Read ``path`` (written by any layout) into ``parallel``'s shards; DCP reshards as needed."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    model_state = parallel.sharded_state_dict()
    state: dict[str, Any] = {PREFIX + k: v for k, v in model_state.items()}
    if optimizer is not None:
        state["optim"] = get_optimizer_state_dict(parallel.module, optimizer)
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(parallel.module, {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)})
    if optimizer is not None:
        set_optimizer_state_dict(parallel.module, optimizer, state["optim"])


def _save_rank(payload: bytes, params: dict[str, Any], dst: str) -> None:
    """One rank of a split: take its tensor-parallel slices of the full weights and save them."""
    import pickle

    import torch
    import torch.distributed as dist

    from zoo_parallel.engine import parallelize
    from zoo_parallel.plan import ParallelPlan
    from zoo_torch.model import Transformer

    state_dict = pickle.loads(payload)
    config = LlamaConfig(**params)
    with torch.device("meta"):
        model = Transformer(config, dtype=next(iter(state_dict.values())).dtype)
    model.load_state_dict(state_dict, strict=True, assign=True)
    world = dist.get_world_size()
    parallel = parallelize(model, ParallelPlan(mp=world, vocab_parallel=config.vocab_size % world == 0),
                           src_data_rank=None)
    save_sharded(parallel, dst)


def save(state_dict: dict[str, Any], config: LlamaConfig, dst: Path, progress: Any = None,
         shards: int | None = None, timeout: float = 600.0, **_: Any) -> None:
    """Write ``state_dict`` as a DCP checkpoint sharded for tensor parallel over ``shards`` ranks."""
    from zoo_parallel.local import run_local
    from zoo_parallel.plan import ParallelPlan, validate_plan

    mp = shards or 1
    validate_plan(ParallelPlan(mp=mp), config, mp)
    import pickle

    # Plain bytes: memory-mapped tensors cannot travel as shared memory to the ranks.
    state = {k: v.contiguous() for k, v in state_dict.items()}
    run_local(_save_rank, mp, pickle.dumps(state), config.to_params(), str(dst), timeout=timeout)
    if progress is not None:
        progress(sum(t.numel() * t.element_size() for t in state.values()))


def merge_checkpoint(src: str | Path, dst: str | Path, *, to: str = "zoo", dtype: str | None = None,
                     overwrite: bool = False) -> Path:
    """One checkpoint (format ``to``) from a sharded one."""
    from zoo_torch.checkpoints import convert

    if not detect(Path(src)):
        raise WeightsError(f"{src} is not a sharded checkpoint (no {METADATA_FILE} and {INFO_FILE})")
    return convert(src, dst, to, dtype=dtype, overwrite=overwrite, quiet=True)


def split_checkpoint(src: str | Path, dst: str | Path, *, mp: int, model: str | None = None,
                     timeout: float = 600.0, overwrite: bool = False) -> Path:
    """A DCP checkpoint sharded for ``model_parallel=mp`` from any single checkpoint."""
    from zoo_torch.checkpoints import load_state_dict, save_checkpoint

    config = None
    if model is not None:
        from codellama_zoo.registry import get_registry

        config = get_registry().model(model).config
    state, cfg = load_state_dict(src, config)
    return save_checkpoint(state, cfg, dst, "dcp", overwrite=overwrite, shards=mp, timeout=timeout)
