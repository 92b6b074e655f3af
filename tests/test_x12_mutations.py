"""The mutation suite: every sample file in ../shared/samples/x12, re-serialized in each way real senders
write X12 (tests/x12_writer.VARIATIONS), reads to exactly the same tables as the original, with the
same counts of what was read and skipped and the same problems at the same segment numbers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from features.contract import TABLES
from features.sources.x12 import ingest
from tests.x12_writer import VARIATIONS, Style, parse, restyle, with_control_numbers, write

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "x12"
FILES = sorted(p for kind in ("835", "837") if (SAMPLES / kind).is_dir() for p in (SAMPLES / kind).iterdir())
needs_samples = pytest.mark.skipif(not FILES, reason="../shared/samples/x12 is not here")


def _read(paths: list[Path]) -> tuple[dict[str, pd.DataFrame], object]:
    return ingest(paths, workers=1)


def _same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame], what: str) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], want[name], obj=f"{what}: {name}")


def _problems(summary) -> list[tuple]:
    return [(Path(p.file).name, p.kind, p.segment, p.reason) for p in summary.problems]


@pytest.fixture(scope="module")
def originals() -> tuple:
    tables, summary = _read(FILES)
    assert len(tables["claims"]) > 30 and len(tables["remittances"]) > 20 and len(tables["adjustments"]) > 50
    return tables, summary


@needs_samples
@pytest.mark.parametrize("variation", list(VARIATIONS))
def test_every_sample_reads_the_same_in_each_variation(variation: str, originals, tmp_path: Path) -> None:
    style = VARIATIONS[variation]
    mutated = []
    for f in FILES:
        (tmp_path / f.parent.name).mkdir(exist_ok=True)
        m = tmp_path / f.parent.name / f.name
        m.write_bytes(restyle(f.read_bytes(), style))
        mutated.append(m)
    tables, summary = _read(mutated)
    want_tables, want = originals
    _same_tables(tables, want_tables, variation)
    assert summary.read == want.read and summary.skipped == want.skipped
    assert (summary.files_read, summary.files_already_ingested) == (want.files_read, want.files_already_ingested)
    assert _problems(summary) == _problems(want)  # the same segment numbers, whatever the layout


def _enveloped() -> list[Path]:
    return [f for f in FILES if f.read_bytes().lstrip(b"\xef\xbb\xbf \r\n").startswith(b"ISA")]


@needs_samples
def test_samples_concatenated_into_one_file_read_as_the_files_do(tmp_path: Path) -> None:
    files = _enveloped()
    assert len(files) > 20
    want, _ = _read(files)
    # (read one by one, two identical files would count as one, already ingested: count per file)
    read = sum((_read([f])[1].read for f in files), Counter())
    skipped = sum((_read([f])[1].skipped for f in files), Counter())
    # several interchanges in one file, each written by another sender's habits (separators too)
    styles = [Style(), Style(line_end="\r\n", indent="  "), VARIATIONS["other separators"],
              VARIATIONS["line break as terminator"], VARIATIONS["control-character separators"]]
    one = tmp_path / "all.x12"
    one.write_bytes(b"\r\n".join(restyle(f.read_bytes(), styles[i % len(styles)]) for i, f in enumerate(files)))
    got, summary = _read([one])
    _same_tables(got, want, "concatenated")
    assert summary.read == read and summary.skipped == skipped
    assert summary.files_read == 1


@needs_samples
def test_files_reusing_an_interchange_control_number_are_all_read(tmp_path: Path) -> None:
    """Two different files with the same ISA06/ISA13 (a wrapped counter, another clearinghouse
    account): both are read; and the same content re-sent under another control number adds nothing."""
    a, b = [f for f in _enveloped() if f.parent.name == "835"][:2]
    same = [with_control_numbers(parse(f.read_bytes()), "000000001") for f in (a, b)]
    pa, pb = tmp_path / "a.835", tmp_path / "b.835"
    pa.write_bytes(write(same[0], Style()))
    pb.write_bytes(write(same[1], Style()))
    out = tmp_path / "data"
    ingest([pa], out=out)
    tables, summary = ingest([pb], out=out)
    assert summary.files_read == 1 and summary.remits > 0
    want, _ = _read([a, b])
    assert len(tables["remittances"]) == len(want["remittances"])
    assert tables["remittances"]["remit_id"].is_unique
    # a re-send of a's content in another envelope (other control number, other layout): nothing added
    resent = tmp_path / "a_again.835"
    resent.write_bytes(write(with_control_numbers(parse(a.read_bytes()), "000000777"), Style(line_end="\n")))
    again, summary = ingest([resent], out=out)
    assert summary.files_read == 1
    assert {n: len(df) for n, df in again.items()} == {n: len(df) for n, df in tables.items()}
