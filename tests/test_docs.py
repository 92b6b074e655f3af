"""docs/*.md are generated from the code (`python -m features.docs`): they must match it."""

from __future__ import annotations

from features.catalogue import FEATURE_VIEWS
from features.contract import TABLES
from features.docs import DOCS_DIR, PAGES, data_contract_md, feature_catalogue_md, main, stale_pages


def test_committed_docs_match_the_code():
    stale = stale_pages(DOCS_DIR)
    assert not stale, f"docs out of date: {stale}; run `python -m features.docs` and commit docs/"


def test_every_table_column_and_feature_is_documented():
    contract, catalogue = data_contract_md(), feature_catalogue_md()
    for t in TABLES.values():
        assert f"## {t.name}\n" in contract
        for col in t.columns:
            assert f"| `{col}` |" in contract
    for v in FEATURE_VIEWS:
        assert f"### {v.name}\n" in catalogue
        for f in v.features:
            row = next(line for line in catalogue.splitlines() if line.startswith(f"| `{f.name}` |")
                       and f.description.replace("|", "\\|") in line)
            assert f.dtype in row


def test_check_mode_flags_a_stale_page(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PAGES)
    assert main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "feature_catalogue.md").write_text("edited by hand\n")
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert "feature_catalogue.md is out of date" in capsys.readouterr().err
