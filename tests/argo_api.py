"""Argo v4.1.2's published API descriptions (tests/data/argo/), ready for validation."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import jsonschema

DATA = Path(__file__).parent / "data" / "argo"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


def _strict(definitions: dict) -> dict:
    definitions = copy.deepcopy(definitions)
    definitions[INT_OR_STRING] = {"type": ["integer", "string"]}
    for definition in definitions.values():
        if "properties" in definition:
            definition["additionalProperties"] = False
    return definitions


@cache
def schema_validator(kind: str = "WorkflowTemplate") -> jsonschema.Validator:
    """Strict validator of an Argo object (additionalProperties false everywhere)."""
    definitions = _strict(json.loads((DATA / "schema.json").read_text())["definitions"])
    schema = {"$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}",
              "definitions": definitions}
    return jsonschema.Draft202012Validator(schema)


@cache
def swagger() -> dict:
    return json.loads((DATA / "swagger.json").read_text())


@cache
def swagger_validator(definition: str) -> jsonschema.Validator:
    """Strict validator of one Swagger 2.0 definition of the Argo Server API."""
    definitions = _strict(swagger()["definitions"])
    schema = {"$ref": f"#/definitions/{definition}", "definitions": definitions}
    return jsonschema.Draft4Validator(schema)


def errors(validator: jsonschema.Validator, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in sorted(validator.iter_errors(document), key=str)]
