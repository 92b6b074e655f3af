"""X12 ingestion (835, 837, 277CA, 999) into the data contract."""

from features.sources.x12.tables import (  # noqa: F401
    IngestSummary,
    Problem,
    X12Error,
    build_tables,
    ingest,
    iter_x12_files,
    parse_files,
    read_interchanges,
    strict_problems,
)
