"""X12 ingestion (835 remittances, 837 claims, 277CA and 999 acknowledgements) into the data contract.

    segments.py  the fast segment reader: bytes -> interchanges in canonical form -> transactions
    remit.py     835 -> remittances, adjustments, remit lines, PLB
    claim.py     837 -> claims, claim lines, account facts
    acks.py      277CA / 999 -> claim_acks
    link.py      claim ids, and which claim a remittance or acknowledgement belongs to
    tables.py    rows -> contract tables that validate
    ingestion.py files, the ledger, parallel mapping, writing the data folder
    strict.py    the optional pyx12 validation pass
"""

from features.sources.x12.ingestion import LEDGER, ingest, iter_x12_files, parse_files
from features.sources.x12.report import IngestSummary, Problem, X12Error
from features.sources.x12.segments import read_interchanges
from features.sources.x12.strict import strict_problems
from features.sources.x12.tables import build_tables

__all__ = [
    "LEDGER", "IngestSummary", "Problem", "X12Error", "build_tables", "ingest", "iter_x12_files", "parse_files",
    "read_interchanges", "strict_problems",
]
