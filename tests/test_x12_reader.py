"""The X12 segment reader (features/sources/x12/segments.py): envelopes, separators, what is not read."""

from __future__ import annotations

from pathlib import Path

from features.sources.x12 import ingest, read_interchanges
from features.sources.x12.values import COMPONENT, REPETITION
from tests.x12_generate import Claim, Envelope, Line, Payer, Payment, Person, Status, file_277ca, file_835, file_837
from tests.x12_writer import Style, write

PAYER = Payer("ACME01", "ACME HEALTH PLAN")
JANE = Person("M1", "DOE", "JANE", "19800615")


def _claim(pcn: str = "A1", **kw) -> Claim:
    return Claim(pcn, PAYER, JANE, JANE, (Line("99213", "100.00"),), "20240110", trace=f"T{pcn}", **kw)


def _payment(pcn: str = "A1", status: str = "1") -> Payment:
    return Payment(pcn, status, "100.00", "80.00", "20.00", "ICN" + pcn, (Line("99213", "100.00", paid="80.00"),),
                   (("PR", "2", "20.00"),))


def _file(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def test_repetition_separator_is_honoured_in_5010_not_in_4010() -> None:
    seg = "NM1*IL*1*DOE^SMITH*JANE~"
    isa5 = write([[["ISA", "00", " " * 10, "00", " " * 10, "ZZ", "S".ljust(15), "ZZ", "R".ljust(15), "240101",
                    "1200", "^", "00501", "000000001", "0", "P", ":"]]], Style()).decode()
    (ic,) = read_interchanges(isa5 + "GS*HC*S*R*20240101*1200*1*X*005010X222A1~" + seg)
    assert ic.segments[2][3] == "DOE" + REPETITION + "SMITH"
    isa4 = isa5.replace("*^*00501*", "*U*00401*")
    (ic,) = read_interchanges(isa4 + "GS*HC*S*R*20240101*1200*1*X*004010X098A1~" + seg)
    assert ic.segments[2][3] == "DOE^SMITH"  # 4010: ISA11 is a standards id, '^' is data


def test_several_groups_and_kinds_in_one_interchange_and_other_kinds_reported(tmp_path: Path) -> None:
    env = Envelope(st02=["0001"])
    claims = file_837([_claim()], env)[0]
    remits = file_835([_payment()], PAYER, "CHK1", Envelope(gs06="2"))[0]
    acks = file_277ca([Status("A1", "A2", "20", "100.00", "20240112")], PAYER, Envelope(gs06="3"))[0]
    eligibility = [["GS", "HS", "S", "R", "20240101", "1200", "4", "X", "005010X279A1"], ["ST", "270", "0009"],
                   ["BHT", "0022", "13", "X", "20240101"], ["SE", "3", "0009"], ["GE", "1", "4"]]
    # one ISA: the 837 group, then the 835's, 277CA's and a 270's groups (their own ISA/IEA dropped)
    one = claims[:-1] + remits[1:-1] + acks[1:-1] + eligibility + claims[-1:]
    p = _file(tmp_path, "mixed.x12", write([one], Style(line_end="\n")))
    tables, summary = ingest([p])
    assert summary.read["837 transaction"] == summary.read["835 transaction"] == 1
    assert summary.read["277CA transaction"] == 1 and summary.skipped["270 transaction"] == 1
    (problem,) = summary.problems
    assert problem.kind == "transaction" and "'270' is not one recoup reads" in problem.reason
    assert problem.segment == len(one) - 1 - 3  # the 270's ST, numbered in the file
    assert len(tables["claims"]) == 1 and len(tables["remittances"]) == 1 and len(tables["claim_acks"]) == 1


def test_what_is_outside_transactions_is_reported(tmp_path: Path) -> None:
    ic = file_835([_payment()], PAYER, "CHK1", Envelope())[0]
    ic = ic[:1] + [["TA1", "000000001", "240101", "1200", "A", "000"]] + ic[1:2] + [["XYZ", "1"]] + ic[2:]
    data = b"ROUTING HEADER 123\r\n" + write([ic], Style(line_end="\r\n"))
    tables, summary = ingest([_file(tmp_path, "junk.835", data)])
    assert len(tables["remittances"]) == 1
    assert dict(summary.skipped) == {"data before ISA": 1, "TA1 segment": 1, "XYZ segment outside a transaction": 1}
    assert [(p.kind, p.segment) for p in summary.problems] == [("segment", None), ("segment", 2), ("segment", 4)]


def test_truncated_transaction_is_reported_and_the_next_read(tmp_path: Path) -> None:
    ic = file_835([_payment("A1"), _payment("A2")], PAYER, "CHK1", Envelope())[0]
    body = ic[2:-3]  # ST .. last segment before SE
    two = ic[:2] + body + ic[2:]  # the first copy has no SE: cut short by the next ST
    tables, summary = ingest([_file(tmp_path, "cut.835", write([two], Style()))])
    assert summary.transactions_read == 1 and summary.skipped["835 transaction"] == 1
    assert "no SE trailer" in summary.problems[0].reason
    assert len(tables["remittances"]) == 2


def test_unreadable_later_interchange_keeps_the_first(tmp_path: Path) -> None:
    good = write(file_835([_payment()], PAYER, "CHK1", Envelope()), Style(line_end="\n"))
    data = good + b"ISA*00*\n"
    tables, summary = ingest([_file(tmp_path, "two.835", data)])
    assert len(tables["remittances"]) == 1
    assert summary.skipped["interchange"] == 1 and "truncated" in summary.problems[0].reason


def test_utf16_file_with_bom(tmp_path: Path) -> None:
    text = write(file_835([_payment()], PAYER, "CHK1", Envelope()), Style(line_end="\r\n")).decode()
    tables, summary = ingest([_file(tmp_path, "u16.835", text.encode("utf-16"))])
    assert len(tables["remittances"]) == 1 and not summary.problems


def test_unused_isa16_reads_the_composites_separator(tmp_path: Path) -> None:
    """A sender whose ISA16 says ':' but whose composites use '>': the claims' composites still read."""
    data = write(file_837([_claim(frequency="7")], Envelope()), Style(comp=">")).replace(b"*P*>~", b"*P*:~")
    tables, summary = ingest([_file(tmp_path, "isa16.837", data)])
    c = tables["claims"].iloc[0]
    assert (c["frequency"], c["frequency_code"], c["principal_dx"]) == ("replacement", "7", "E119")
    assert any("ISA16" in note for note in summary.notes)


def test_composites_use_the_canonical_component_separator() -> None:
    data = write(file_837([_claim()], Envelope()), Style(sep="|", comp="^", rep="!", term="\n"))
    (ic,) = read_interchanges(data)
    clm = next(s for s in ic.segments if s[0] == "CLM")
    assert clm[5] == COMPONENT.join(["11", "B", "1"])


def test_wrapped_file_with_an_isa_tag_cut_by_the_wrap(tmp_path: Path) -> None:
    """Fixed-width records (80 columns) cut segments anywhere, the second interchange's ISA tag too."""
    one = write(file_835([_payment("A1")], PAYER, "CHK1", Envelope()), Style())
    two = write(file_835([_payment("A2")], PAYER, "CHK2", Envelope(isa13="000000002")), Style())
    text = one + two
    cut = len(one) + 2  # between "IS" and "A*" of the second ISA
    head = text[:cut]
    wrapped = b"\r\n".join(head[i:i + 80] for i in range(0, cut, 80)) + b"\r\n" + text[cut:]
    assert b"IS\r\nA*" in wrapped
    tables, summary = ingest([_file(tmp_path, "wrapped.835", wrapped)])
    assert sorted(tables["remittances"]["payer_claim_number"]) == ["ICNA1", "ICNA2"]
    assert not summary.problems and summary.read["835 transaction"] == 2
