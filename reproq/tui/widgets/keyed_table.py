"""A data table whose rows are keyed by an id and updated in place on every refresh."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist

__all__ = ["Cell", "Col", "KeyedTable"]

Cell = str | Text
"""What a table cell holds."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Col:
    """One column: its key, header and width (None: as wide as its content).

    A ``flex`` column takes the width the others leave (at least ``width``), so the
    table fills the terminal without a horizontal scrollbar.
    """

    key: str
    label: str
    width: int | None = None
    flex: bool = False


class KeyedTable(DataTable[Cell], inherit_bindings=False):
    """Rows keyed by an id (``result_id``, queue name, ...), synchronised in place.

    :meth:`sync` updates only the cells that changed, adds and removes rows, restores
    the order given, and keeps the cursor on the same *row key*, so a refresh never
    moves the user's place. The key column must display the row key as its text.

    Enter is left to the screen (it names what Enter does in the footer).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        b for b in DataTable.BINDINGS if not (isinstance(b, Binding) and b.key == "enter")
    ]

    def __init__(self, columns: Sequence[Col], *, key_column: str, **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self._cols = tuple(columns)
        self._key_column = key_column
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._order: list[str] = []

    def on_mount(self) -> None:
        """Add the columns (measuring them needs the app)."""
        for col in self._cols:
            self.add_column(col.label, key=col.key, width=col.width)

    def on_resize(self, event: events.Resize) -> None:
        """Share the free width among the flex columns."""
        flex = [c for c in self._cols if c.flex]
        if not flex:
            return
        pad = 2 * self.cell_padding
        fixed = sum((c.width or 0) + pad for c in self._cols if not c.flex)
        # The vertical scrollbar is reserved even when absent, so rows arriving later
        # never make the table wider than the screen.
        free = event.size.width - int(self.styles.scrollbar_size_vertical) - fixed
        share = free // len(flex) - pad
        total = fixed
        for col in flex:
            column = self.columns[ColumnKey(col.key)]
            column.width = max(col.width or 1, share)
            column.auto_width = False
            total += column.width + pad
        self.virtual_size = Size(total, self.virtual_size.height)
        self.notify_style_update()

    @property
    def cursor_key(self) -> str | None:
        """The key of the highlighted row, None when the table is empty."""
        if not self._order or not self.is_valid_row_index(self.cursor_row):
            return None
        row_key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return row_key.value

    @property
    def keys(self) -> list[str]:
        """The row keys in display order."""
        return list(self._order)

    def sync(self, rows: Sequence[tuple[str, Sequence[Cell]]]) -> None:
        """Show exactly ``rows`` (key, cells) in this order, changing as little as possible."""
        keep = self.cursor_key
        wanted = {key for key, _ in rows}
        for key in [k for k in self._cells if k not in wanted]:
            self.remove_row(key)
            del self._cells[key]
        for key, cells in rows:
            # Plain strings would be read as markup; data must show as it is.
            new = tuple(_literal(c) for c in cells)
            old = self._cells.get(key)
            if old is None:
                self.add_row(*new, key=key)
            elif old != new:
                for col, before, after in zip(self._cols, old, new, strict=True):
                    if before != after:
                        self.update_cell(key, col.key, after)
            self._cells[key] = new
        order = [key for key, _ in rows]
        if order != self._current_order():
            position = {key: i for i, key in enumerate(order)}

            def by_position(cell: Cell) -> int:
                return position[cell.plain if isinstance(cell, Text) else str(cell)]

            self.sort(self._key_column, key=by_position)
        self._order = order
        if keep is not None and keep in self._cells:
            self.move_to(keep, scroll=False)

    def _current_order(self) -> list[str]:
        return [str(row.key.value) for row in self.ordered_rows]

    def move_to(self, key: str, *, scroll: bool = True) -> bool:
        """Put the cursor on the row ``key``; False if there is no such row."""
        try:
            index = self.get_row_index(key)
        except RowDoesNotExist:
            return False
        if index != self.cursor_row:
            self.move_cursor(row=index, scroll=scroll)
        return True

    def set_cell(self, key: str, column: str, value: Cell) -> None:
        """Change one cell of row ``key`` (kept in the sync state too)."""
        value = _literal(value)
        old = self._cells.get(key)
        if old is None:
            return
        index = next(i for i, c in enumerate(self._cols) if c.key == column)
        if old[index] == value:
            return
        self._cells[key] = (*old[:index], value, *old[index + 1 :])
        self.update_cell(key, column, value)


def _literal(cell: Cell) -> Text:
    return Text(cell) if isinstance(cell, str) else cell
