"""Binary tensor contents (Triton's binary extension, gRPC raw contents) to values and back."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import serialize_byte_tensor

from fleet_core.errors import InvalidInput
from fleet_core.tensor_bytes import decode_tensor_bytes, encode_tensor_bytes


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("FP32", [1.5, -2.25, 0.0, 3.0]),
        ("FP64", [1e-300, 2.5]),
        ("INT64", [-(2**40), 7]),
        ("UINT8", [0, 255]),
        ("BOOL", [True, False, True]),
    ],
)
def test_fixed_size_values_survive_the_round_trip(datatype: str, values: list[object]) -> None:
    raw = encode_tensor_bytes(datatype, values)
    assert decode_tensor_bytes(datatype, [len(values)], raw, "inputs.x") == values


def test_bytes_match_what_tritonclient_sends() -> None:
    """tritonclient's own serializer is the reference for the length-prefixed BYTES layout."""
    words = np.array([b"alpha", "béta".encode(), b""], dtype=np.object_)
    raw = serialize_byte_tensor(words).item()
    assert decode_tensor_bytes("BYTES", [3], raw, "inputs.w") == ["alpha", "béta", ""]
    assert encode_tensor_bytes("BYTES", ["alpha", "béta", ""]) == raw


def test_numpy_little_endian_matches_tritonclient_fp32() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert decode_tensor_bytes("FP32", [2, 3], arr.tobytes(), "inputs.m") == [0, 1, 2, 3, 4, 5]


def test_a_size_that_disagrees_with_the_shape_names_the_tensor() -> None:
    raw = encode_tensor_bytes("FP32", [1.0, 2.0, 3.0])
    with pytest.raises(InvalidInput) as err:
        decode_tensor_bytes("FP32", [2, 2], raw, "inputs.age")
    assert err.value.field == "inputs.age"
    assert "12 bytes" in err.value.detail and "16" in err.value.detail


def test_truncated_bytes_elements_are_refused() -> None:
    raw = encode_tensor_bytes("BYTES", ["abc", "de"])
    with pytest.raises(InvalidInput, match="element 1"):
        decode_tensor_bytes("BYTES", [2], raw[:-1], "inputs.w")
    with pytest.raises(InvalidInput, match="after its 1 BYTES"):
        decode_tensor_bytes("BYTES", [1], raw, "inputs.w")


def test_an_unknown_datatype_names_the_datatype_field() -> None:
    with pytest.raises(InvalidInput) as err:
        decode_tensor_bytes("FP8", [1], b"\x00", "inputs.x")
    assert err.value.field == "inputs.x.datatype"
