"""`torch2keras inspect`: list a checkpoint's keys, shapes, dtypes and sizes.

Reads as little as it can: a .safetensors file's JSON header alone (never its
tensor data; for a sharded checkpoint's .safetensors.index.json, the index and
every shard's header, checked against each other), a .npz archive's array headers, and a .pt/.pth/.bin file through
`torch.load(weights_only=True, mmap=True)`, which maps the data rather than
reading it. torch is imported only for .pt files, numpy only for .npz.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path, PureWindowsPath

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
INDEX_SUFFIX = ".safetensors.index.json"  # Hugging Face's sharded checkpoints
SUFFIXES = (".safetensors", INDEX_SUFFIX, *TORCH_SUFFIXES, ".npz")
# A safetensors header is a few MB even for the largest models; a bigger length
# means the file is not safetensors, and must not make us allocate it.
MAX_HEADER_BYTES = 100 * 2**20

# safetensors dtype codes -> the names numpy and torch use.
SAFETENSORS_DTYPES = {
    "BOOL": ("bool", 1),
    "U8": ("uint8", 1),
    "I8": ("int8", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "I16": ("int16", 2),
    "U16": ("uint16", 2),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I32": ("int32", 4),
    "U32": ("uint32", 4),
    "F32": ("float32", 4),
    "F64": ("float64", 8),
    "I64": ("int64", 8),
    "U64": ("uint64", 8),
}


class InspectError(Exception):
    """The file cannot be listed; the message names it and says why."""


@dataclass(frozen=True)
class Listing:
    tensors: list[Tensor]  # sorted by key
    skipped: list[str]  # keys of non-tensor entries (a .pt file's "epoch", ...)


@dataclass(frozen=True)
class Tensor:
    key: str
    dtype: str
    shape: tuple[int, ...]
    bytes: int

    @property
    def params(self) -> int:
        return math.prod(self.shape)


def inspect(path: Path) -> Listing:
    """Every tensor in the checkpoint, sorted by key."""
    suffix = _format(path)
    if suffix not in SUFFIXES:
        raise InspectError(_unknown_format(path))
    try:
        if suffix == ".safetensors":
            tensors, skipped = _safetensors(path), []
        elif suffix == INDEX_SUFFIX:
            tensors, skipped = _safetensors_index(path), []
        elif suffix == ".npz":
            tensors, skipped = _npz(path), []
        else:
            tensors, skipped = _torch(path)
    except InspectError:
        raise
    except Exception as exc:  # corrupt or not what its suffix says
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if isinstance(exc, pickle.UnpicklingError):
            # torch's own message advises weights_only=False: not advice to
            # repeat about a file nobody has vouched for.
            reason = (
                "torch.load(weights_only=True) cannot unpickle it: not a PyTorch "
                "file, or it holds objects other than tensors and plain containers"
            )
        raise InspectError(
            f"{path}: cannot read as {suffix}: {type(exc).__name__}: {reason}"
        ) from exc
    return Listing(sorted(tensors, key=lambda t: t.key), sorted(skipped))


def _format(path: Path) -> str:
    """The suffix that says how to read the file (an index's is two words long)."""
    if path.name.lower().endswith(INDEX_SUFFIX):
        return INDEX_SUFFIX
    return path.suffix.lower()


def _unknown_format(path: Path) -> str:
    return (
        f"{path}: unknown checkpoint format {path.suffix or '(no suffix)'!r}; "
        f"expected one of {', '.join(SUFFIXES)}"
    )


def _safetensors(path: Path) -> list[Tensor]:
    """From the header alone: 8-byte little-endian length, then that much JSON."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise InspectError(f"{path}: too short for a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            raise InspectError(
                f"{path}: header length {length} is not plausible; "
                "not a safetensors file?"
            )
        raw = handle.read(length)
    if len(raw) < length:
        raise InspectError(
            f"{path}: header says {length} bytes, file has only {len(raw)} after it"
        )
    header = json.loads(raw)
    tensors = []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        dtype, _ = SAFETENSORS_DTYPES.get(entry["dtype"], (entry["dtype"].lower(), 0))
        start, end = entry["data_offsets"]
        tensors.append(Tensor(key, dtype, tuple(entry["shape"]), end - start))
    return tensors


def _unique_keys(pairs: list) -> dict:
    """JSON object hook: a plain dict would silently keep the last duplicate."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"names {key!r} twice")
        result[key] = value
    return result


def _safetensors_index(path: Path) -> list[Tensor]:
    """Every shard's header, each tensor checked to be where the index says.

    The same rules as the generated module's reader: shards are .safetensors
    files inside the index's folder (a link out of it is refused, and not
    read), each holds exactly the tensors the weight_map lists under it.
    """

    def bad(reason: str) -> InspectError:
        return InspectError(f"{path}: bad checkpoint index: {reason}")

    if path.stat().st_size > MAX_HEADER_BYTES:
        raise bad("too large for an index (not an index file?)")
    try:
        index = json.loads(path.read_bytes(), object_pairs_hook=_unique_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad(f"not valid JSON ({exc})") from None
    except ValueError as exc:  # from _unique_keys, as the generated reader refuses
        raise bad(f"the index {exc}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise bad('expected a JSON object with a "weight_map" object')
    # As the generated reader does: names checked as written, links followed
    # (a Hugging Face cache links the index and shards into a blob folder).
    folder = path.absolute().parent
    shards: dict[Path, tuple[str, set[str]]] = {}
    for name, shard in weight_map.items():
        entry = f"weight_map entry {name!r}: {shard!r}"
        if not isinstance(shard, str) or not shard.lower().endswith(".safetensors"):
            raise bad(f"{entry} is not a .safetensors file name")
        if Path(shard).is_absolute() or PureWindowsPath(shard).anchor:
            raise bad(f"{entry} is an absolute path; shards lie beside it")
        if ".." in PureWindowsPath(shard).parts:
            raise bad(f"{entry} leads out of the index's folder")
        file = folder / shard
        if not file.is_file():
            raise bad(f"{entry}: no such file in {folder}")
        shards.setdefault(file, (shard, set()))[1].add(name)
    tensors = []
    for file, (shard, listed) in shards.items():
        held = _safetensors(file)
        keys = {tensor.key for tensor in held}
        for name in sorted(listed - keys):
            raise bad(f"the weight_map puts {name!r} in {shard!r}, which lacks it")
        for name in sorted(keys - listed):
            where = weight_map.get(name)
            raise bad(
                f"{shard!r} holds {name!r}, which the weight_map "
                + ("does not list" if where is None else f"puts in {where!r}")
            )
        tensors += held
    return tensors


def _npz(path: Path) -> list[Tensor]:
    """Each member's .npy header; the array data is never decompressed."""
    import numpy as np

    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    tensors = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                version = np.lib.format.read_magic(member)
                if version not in readers:
                    raise InspectError(
                        f"{path}: member {name!r} uses .npy format {version}, "
                        "which inspect does not read"
                    )
                shape, _, dtype = readers[version](member)
            key = name[: -len(".npy")] if name.endswith(".npy") else name
            size = math.prod(shape) * dtype.itemsize
            tensors.append(Tensor(key, dtype.name, tuple(shape), size))
    return tensors


def _torch(path: Path) -> tuple[list[Tensor], list[str]]:
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        # Files from torch.save(_use_new_zipfile_serialization=False) cannot be
        # memory-mapped; those are read in full.
        if "mmap" not in str(exc):
            raise
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, torch.Tensor) or not hasattr(loaded, "items"):
        raise InspectError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    tensors, skipped = [], []
    for key, value in _flatten(loaded):
        if isinstance(value, torch.Tensor):
            dtype = str(value.dtype).removeprefix("torch.")
            size = value.numel() * value.element_size()
            tensors.append(Tensor(key, dtype, tuple(value.shape), size))
        else:
            skipped.append(key)
    return tensors, skipped


def _flatten(mapping, prefix: str = ""):
    """Nested dicts ({"state_dict": {...}}) as dotted keys; non-tensors are skipped."""
    for key, value in mapping.items():
        if hasattr(value, "items"):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    exponent = min(int(math.log(size, 1024)), 3)
    return f"{size / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


def format_table(path: Path, listing: Listing) -> str:
    tensors = listing.tensors
    rows = [("key", "dtype", "shape", "params")] + [
        (t.key, t.dtype, _shape(t.shape), f"{t.params:,}") for t in tensors
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
            + [row[2].ljust(widths[2]), row[3].rjust(widths[3])]
        ).rstrip()
        for row in rows
    ]
    params = sum(t.params for t in tensors)
    size = sum(t.bytes for t in tensors)
    lines.append(
        f"{path}: {len(tensors)} tensors, {params:,} parameters, "
        f"{size:,} bytes ({_human(size)})"
    )
    if listing.skipped:
        lines.append(
            f"not tensors, not listed ({len(listing.skipped)}): "
            + ", ".join(listing.skipped)
        )
    return "\n".join(lines)


def as_json(path: Path, listing: Listing) -> dict:
    tensors = listing.tensors
    return {
        "checkpoint": str(path),
        "tensors": [{**asdict(t), "params": t.params} for t in tensors],
        "skipped": listing.skipped,
        "total_tensors": len(tensors),
        "total_params": sum(t.params for t in tensors),
        "total_bytes": sum(t.bytes for t in tensors),
    }


def main(args) -> int:
    """The `inspect` subcommand (arguments parsed by compiler/cli.py)."""
    path = Path(args.checkpoint)
    if not path.is_file():
        print(f"{path}: error: no such checkpoint file", file=sys.stderr)
        return EXIT_USAGE
    if _format(path) not in SUFFIXES:
        print(f"error: {_unknown_format(path)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        listing = inspect(path)
    except InspectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FINDINGS
    if args.json:
        print(json.dumps(as_json(path, listing), indent=2))
    else:
        print(format_table(path, listing))
    return EXIT_OK
