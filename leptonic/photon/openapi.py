"""OpenAPI 3.1 document and Swagger UI page for a photon, built from its handlers' types."""

from __future__ import annotations

import html
from typing import Any

from pydantic import BaseModel

from leptonic.errors import PROBLEM_CONTENT_TYPE
from leptonic.photon.handler import HandlerSignature

REF_TEMPLATE = "#/components/schemas/{model}"

_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["title", "status", "detail"],
}


def openapi_document(title: str, sigs: list[HandlerSignature], version: str = "0.1.0",
                     description: str | None = None) -> dict[str, Any]:
    """One path per handler (``POST`` with a JSON body, or ``GET`` with query parameters)
    with its request and 200 response schemas."""
    components: dict[str, Any] = {"Problem": _PROBLEM_SCHEMA}
    paths: dict[str, Any] = {}
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for sig in sigs:
        spec = sig.spec
        request = _hoist(sig.request_model.model_json_schema(ref_template=REF_TEMPLATE),
                         components)
        item = _hoist(sig.output.json_schema(ref_template=REF_TEMPLATE), components)
        if isinstance(sig.output_type, type) and issubclass(sig.output_type, BaseModel):
            # a model output is a named schema, as it would be nested anywhere else
            name = sig.output_type.__name__
            components.setdefault(name, item)
            item = {"$ref": REF_TEMPLATE.format(model=name)}
        if spec.stream:
            ok: dict[str, Any] = {
                "description": "Server-sent events: one `data: <json>` event per item; "
                               "each item follows `x-item-schema`.",
                "content": {"text/event-stream": {
                    "schema": {"type": "string"}, "x-item-schema": item}},
            }
        else:
            ok = {"description": "Successful response",
                  "content": {"application/json": {"schema": item}}}
        op: dict[str, Any] = {
            "operationId": spec.name,
            "summary": spec.name,
            "responses": {
                "200": ok,
                "413": {"description": "Request body too large",
                        "content": {PROBLEM_CONTENT_TYPE: {"schema": problem_ref}}},
                "422": {"description": "Invalid request body",
                        "content": {PROBLEM_CONTENT_TYPE: {"schema": problem_ref}}},
                "500": {"description": "The handler failed",
                        "content": {PROBLEM_CONTENT_TYPE: {"schema": problem_ref}}},
            },
        }
        method = spec.method.lower()
        if method == "get":
            props = request.get("properties", {})
            needed = set(request.get("required", []))
            op["parameters"] = [{"name": k, "in": "query", "required": k in needed,
                                 "schema": v} for k, v in props.items()]
        else:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": request}}}
        doc = (spec.fn.__doc__ or "").strip()
        if doc:
            op["description"] = doc
        if spec.batch is not None:
            op["x-batch"] = {"max_batch_size": spec.batch, "max_wait_ms": spec.max_wait_ms}
        paths.setdefault(spec.path, {})[method] = op
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    return {"openapi": "3.1.0", "info": info, "paths": paths,
            "components": {"schemas": components}}


def _hoist(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    return schema


def swagger_ui_html(title: str, openapi_url: str = "/openapi.json") -> str:
    """A Swagger UI page that loads swagger-ui-dist from a CDN (as FastAPI's ``/docs``)."""
    cdn = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
    t = html.escape(title)
    return f"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link type="text/css" rel="stylesheet" href="{cdn}/swagger-ui.css">
<title>{t} - Swagger UI</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{cdn}/swagger-ui-bundle.js"></script>
<script>
const ui = SwaggerUIBundle({{
  url: {openapi_url!r},
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
}})
</script>
</body>
</html>
"""
