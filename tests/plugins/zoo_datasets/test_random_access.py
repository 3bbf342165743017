"""MindRecord samples as a memory-mapped random-access copy: same records, made once, rebuilt when the file changes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from zoo_datasets.errors import DatasetError
from zoo_datasets.storage import MINDRECORD_FILE, DatasetWriter, MindRecordSamples, NumpySamples, open_samples

pytest.importorskip("mindspore")
COUNT, LENGTH = 37, 17


@pytest.fixture
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo-home"))
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "ds", ("numpy", "mindrecord"), {"dataset": "synthetic", "seq_length": LENGTH - 1}) as w:
        for _ in range(COUNT):
            ids = rng.integers(0, 32000, LENGTH).astype(np.int32)
            w.write({"input_ids": ids, "labels": np.where(rng.random(LENGTH) < 0.3, -100, ids).astype(np.int32)})
    return tmp_path / "ds"


def test_random_access_copy_holds_the_same_records_memory_mapped(dataset: Path) -> None:
    records = open_samples(dataset, "mindrecord")
    assert isinstance(records, MindRecordSamples)
    copy = records.random_access()
    assert isinstance(copy, NumpySamples) and isinstance(copy.data, np.memmap)
    assert copy.path == dataset / f".{MINDRECORD_FILE}.random-access.bin"
    written = open_samples(dataset, "numpy")
    for column in ("input_ids", "labels"):
        np.testing.assert_array_equal(copy.column(column), written.column(column))
    order = np.random.default_rng(1).permutation(COUNT)[:5]
    np.testing.assert_array_equal(copy.column("labels")[order], written.column("labels")[order])


def test_copy_is_reused_until_the_mindrecord_file_changes(dataset: Path) -> None:
    records = open_samples(dataset, "mindrecord")
    assert isinstance(records, MindRecordSamples)
    first = records.random_access().path
    stamp = first.stat().st_mtime_ns
    assert records.random_access().path == first and first.stat().st_mtime_ns == stamp  # reused, not rewritten
    source = dataset / MINDRECORD_FILE
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    rebuilt = records.random_access()
    assert rebuilt.meta["source"]["mtime_ns"] == source.stat().st_mtime_ns
    np.testing.assert_array_equal(rebuilt.column("input_ids"), open_samples(dataset, "numpy").column("input_ids"))


def test_unwritable_dataset_folder_falls_back_to_zoo_home(dataset: Path, tmp_path: Path) -> None:
    (dataset / f".{MINDRECORD_FILE}.random-access.bin").mkdir()  # the place beside the file cannot take a file
    records = open_samples(dataset, "mindrecord")
    assert isinstance(records, MindRecordSamples)
    copy = records.random_access()
    assert copy.path.is_relative_to(tmp_path / "zoo-home" / "datasets") and len(copy) == COUNT
    assert not list(dataset.glob("*.partial-*")), "a failed attempt leaves no partial file"


def test_records_of_different_lengths_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mindspore.mindrecord import FileWriter

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo-home"))
    path = tmp_path / "ragged.mindrecord"
    writer = FileWriter(file_name=str(path), shard_num=1)
    writer.add_schema({"input_ids": {"type": "int32", "shape": [-1]}}, "ragged")
    writer.write_raw_data([{"input_ids": np.arange(5, dtype=np.int32)}, {"input_ids": np.arange(7, dtype=np.int32)}])
    writer.commit()
    with pytest.raises(DatasetError, match=r"record 1 has shapes .*\(7,\).* not \(5,\)"):
        MindRecordSamples(path).random_access()
    assert not list(tmp_path.glob("*.partial-*"))
