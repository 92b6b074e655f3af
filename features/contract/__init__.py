"""The data contract (DESIGN.md, "The data contract"): what a dataset is, and how it is read,
typed, validated and written.

- `tables`: the declaration of every table (`TABLES`), from which everything else derives;
- `dataset`: a dataset in memory (`Dataset`, `ColumnTable`);
- `read`: folders (Parquet, CSV) and SQL databases in;
- `validate`: canonical types (`coerce_table`) and the pandera and cross-table checks;
- `write`: the one atomic writer, for folders (`DatasetWriter`, `write_dataset`) and PostgreSQL, and the
  idempotent append of one table's rows (`append_table`);
- `work`: recording the `work` table's rows that work-queue systems report (`record_work`).

Callers import from `features.contract`, not from the modules.
"""

from features.contract.dataset import ColumnTable, Dataset, float_column, latest_date, person_of_accounts
from features.contract.read import is_sql_url, read_dataset, read_known_values, read_raw, split_sql_target
from features.contract.tables import (
    ACK_SOURCES,
    ACK_STATUSES,
    ACTIVITY_TYPES,
    APPEAL_OUTCOMES,
    BOUND_VARIABLES,
    CLAIM_FREQUENCIES,
    CLAIM_STATUS_FROM_X12,
    CLAIM_STATUSES,
    CLAIM_TYPES,
    ENCOUNTER_TYPES,
    FINANCIAL_CLASSES,
    FORWARDED_X12_STATUSES,
    FREQUENCY_FROM_X12,
    GROUP_CODES,
    NANOSECOND_DAYS,
    REQUIRED_TABLES,
    TABLES,
    TXN_TYPES,
    WORK_ACTIONS,
    Bounds,
    Col,
    ColumnType,
    ContractError,
    Ref,
    Table,
    Violation,
    columns_of,
)
from features.contract.validate import (
    bound_violations,
    coerce_table,
    pandera_schema,
    table_violations,
    validate_dataset,
)
from features.contract.work import (
    WorkSummary,
    check_work,
    read_work_rows,
    record_work,
    store_work,
    unknown_references,
)
from features.contract.write import (
    Appended,
    DatasetWriter,
    KeyConflict,
    append_table,
    arrow_schema,
    load_dataset,
    write_dataset,
    write_sql,
)

__all__ = [
    "ACK_SOURCES", "ACK_STATUSES", "FORWARDED_X12_STATUSES",
    "ACTIVITY_TYPES", "APPEAL_OUTCOMES", "CLAIM_FREQUENCIES", "CLAIM_STATUS_FROM_X12", "CLAIM_STATUSES",
    "CLAIM_TYPES", "ENCOUNTER_TYPES", "FINANCIAL_CLASSES", "FREQUENCY_FROM_X12", "GROUP_CODES", "NANOSECOND_DAYS",
    "REQUIRED_TABLES", "TABLES", "TXN_TYPES", "WORK_ACTIONS",
    "BOUND_VARIABLES", "Bounds", "bound_violations",
    "Appended", "Col", "ColumnTable", "ColumnType", "ContractError", "Dataset", "DatasetWriter", "KeyConflict",
    "Ref", "Table", "Violation",
    "append_table", "arrow_schema", "coerce_table", "columns_of", "float_column", "is_sql_url", "latest_date",
    "load_dataset", "pandera_schema", "person_of_accounts", "read_dataset", "read_known_values", "read_raw",
    "split_sql_target", "table_violations", "validate_dataset", "write_dataset", "write_sql",
    "WorkSummary", "check_work", "read_work_rows", "record_work", "store_work", "unknown_references",
]
