"""Tensors as raw bytes: the Open Inference Protocol's binary form (HTTP and gRPC alike).

Triton's binary tensor extension (``binary_data_size`` over HTTP) and the gRPC protocol's
``raw_input_contents`` / ``raw_output_contents`` carry a tensor's values as little-endian bytes in
row-major order: fixed-size types packed back to back (BOOL one byte each), ``BYTES`` elements
each as a 4-byte little-endian length followed by that many bytes. These two functions turn such
bytes into the flat list of Python values the JSON form carries, and back; the gateway's decoding
of shapes and rows (``fleet_gateway.protocol``) then treats both forms the same.

Errors are ``InvalidInput`` naming the field the caller passes (``inputs.age``), never a numpy
exception: the size is checked against the shape before anything is built.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from fleet_core.errors import InvalidInput

NUMPY_DTYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
"""The numpy dtype of each fixed-size OIP datatype (``BYTES`` is length-prefixed instead)."""

_LENGTH = struct.Struct("<I")


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", field=field, errors=[{"field": field, "message": message}])


def element_count(shape: list[int]) -> int:
    return math.prod(shape) if shape else 1


def decode_tensor_bytes(datatype: str, shape: list[int], raw: bytes | memoryview, where: str) -> list[Any]:
    """The tensor's values, flat and row-major, as Python scalars (``str`` for UTF-8 ``BYTES``
    elements, ``bytes`` for others); ``where`` names the tensor in errors."""
    count = element_count(shape)
    if datatype == "BYTES":
        return _decode_bytes(raw, count, where)
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise _invalid(f"{where}.datatype", f"'{datatype}' is not an Open Inference Protocol datatype")
    size = np.dtype(dtype).itemsize
    if len(raw) != count * size:
        raise _invalid(
            where,
            f"carries {len(raw)} bytes; shape {shape} of {datatype} needs {count * size} ({count} x {size})",
        )
    values: list[Any] = np.frombuffer(raw, dtype=dtype, count=count).tolist()
    return values


def _decode_bytes(raw: bytes | memoryview, count: int, where: str) -> list[Any]:
    view = memoryview(raw)
    out: list[Any] = []
    at = 0
    for i in range(count):
        if at + 4 > len(view):
            raise _invalid(where, f"BYTES element {i} is missing: the data ends after {len(out)} of {count}")
        (length,) = _LENGTH.unpack_from(view, at)
        at += 4
        if at + length > len(view):
            raise _invalid(where, f"BYTES element {i} claims {length} bytes; only {len(view) - at} remain")
        chunk = bytes(view[at : at + length])
        at += length
        try:
            out.append(chunk.decode())
        except UnicodeDecodeError:
            out.append(chunk)
    if at != len(view):
        raise _invalid(where, f"has {len(view) - at} bytes after its {count} BYTES elements")
    return out


def encode_tensor_bytes(datatype: str, values: list[Any]) -> bytes:
    """Flat values as the binary form of ``datatype`` (the inverse of ``decode_tensor_bytes``)."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for v in values:
            b = v if isinstance(v, bytes) else str(v).encode()
            parts.append(_LENGTH.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise ValueError(f"'{datatype}' is not an Open Inference Protocol datatype")
    return np.asarray(values, dtype=dtype).tobytes()
