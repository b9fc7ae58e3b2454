"""Regenerate the gateway's gRPC modules from ``fleet_gateway/grpc_gen/grpc_predict_v2.proto``.

Run ``make grpc-stubs`` (or this file with the project's Python) after editing the .proto; the
generated ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` are committed, so nothing is generated
at install time.

One change is made to what protoc writes: the messages are registered in a descriptor pool of
their own, not protobuf's process-wide default pool. The protocol fixes the package name
(``inference``, which puts the RPCs at ``/inference.GRPCInferenceService/...``), and Triton's and
KServe's clients register the same message names in the default pool: importing
``tritonclient.grpc`` and the gateway in one process would otherwise fail with "duplicate symbol
'inference.ServerLiveRequest'".
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

SRC = Path(__file__).resolve().parents[1] / "src"
PROTO = Path("fleet_gateway/grpc_gen/grpc_predict_v2.proto")
DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
OWN_POOL = (
    "# A pool of its own: tritonclient and kserve register the same 'inference.*' names in the\n"
    "# default pool (scripts/generate_grpc.py says why).\n"
    "_POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = _POOL.AddSerializedFile("
)


def main() -> int:
    include = str(Path(protoc.__file__).parent / "_proto")
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{SRC}",
            f"-I{include}",
            f"--python_out={SRC}",
            f"--pyi_out={SRC}",
            f"--grpc_python_out={SRC}",
            str(SRC / PROTO),
        ]
    )
    if code != 0:
        print(f"protoc failed with exit code {code}", file=sys.stderr)
        return code
    messages = SRC / PROTO.with_name(PROTO.stem + "_pb2.py")
    text = messages.read_text()
    if text.count(DEFAULT_POOL) != 1:
        print(f"{messages}: protoc's output changed; expected one {DEFAULT_POOL!r}", file=sys.stderr)
        return 1
    messages.write_text(text.replace(DEFAULT_POOL, OWN_POOL))
    print(f"generated {messages.parent.relative_to(SRC.parent.parent.parent)}/{PROTO.stem}_pb2*.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
