"""Read a CTranslate2 model.bin's header (variable names and shapes) without loading the weights."""

from __future__ import annotations

import struct
from pathlib import Path

from ..core.errors import ModelUnavailable

_INT_FORMATS = {1: "b", 2: "h", 4: "i", 8: "q"}


def is_ct2_dir(path: Path) -> bool:
    """A converted CTranslate2 model has model.bin next to its config.json."""
    return (path / "model.bin").is_file()


def read_ct2_header(model_bin: Path) -> tuple[dict[str, tuple[int, ...]], int]:
    """Return (variable shapes, number of heads) of a CT2 model.bin, skipping the weights.

    Layout (ctranslate2/specs/model_spec.py ``_serialize``): u32 version, string
    spec name, u32 revision, u32 count, then per variable: string name, u8 rank,
    u32 dims, u8 dtype, u32 byte count, raw bytes. Strings are u16 length + bytes.
    """
    try:
        return _read_header(model_bin)
    except (struct.error, UnicodeDecodeError, KeyError) as exc:
        raise ModelUnavailable(f"{model_bin.parent.name}: model.bin is damaged or incomplete.") from exc


def _read_header(model_bin: Path) -> tuple[dict[str, tuple[int, ...]], int]:
    shapes: dict[str, tuple[int, ...]] = {}
    num_heads = 0
    with open(model_bin, "rb") as f:
        def unpack(fmt: str):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))

        def read_string() -> str:
            (n,) = unpack("H")
            return f.read(n)[:-1].decode("utf-8")

        unpack("I")
        read_string()
        unpack("I")
        (count,) = unpack("I")
        for _ in range(count):
            name = read_string()
            (rank,) = unpack("B")
            dims = unpack(f"{rank}I") if rank else ()
            unpack("B")
            (nbytes,) = unpack("I")
            if name == "decoder/num_heads":
                (num_heads,) = unpack(_INT_FORMATS[nbytes])
                continue
            shapes[name] = tuple(dims)
            f.seek(nbytes, 1)
    return shapes, num_heads
