"""The gateway's OpenAPI document is self-contained: generated clients and fuzzers can read it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fleet_core.events import RouteArm
from support.gateway import route, running_gateway, snapshot


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve (no {part!r})"
        node = node[part]
    return node


async def test_every_ref_in_the_openapi_document_resolves() -> None:
    async with running_gateway(snapshot(route("churn", [RouteArm(version=1, weight=100)]))) as gw:
        r = await gw.client.get("/openapi.json")
    assert r.status_code == 200
    document = r.json()
    found = sorted(set(refs(document)))
    assert "#/components/schemas/RequestInput" in found
    for ref in found:
        resolve(document, ref)


async def test_the_infer_body_describes_the_tensor_form() -> None:
    async with running_gateway(snapshot(route("churn", [RouteArm(version=1, weight=100)]))) as gw:
        document = (await gw.client.get("/openapi.json")).json()
    body = document["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]
    forms = body["content"]["application/json"]["schema"]["oneOf"]
    tensor_form = resolve(document, forms[0]["$ref"]) if "$ref" in forms[0] else forms[0]
    item = tensor_form["properties"]["inputs"]["items"]
    request_input = resolve(document, item["$ref"])
    assert {"name", "shape", "datatype", "data"} <= set(request_input["properties"])
