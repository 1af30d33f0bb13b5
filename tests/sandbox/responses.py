"""What the sandbox sends: a Response value, and the JSON, CSV and error bodies."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .data import Record

NEXT_URL_HEADER = "X-Custobar-Next-Url"
JSON_TYPE = "application/json; charset=utf-8"
CSV_TYPE = "text/csv; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def error_response(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    body = msgspec.json.encode({"error": {"reason": reason}})
    return Response(status, body, headers=dict(headers or {}))


def project(records: list[Record], keys: tuple[str, ...]) -> list[Record]:
    return [{key: record[key] for key in keys if key in record} for record in records]


def render_json(stream: str, records: list[Record], next_url: str | None) -> bytes:
    payload: dict[str, Any] = {stream: records}
    if next_url is not None:
        payload["next_url"] = next_url
    return msgspec.json.encode(payload)


def render_csv(records: list[Record], columns: Iterable[str]) -> bytes:
    columns = list(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_cell(record.get(column)) for column in columns])
    return buffer.getvalue().encode("utf-8")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return msgspec.json.encode(value).decode("utf-8")
    return str(value)
