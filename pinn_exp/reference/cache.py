"""Small HDF5 cache for reference solutions.

A reference solution is a set of named arrays plus the parameters that produced it. The
parameters are stored as HDF5 attributes on the root group, and every dataset carries the
SHA-256 checksum of its dtype, shape and bytes (attribute ``sha256``); a cached file is reused
only when every expected attribute matches and every required dataset is present, has the
expected shape, holds finite values and matches its checksum. Anything else (missing file,
other parameters, a file that is not HDF5, a truncated write, values changed after writing, a
file from before checksums) is reported as a reason string so the caller can rebuild.

Dataset names may contain ``/`` to nest them in groups (e.g. ``"mesh/points"``), which h5py
creates on write and resolves on read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

__all__ = [
    "CHECKSUM_ATTR",
    "MODIFIED",
    "CacheLookup",
    "checksum",
    "read_cached",
    "report",
    "write_atomic_h5",
]

# A required shape: None accepts any shape; a tuple whose entries are ints or None (any length
# along that axis), e.g. (None, 3) for a list of triangles.
Shape = tuple[int | None, ...] | None

# The dataset attribute holding the checksum written by write_atomic_h5.
CHECKSUM_ATTR = "sha256"

_log = logging.getLogger("pinn_exp.reference")


# Part of the reason read_cached gives for a dataset whose values no longer match its checksum.
MODIFIED = "its values changed after it was written"


def report(
    message: str, log: Callable[[str], object] | None = None, *, warning: bool = False
) -> None:
    """Send a reference message to ``log``; by default to the ``pinn_exp.reference`` logger when
    logging is set up (a Hydra run, pytest), else to stdout (a plain script such as
    make_reference.py). ``warning`` raises the logger's level from INFO to WARNING."""
    if log is not None:
        log(message)
    elif _log.hasHandlers():
        _log.log(logging.WARNING if warning else logging.INFO, message)
    else:
        print(message)


def checksum(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (little-endian, C order), as hex."""
    array = np.ascontiguousarray(array)
    array = array.astype(array.dtype.newbyteorder("<"), copy=False)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


class CacheLookup(NamedTuple):
    """Result of :func:`read_cached`: ``arrays`` is None exactly when ``reason`` says why."""

    arrays: dict[str, np.ndarray] | None
    reason: str


def _same_value(found: Any, expected: Any) -> bool:
    if isinstance(expected, str):
        if isinstance(found, bytes):
            found = found.decode("utf-8", errors="replace")
        return isinstance(found, str) and found == expected
    if isinstance(found, (str, bytes)):
        return False
    found_arr = np.asarray(found)
    expected_arr = np.asarray(expected)
    # Exact comparison on purpose: float parameters round-trip through HDF5 float64 unchanged,
    # and a tolerance would make "same parameters" ambiguous.
    return found_arr.shape == expected_arr.shape and bool(np.all(found_arr == expected_arr))


def _shape_matches(shape: tuple[int, ...], expected: Shape) -> bool:
    if expected is None:
        return True
    return len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected, strict=True)
    )


def read_cached(
    path: str | Path,
    expected_attrs: Mapping[str, Any],
    required: Mapping[str, Shape],
) -> CacheLookup:
    """Read the datasets ``required`` from ``path`` if the file is a valid, up-to-date cache.

    Args:
        path: HDF5 file to read.
        expected_attrs: root attributes the file must carry with exactly these values
            (parameters and a format version).
        required: dataset name -> expected shape (None for any shape, or a tuple with None for
            free axes). Floating-point and complex datasets must be entirely finite.

    Returns:
        ``CacheLookup(arrays, "")`` on a hit, ``CacheLookup(None, reason)`` otherwise. Never
        raises for a bad file: a cache must never stop a run, only cost a rebuild.
    """
    path = Path(path)
    if not path.exists():
        return CacheLookup(None, "no file there yet")
    if not path.is_file():
        return CacheLookup(None, "the path exists but is not a regular file")
    try:
        with h5py.File(path, "r") as f:
            for name, expected in expected_attrs.items():
                if name not in f.attrs:
                    return CacheLookup(None, f"attribute {name!r} is missing")
                found = f.attrs[name]
                if isinstance(found, np.generic):
                    # Plain Python value, so the message reads 0.001 and not np.float64(0.001).
                    found = found.item()
                if not _same_value(found, expected):
                    return CacheLookup(
                        None, f"attribute {name!r} is {found!r} in the file, expected {expected!r}"
                    )
            arrays: dict[str, np.ndarray] = {}
            for name, shape in required.items():
                obj = f.get(name)
                if not isinstance(obj, h5py.Dataset):
                    return CacheLookup(None, f"dataset {name!r} is missing")
                if not _shape_matches(obj.shape, shape):
                    return CacheLookup(
                        None, f"dataset {name!r} has shape {obj.shape}, expected {shape}"
                    )
                data = obj[()]
                if np.issubdtype(data.dtype, np.inexact) and not np.all(np.isfinite(data)):
                    return CacheLookup(None, f"dataset {name!r} contains non-finite values")
                stored = obj.attrs.get(CHECKSUM_ATTR)
                if isinstance(stored, bytes):
                    stored = stored.decode("ascii", errors="replace")
                if stored is None:
                    return CacheLookup(
                        None, f"dataset {name!r} has no checksum (a cache from before checksums)"
                    )
                if stored != checksum(data):
                    return CacheLookup(
                        None,
                        f"dataset {name!r} does not match its checksum ({MODIFIED})",
                    )
                arrays[name] = np.asarray(data)
    # h5py reports unreadable, truncated or non-HDF5 files as OSError, and malformed objects
    # as KeyError/ValueError/TypeError; all of them just mean "rebuild".
    except (OSError, KeyError, ValueError, TypeError) as exc:
        return CacheLookup(None, f"not a readable HDF5 cache ({type(exc).__name__}: {exc})")
    return CacheLookup(arrays, "")


def write_atomic_h5(
    path: str | Path, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]
) -> None:
    """Write ``arrays`` as datasets and ``attrs`` as root attributes to ``path``, atomically.

    Each dataset gets its :func:`checksum` (of the values as stored) as attribute ``sha256``.

    The file is written to a temporary file in the same folder and moved into place with
    :func:`os.replace`, so a reader (or a concurrent run) sees either the old file or the
    complete new one, never a partial write. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name rather than tempfile.mkstemp: mkstemp creates mode 0600, which os.replace
    # would carry over to the cache; h5py creating the file honours the umask instead.
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with h5py.File(tmp_path, "x") as f:
            for name, value in attrs.items():
                f.attrs[name] = value
            for name, array in arrays.items():
                dataset = f.create_dataset(name, data=np.asarray(array))
                dataset.attrs[CHECKSUM_ATTR] = checksum(dataset[()])
        # fsync before the rename so a crash cannot leave a complete-looking but empty file.
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
