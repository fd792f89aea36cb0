"""The shared table writer (CSV + markdown) and PNG helpers of `spikefed.report`."""

from __future__ import annotations

import pytest

from spikefed.report.figures import line_png, save_png
from spikefed.report.tables import columns_of, markdown_table, rows_markdown, write_rows_csv

ROWS = [{"method": "fedavg", "acc": 0.5, "note": None},
        {"method": "s-fedavg", "acc": 0.125, "extra": "a|b"}]


def test_csv_columns_default_to_every_key_and_none_is_empty(tmp_path) -> None:
    path = write_rows_csv(ROWS, tmp_path / "t.csv")
    assert path.read_bytes().decode() == ("method,acc,note,extra\r\n"
                                "fedavg,0.5,,\r\n"
                                "s-fedavg,0.125,,a|b\r\n")


def test_csv_with_fields_keeps_their_order_and_drops_other_keys(tmp_path) -> None:
    write_rows_csv(ROWS, tmp_path / "t.csv", ["acc", "method", "missing"])
    assert (tmp_path / "t.csv").read_bytes().decode() == ("acc,method,missing\r\n"
                                                "0.5,fedavg,\r\n"
                                                "0.125,s-fedavg,\r\n")


def test_columns_of_is_first_seen_order_without_skipped() -> None:
    assert columns_of(ROWS, skip=("note",)) == ["method", "acc", "extra"]


def test_markdown_table_exact_with_alignment_format_and_escaping() -> None:
    text = markdown_table(["name", "value", "n"], [["a", 0.5, 1], ["b|c", 0.25, 22]], "lrc",
                          fmt=lambda v: f"{v:.2f}" if isinstance(v, float) else str(v))
    assert text == ("| name | value | n |\n"
                    "|---|---:|:---:|\n"
                    "| a | 0.50 | 1 |\n"
                    "| b\\|c | 0.25 | 22 |")


def test_rows_markdown_reads_dict_rows_missing_as_none() -> None:
    assert rows_markdown(ROWS, ["method", "note"]) == ("| method | note |\n|---|---|\n"
                                                       "| fedavg | None |\n| s-fedavg | None |")


def test_markdown_table_rejects_bad_alignment() -> None:
    with pytest.raises(ValueError, match="align='lx'"):
        markdown_table(["a", "b"], [], "lx")
    with pytest.raises(ValueError, match="2 columns"):
        markdown_table(["a", "b"], [], "lrr")


def test_png_helpers_write_closed_figures(tmp_path) -> None:
    import matplotlib.pyplot as plt

    path = line_png({"a": ([1, 2], [0.1, 0.2]), "b": ([1, 2], [0.3, 0.1])}, tmp_path / "l.png",
                    xlabel="x", ylabel="y", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not plt.get_fignums()
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert save_png(fig, tmp_path / "s.png", dpi=50).stat().st_size > 0
    assert not plt.get_fignums()
