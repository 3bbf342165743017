"""Loading weights into the MindSpore model costs about one copy of the weights, not two."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest
from mindspore_testing import tiny  # sets GLOG_v before MindSpore is imported

pytest.importorskip("mindspore")

pytestmark = pytest.mark.mindspore
CONFIG = attrs.evolve(tiny("7b", n_layers=2), dim=1024, n_heads=8, vocab_size=32000)  # ~100M parameters

CHILD = """
import gc, json, sys
from pathlib import Path
from zoo_mindspore.backend import load_model, set_device
from zoo_mindspore.checkpoints import read_config

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

set_device("cpu")
config = read_config(Path(sys.argv[1]))  # params.json beside the .ckpt
before = rss()
lm = load_model(config, sys.argv[1], device="cpu", dtype="fp32")
gc.collect()
weights = sum(p.asnumpy().nbytes for p in lm.model.get_parameters())
print(json.dumps({"grown": rss() - before, "weights": weights}))
"""


def test_ckpt_tensors_move_into_the_model_without_copies(tmp_path: Path) -> None:
    from zoo_mindspore import checkpoints, weights

    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(s, dtype=np.float32) for k, s in weights.canonical_shapes(CONFIG).items()}
    checkpoints.save_ckpt(state, CONFIG, tmp_path / "ckpt")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "ckpt")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    assert measured["weights"] == sum(a.nbytes for a in state.values())
    # resident memory after loading: the weights once (plus allocator slack), not the parsed file and the model
    assert measured["grown"] < 1.25 * measured["weights"], measured


def test_load_into_empties_the_state_it_is_given() -> None:
    import mindspore as ms

    from zoo_mindspore import weights
    from zoo_mindspore.backend import set_device
    from zoo_mindspore.model import Transformer

    set_device("cpu")
    config = tiny("34b", n_layers=1)
    rng = np.random.default_rng(1)
    arrays = {k: rng.standard_normal(s, dtype=np.float32) for k, s in weights.canonical_shapes(config).items()}
    state = {k: ms.Tensor(v) for k, v in arrays.items()}
    model = Transformer(config, dtype="fp32", fused=True)
    weights.load_into(model, state)
    assert state == {}, "every tensor handed over to the model"
    for name, value in weights.state_dict(model).items():
        np.testing.assert_array_equal(value, arrays[name])
