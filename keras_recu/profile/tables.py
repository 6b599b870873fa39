"""The summary's text: larq's table layout, cells and readable numbers, for any profile that counts.

Nothing here counts: a row reads a profile through the public interface of
`ProfileRow` (its name, input precision, output shape, parameters per
bitwidth, memory and MACs per precision), and `render_table` lays out rows of
cells as larq's terminaltables-based summary does.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Protocol, Sequence, Union

# The tables' kilobytes: 8 * 1024 bits, as larq's.
BITS_PER_KB = 8 * 1024


class ProfileRow(Protocol):
    """What a row of the layer table reads from a profile (`keras_recu.profile.LayerProfile` and kin)."""

    name: str
    input_precision: Optional[int]

    @property
    def output_shape_str(self) -> str: ...

    @property
    def memory(self) -> int: ...

    def weight_count(self, bitwidth: Optional[int] = None, trainable: Optional[bool] = None) -> int: ...

    def op_count(self, precision: Optional[int] = None, op_type: str = "mac") -> Optional[int]: ...


class TableColumns:
    """The counting columns of a layer table: parameters per bitwidth, memory, MACs per precision."""

    def __init__(self, bitwidths: Sequence[int], precisions: Sequence[int]) -> None:
        self.bitwidths = list(bitwidths)
        self.precisions = list(precisions)

    def header(self) -> List[str]:
        """The header row of the whole table."""
        return [
            "Layer",
            "Input prec.\n(bit)",
            "Outputs",
            *(f"# {b}-bit\nx 1" for b in self.bitwidths),
            "Memory\n(kB)",
            *(f"{p}-bit MACs" for p in self.precisions),
        ]

    def cells(self, profile: ProfileRow) -> List[Any]:
        """The counting cells of `profile`: parameters per bitwidth, memory in kB, MACs ("?" unknown)."""
        memory = profile.memory
        return [
            *(profile.weight_count(b) for b in self.bitwidths),
            memory / BITS_PER_KB if memory else 0,
            *(_or_unknown(profile.op_count(p)) for p in self.precisions),
        ]

    def row(self, profile: ProfileRow) -> List[Any]:
        """The row of one layer: name, input precision ("-" for none), output shape, counting cells."""
        return [profile.name, profile.input_precision or "-", profile.output_shape_str, *self.cells(profile)]

    def total_row(self, total: ProfileRow) -> List[Any]:
        """The last row: "Total" and the counting cells of the whole model."""
        return ["Total", "", "", *self.cells(total)]


def layer_table(total: ProfileRow, rows: Sequence[ProfileRow], columns: TableColumns) -> List[List[Any]]:
    """The layer table as rows of cells: header, one row per profile of `rows`, `total`'s row."""
    return [columns.header(), *(columns.row(profile) for profile in rows), columns.total_row(total)]


def _or_unknown(value: Optional[int]) -> Union[int, str]:
    return "?" if value is None else value


def readable_number(num: float) -> str:
    """3 significant figures with a k / M / B / T suffix: 1234 -> "1.23 k"."""
    num = float(f"{num:.3g}")  # so that 999500 reads "1 M" rather than "1e+03 k"
    if num < 1000:
        return f"{num:g}"
    if num >= 1e15:
        return f"{num:.2E}"
    for suffix in (" k", " M", " B", " T"):
        num /= 1000.0
        if num < 1000:
            return f"{num:.3g}{suffix}"
    raise AssertionError("unreachable")  # pragma: no cover


def readable_memory(bits: int) -> str:
    """Bits as bytes with a binary prefix: 8 * 2048 -> "2.00 KiB"."""
    size = bits / 8
    for suffix in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:,.2f} {suffix}"
        size /= 1024
    return f"{size:,.2f} GiB"


def _cell_text(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def render_table(
    rows: Sequence[Sequence[Any]],
    title: str,
    right_aligned: bool = False,
    heading_border: bool = False,
    footing_border: bool = False,
) -> str:
    """An ASCII table in larq's layout: `|` and `+--+` borders only, no
    column separators, the title in the top border, cells padded by one space
    and split into lines at "\\n"; with `right_aligned`, every column but the
    first is right-aligned."""
    cells = [[_cell_text(v).split("\n") for v in row] for row in rows]
    n_columns = max(len(row) for row in cells)
    cells = [row + [[""]] * (n_columns - len(row)) for row in cells]
    widths = [
        max(len(line) for row in cells for line in row[c]) for c in range(n_columns)
    ]
    inner = sum(w + 2 for w in widths)
    border = "+" + "-" * inner + "+"

    def text_lines(row: List[List[str]]) -> Iterable[str]:
        height = max(len(cell) for cell in row)
        for i in range(height):
            parts = []
            for c, cell in enumerate(row):
                line = cell[i] if i < len(cell) else ""
                justify = line.rjust if right_aligned and c > 0 else line.ljust
                parts.append(" " + justify(widths[c]) + " ")
            yield "|" + "".join(parts) + "|"

    top = "+" + title + "-" * (inner - len(title)) + "+" if len(title) <= inner else border
    lines = [top]
    for r, row in enumerate(cells):
        if r == len(cells) - 1 and footing_border and r > 0:
            lines.append(border)
        lines.extend(text_lines(row))
        if r == 0 and heading_border and len(cells) > 1:
            lines.append(border)
    lines.append(border)
    return "\n".join(lines)
