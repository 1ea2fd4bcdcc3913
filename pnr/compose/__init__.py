"""Import docker-compose projects as pnr domain configs (`pnr import`). See docs/compose.md."""

from pnr.compose._schema import SCHEMA_ORIGIN, compose_schema, service_keys
from pnr.compose.importer import ImportResult, Note, import_compose
from pnr.compose.keys import SERVICE_KEYS, KeyRule

__all__ = [
    "SCHEMA_ORIGIN",
    "SERVICE_KEYS",
    "ImportResult",
    "KeyRule",
    "Note",
    "compose_schema",
    "import_compose",
    "service_keys",
]
