"""The OpenAPI document: valid OpenAPI 3, served at a stable URL, and
saying what every endpoint really answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from openapi_spec_validator import validate

from tests.conftest import World


@pytest.fixture
def document(db: None) -> dict[str, Any]:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return dict(json.loads(response.content))


def operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_the_schema_is_valid_openapi_3(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.")
    assert document["info"]["version"] == "1.0.0"


def test_every_operation_needs_a_bearer_token_and_declares_its_refusals(
    document: dict[str, Any],
) -> None:
    assert document["components"]["securitySchemes"]
    for label, operation in operations(document):
        assert operation.get("security"), label
        for status in ("401", "403", "404", "422", "429"):
            content = operation["responses"][status]["content"]
            assert list(content) == ["application/problem+json"], (label, status)
        assert "Retry-After" in operation["responses"]["429"]["headers"], label


def test_every_create_documents_the_idempotency_key(document: dict[str, Any]) -> None:
    actions = ("stop", "resume", "reset", "destroy")
    creates = [
        (label, op)
        for label, op in operations(document)
        if label.startswith("POST") and label.split("/")[-1] not in actions
    ]
    # lab, attempt, upload, regrade, webhook, webhook test event
    assert len(creates) == 6, [label for label, _ in creates]
    for label, operation in creates:
        names = [p["name"] for p in operation.get("parameters", [])]
        assert "Idempotency-Key" in names, label


def test_the_upload_documents_both_request_bodies(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v1/exercises/{slug}/submissions"]["post"]
    content = operation["requestBody"]["content"]
    assert content["application/gzip"]["schema"] == {"type": "string", "format": "binary"}
    form = content["multipart/form-data"]["schema"]
    assert form["required"] == ["archive"]
    assert form["properties"]["archive"]["format"] == "binary"
    assert operation["requestBody"]["required"] is True
    for status in ("413", "415"):
        assert list(operation["responses"][status]["content"]) == ["application/problem+json"]


def test_interactive_docs_are_served(world: World) -> None:
    response = Client().get("/api/v1/docs")
    assert response.status_code == 200
    assert b"openapi.json" in response.content
