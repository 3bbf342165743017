"""Prepared datasets on disk: a memory-mapped numpy file and/or MindRecord.

A prepared dataset is a directory::

    OUT/meta.json              tokenizer, seq_length, columns, counts
    OUT/samples.bin            numpy format: JSON header, then int32 [count, columns, sample_length]
    OUT/samples.mindrecord     MindRecord (+ .db index), schema like the seed's llama_preprocess.py

The directory is built under a temporary name and renamed into place only
when complete, so an interrupted or failed run leaves nothing behind.
(MindRecord files cannot be renamed, their index names them, but the
directory holding them can.)
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from codellama_zoo.errors import BackendUnavailableError, UsageError
from zoo_datasets.errors import DatasetError

MAGIC = b"ZOOSAMP1"
HEADER_RESERVE = 4096  # bytes before the data; a larger header is rewritten by copying
NUMPY_FILE = "samples.bin"
MINDRECORD_FILE = "samples.mindrecord"
META_FILE = "meta.json"
FORMATS = ("numpy", "mindrecord")
_WRITE_BATCH = 256


def mindspore_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("mindspore") is not None


class NumpyWriter:
    """Streams samples to ``samples.bin``; the header is filled in at the end."""

    def __init__(self, path: Path, columns: tuple[str, ...], sample_length: int) -> None:
        self.path = path
        self.columns = columns
        self.sample_length = sample_length
        self.count = 0
        self.handle = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.handle.write(b"\0" * HEADER_RESERVE)

    def write(self, sample: dict[str, np.ndarray]) -> None:
        rows = np.stack([np.asarray(sample[c], dtype="<i4") for c in self.columns])
        self.handle.write(rows.tobytes())
        self.count += 1

    def close(self, meta: dict[str, Any]) -> None:
        header = {
            **meta,
            "format": "numpy",
            "dtype": "int32",
            "count": self.count,
            "columns": list(self.columns),
            "sample_length": self.sample_length,
        }
        body = json.dumps(header, ensure_ascii=False).encode()
        if 16 + len(body) <= HEADER_RESERVE:
            header["data_offset"] = HEADER_RESERVE
            body = json.dumps(header, ensure_ascii=False).encode()
        if 16 + len(body) <= HEADER_RESERVE:
            self.handle.seek(0)
            self.handle.write(MAGIC + struct.pack("<Q", len(body)) + body)
            self.handle.close()
            return
        self.handle.close()
        self._rewrite_with_large_header(header)

    def _rewrite_with_large_header(self, header: dict[str, Any]) -> None:
        size = 16 + len(json.dumps(header, ensure_ascii=False).encode()) + 64
        offset = (size + 4095) // 4096 * 4096
        header["data_offset"] = offset
        body = json.dumps(header, ensure_ascii=False).encode()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(self.path, "rb") as src, open(tmp, "wb") as dst:
            dst.write(MAGIC + struct.pack("<Q", len(body)) + body)
            dst.write(b"\0" * (offset - 16 - len(body)))
            src.seek(HEADER_RESERVE)
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, self.path)

    def abort(self) -> None:
        self.handle.close()


class MindRecordWriter:
    """Writes ``samples.mindrecord`` with ``mindspore.mindrecord.FileWriter``."""

    def __init__(self, path: Path, columns: tuple[str, ...], description: str) -> None:
        try:
            from mindspore.mindrecord import FileWriter
        except ImportError:
            raise BackendUnavailableError(
                "writing MindRecord needs MindSpore (pip install 'codellama-zoo[mindspore]'); "
                "or choose --format numpy"
            ) from None
        self.writer = FileWriter(file_name=str(path), shard_num=1)
        self.writer.add_schema({c: {"type": "int32", "shape": [-1]} for c in columns}, description)
        self.columns = columns
        self.pending: list[dict[str, np.ndarray]] = []
        self.count = 0

    def write(self, sample: dict[str, np.ndarray]) -> None:
        self.pending.append({c: np.asarray(sample[c], dtype=np.int32) for c in self.columns})
        self.count += 1
        if len(self.pending) >= _WRITE_BATCH:
            self.writer.write_raw_data(self.pending)
            self.pending = []

    def close(self, meta: dict[str, Any]) -> None:
        if self.pending:
            self.writer.write_raw_data(self.pending)
        self.writer.commit()

    def abort(self) -> None:
        self.pending = []


class DatasetWriter:
    """Writes one prepared dataset directory atomically (context manager)."""

    def __init__(self, output: str | Path, formats: tuple[str, ...], meta: dict[str, Any], overwrite: bool = False) -> None:
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise UsageError(f"unknown storage format {unknown or formats!r}; allowed: {', '.join(FORMATS)}")
        self.output = Path(output)
        if self.output.exists() and not overwrite:
            raise UsageError(f"output {str(self.output)!r} already exists; pass --overwrite or choose another --output")
        if "mindrecord" in formats and not mindspore_available():
            raise BackendUnavailableError(
                "--format mindrecord needs MindSpore installed (pip install 'codellama-zoo[mindspore]')"
            )
        self.formats = formats
        self.meta = dict(meta)
        self.overwrite = overwrite
        self.tmp = self.output.with_name(f".{self.output.name}.partial-{os.getpid()}")
        self.writers: list[NumpyWriter | MindRecordWriter] = []
        self.count = 0

    def __enter__(self) -> DatasetWriter:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        return self

    def _open(self, sample: dict[str, np.ndarray]) -> None:
        columns = tuple(sample)
        length = int(np.asarray(sample[columns[0]]).shape[0])
        self.meta["columns"] = list(columns)
        self.meta["sample_length"] = length
        if "numpy" in self.formats:
            self.writers.append(NumpyWriter(self.tmp / NUMPY_FILE, columns, length))
        if "mindrecord" in self.formats:
            self.writers.append(MindRecordWriter(self.tmp / MINDRECORD_FILE, columns, str(self.meta.get("dataset", ""))))

    def write(self, sample: dict[str, np.ndarray]) -> None:
        if not self.writers:
            self._open(sample)
        for writer in self.writers:
            writer.write(sample)
        self.count += 1

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            for writer in self.writers:
                writer.abort()
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            self._commit()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def _commit(self) -> None:
        if self.count == 0:
            raise DatasetError(
                self.meta.get("input", "<input>"),
                f"produced no samples (counts: {self.meta.get('counts', {})}); the input is shorter than one "
                f"sample of seq_length + 1 = {int(self.meta.get('seq_length', 0)) + 1} tokens: use a smaller "
                "--seq-length or more data",
            )
        self.meta["formats"] = list(self.formats)
        self.meta["count"] = self.count
        for writer in self.writers:
            writer.close(self.meta)
        (self.tmp / META_FILE).write_text(json.dumps(self.meta, indent=2, ensure_ascii=False) + "\n")
        if self.output.exists():
            old = self.output.with_name(f".{self.output.name}.old-{os.getpid()}")
            os.rename(self.output, old)
            os.rename(self.tmp, self.output)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            os.rename(self.tmp, self.output)


class NumpySamples:
    """Random access to ``samples.bin`` by memory map; nothing is read up front."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            head = handle.read(16)
            if len(head) < 16 or head[:8] != MAGIC:
                raise DatasetError(self.path, "not a codellama-zoo numpy samples file (bad magic)")
            (length,) = struct.unpack("<Q", head[8:16])
            try:
                self.meta: dict[str, Any] = json.loads(handle.read(length))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise DatasetError(self.path, "corrupt JSON header") from None
        self.columns: tuple[str, ...] = tuple(self.meta["columns"])
        self.sample_length = int(self.meta["sample_length"])
        count = int(self.meta["count"])
        expected = self.meta["data_offset"] + count * len(self.columns) * self.sample_length * 4
        if self.path.stat().st_size != expected:
            raise DatasetError(self.path, f"truncated or corrupt: {self.path.stat().st_size} bytes, expected {expected}")
        self.data = np.memmap(
            self.path, dtype="<i4", mode="r", offset=self.meta["data_offset"],
            shape=(count, len(self.columns), self.sample_length),
        )

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rows = self.data[index]
        return {c: rows[i] for i, c in enumerate(self.columns)}

    def column(self, name: str) -> np.ndarray:
        """A ``[count, sample_length]`` view of one column (still memory-mapped)."""
        return self.data[:, self.columns.index(name), :]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(len(self)):
            yield self[i]


class MindRecordSamples:
    """Streams ``samples.mindrecord`` with ``mindspore.mindrecord.FileReader``."""

    def __init__(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = meta or {}
        if not mindspore_available():
            raise BackendUnavailableError("reading MindRecord needs MindSpore (pip install 'codellama-zoo[mindspore]')")
        from mindspore.mindrecord import FileReader

        reader = FileReader(str(self.path), num_consumer=1)
        try:
            self.columns: tuple[str, ...] = tuple(self.meta.get("columns") or reader.schema())
            self._len = int(reader.len())
        finally:
            reader.close()

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        from mindspore.mindrecord import FileReader

        reader = FileReader(str(self.path), num_consumer=1, columns=list(self.columns))
        try:
            for record in reader.get_next():
                yield {c: np.asarray(record[c], dtype=np.int32) for c in self.columns}
        finally:
            reader.close()

    def random_access(self) -> NumpySamples:
        """The records as a memory-mapped numpy samples file: random access without reading them all into memory.

        Trainers pick samples in a seeded order, which MindRecord's sequential
        reader cannot give. The first call streams the records, one at a time,
        into ``.samples.mindrecord.random-access.bin`` beside the file (or under
        ``$ZOO_HOME/datasets`` where that folder is read-only); later calls reuse
        it while the MindRecord file's size and modification time are unchanged.
        """
        source = self._source_stamp()
        for target in self._random_access_paths():
            if target.is_file():
                try:
                    cached = NumpySamples(target)
                except DatasetError:
                    continue
                if cached.meta.get("source") == source:
                    return cached
        last_error: OSError | None = None
        for target in self._random_access_paths():
            try:
                return self._write_random_access(target, source)
            except OSError as exc:  # read-only dataset folder: try the next place
                last_error = exc
        raise DatasetError(self.path, f"cannot write a random-access copy of the records: {last_error}")

    def _source_stamp(self) -> dict[str, Any]:
        stat = self.path.stat()
        return {"path": str(self.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def _random_access_paths(self) -> list[Path]:
        import hashlib

        from codellama_zoo.loading import zoo_home

        key = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        return [
            self.path.with_name(f".{self.path.name}.random-access.bin"),
            zoo_home() / "datasets" / key / NUMPY_FILE,
        ]

    def _write_random_access(self, target: Path, source: dict[str, Any]) -> NumpySamples:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        length = int(self.meta.get("sample_length") or 0)
        writer: NumpyWriter | None = None
        try:
            for number, sample in enumerate(self):
                if writer is None:
                    length = int(sample[self.columns[0]].shape[0])
                    writer = NumpyWriter(partial, self.columns, length)
                if any(sample[c].shape != (length,) for c in self.columns):
                    shapes = {c: sample[c].shape for c in self.columns}
                    raise DatasetError(self.path, f"record {number} has shapes {shapes}, not ({length},) like the first")
                writer.write(sample)
            if writer is None:
                writer = NumpyWriter(partial, self.columns, length)
            writer.close({**self.meta, "source": source})
            os.replace(partial, target)
        except BaseException:
            if writer is not None:
                writer.abort()
            partial.unlink(missing_ok=True)
            raise
        return NumpySamples(target)


def read_meta(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    meta_file = p / META_FILE if p.is_dir() else p.parent / META_FILE
    if not meta_file.is_file():
        return {}
    return dict(json.loads(meta_file.read_text()))


def open_samples(path: str | Path, format: str = "auto") -> NumpySamples | MindRecordSamples:
    """Open a prepared dataset directory (or one of its sample files) for reading."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"dataset {str(p)!r} does not exist; create it with `zoo data prepare`")
    if p.is_dir():
        numpy_file, mr_file = p / NUMPY_FILE, p / MINDRECORD_FILE
        if format in ("auto", "numpy") and numpy_file.is_file():
            return NumpySamples(numpy_file)
        if format in ("auto", "mindrecord") and mr_file.is_file():
            return MindRecordSamples(mr_file, read_meta(p))
        raise UsageError(f"{p}: holds no {format if format != 'auto' else 'numpy or mindrecord'} samples")
    if p.suffix == ".mindrecord":
        return MindRecordSamples(p, read_meta(p))
    return NumpySamples(p)
