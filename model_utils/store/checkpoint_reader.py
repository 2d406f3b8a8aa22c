"""Read Hugging Face checkpoints (safetensors or PyTorch .bin) as memory-mapped numpy.

No torch: safetensors is a JSON header plus raw little-endian data, and a PyTorch
``.bin`` is a zip of raw storages plus a pickle that says how tensors view them.
The pickle is read with an unpickler that accepts only the few globals a
state_dict needs (tensor rebuild, storage types, OrderedDict); anything else --
the way a malicious checkpoint runs code -- is refused. Tensors are memory-mapped
so only the one being converted is paged in.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import ModelUnavailable

SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": "bfloat16", "F64": np.float64,
                      "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
                      "BOOL": np.bool_}
_TORCH_STORAGES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "BFloat16Storage": "bfloat16",
                   "DoubleStorage": np.float64, "LongStorage": np.int64, "IntStorage": np.int32,
                   "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                   "BoolStorage": np.bool_}


class UnsafeCheckpoint(ModelUnavailable):
    """A .bin checkpoint asked to run something other than tensor rebuilding."""


@dataclass(frozen=True)
class TensorRef:
    """A tensor in a checkpoint file, read on demand."""

    shape: tuple[int, ...]
    dtype: str  # numpy dtype name, or "bfloat16"
    _read: Callable[[], np.ndarray]

    def read(self) -> np.ndarray:
        """Return the tensor (bfloat16 widened to float32, which numpy lacks)."""
        return self._read()


def _as_float(raw: np.ndarray, dtype) -> np.ndarray:
    if dtype == "bfloat16":  # bf16 is the top half of a float32
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return raw


def _mmap(path: Path, offset: int, dtype, count: int) -> np.ndarray:
    storage_dtype = np.uint16 if dtype == "bfloat16" else dtype
    if count == 0:
        return np.zeros(0, dtype=storage_dtype)
    return np.memmap(path, dtype=storage_dtype, mode="r", offset=offset, shape=(count,))


def read_safetensors(path: Path) -> dict[str, TensorRef]:
    """Index a .safetensors file: 8-byte header size, JSON header, then the data."""
    with open(path, "rb") as f:
        (header_size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_size))
    base = 8 + header_size
    refs = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES[info["dtype"]]
        shape = tuple(info["shape"])
        start, _end = info["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64))

        def read(dtype=dtype, shape=shape, offset=base + start, count=count):
            return _as_float(_mmap(path, offset, dtype, count), dtype).reshape(shape)

        refs[name] = TensorRef(shape, np.dtype(np.float32).name if dtype == "bfloat16" else np.dtype(dtype).name,
                               read)
    return refs


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    path, offset, dtype, numel = storage
    size, stride = tuple(size), tuple(stride)

    def read():
        flat = _as_float(_mmap(path, offset, dtype, numel), dtype)
        if not size:
            return flat[storage_offset:storage_offset + 1].reshape(())
        item = flat.itemsize
        return np.lib.stride_tricks.as_strided(
            flat[storage_offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False)

    out_dtype = "float32" if dtype == "bfloat16" else np.dtype(dtype).name
    return TensorRef(size, out_dtype, read)


class _RestrictedUnpickler(pickle.Unpickler):
    """Only what ``torch.save(state_dict)`` writes; every other global is refused."""

    def __init__(self, data: bytes, storage_locator: Callable[[str, object, int], tuple]):
        import io

        super().__init__(io.BytesIO(data))
        self._locate = storage_locator

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(_TORCH_STORAGES[name])
        raise UnsafeCheckpoint(
            f"Refusing to load this PyTorch checkpoint: it calls {module}.{name}, which is not "
            "a tensor. Only plain state_dict files are accepted."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UnsafeCheckpoint("Refusing to load this PyTorch checkpoint: unexpected storage record.")
        _, storage_type, key, _location, numel = pid
        return self._locate(str(key), storage_type.dtype, int(numel))


def _zip_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored (uncompressed) zip member's data, for memory-mapping."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise ModelUnavailable(f"{info.filename} is compressed; PyTorch checkpoints store tensors uncompressed.")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


def read_torch_bin(path: Path) -> dict[str, TensorRef]:
    """Index a PyTorch zip checkpoint (torch>=1.6 format) without importing torch."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ModelUnavailable(
            f"{path.name} is not a PyTorch zip checkpoint (legacy formats are not supported).") from None
    with archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ModelUnavailable(f"{path.name} has no data.pkl: not a PyTorch checkpoint.")
        prefix = pkl[: -len("data.pkl")]
        infos = {i.filename: i for i in archive.infolist()}

        def locate(key: str, dtype, numel: int):
            info = infos.get(f"{prefix}data/{key}")
            if info is None:
                raise ModelUnavailable(f"{path.name} is truncated: storage {key} is missing.")
            return (path, _zip_data_offset(path, info), dtype, numel)

        state = _RestrictedUnpickler(archive.read(pkl), locate).load()
    if not isinstance(state, dict):
        raise UnsafeCheckpoint(f"{path.name} does not hold a state_dict.")
    return {k: v for k, v in state.items() if isinstance(v, TensorRef)}


def _sharded(directory: Path, index_name: str) -> list[Path] | None:
    index = directory / index_name
    if not index.is_file():
        return None
    weight_map = json.loads(index.read_text())["weight_map"]
    return [directory / name for name in sorted(set(weight_map.values()))]


def weight_files(directory: Path) -> list[Path]:
    """The checkpoint's weight files, preferring safetensors over .bin."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (directory / single).is_file():
            return [directory / single]
        shards = _sharded(directory, index)
        if shards:
            return shards
    raise ModelUnavailable("The checkpoint has no model.safetensors or pytorch_model.bin weights.")


def read_checkpoint(directory: Path) -> dict[str, TensorRef]:
    """Index every tensor of an HF checkpoint directory (single file or shards)."""
    refs: dict[str, TensorRef] = {}
    for file in weight_files(directory):
        reader = read_safetensors if file.suffix == ".safetensors" else read_torch_bin
        refs.update(reader(file))
    return refs

