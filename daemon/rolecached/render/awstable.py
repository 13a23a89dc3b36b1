"""The AWS CLI's `--output table` layout, byte for byte (v1 and v2 draw it the same way).

Pure. The layout rules, as the CLI applies them to a response (after --query):
- a dict is a section: its scalar keys, sorted, are a header row over one row of values (a
  single scalar key is one `key | value` row instead); each non-scalar key, sorted, is a
  section of its own, titled with the key and indented one level deeper;
- a list of dicts is one section whose header is every scalar key of any element, one row
  per element; a list of scalars is one column; a scalar alone is just the title;
- every section spans the widest one: columns are scaled to fill it, and when the table is
  wider than the terminal, single-row sections turn into `header | value` rows.
Text widths count East Asian wide characters twice, as a terminal shows them.
"""

import unicodedata
from dataclasses import dataclass, field
from typing import Any

PADDING = 4  # around each column's text
DEFAULT_COLUMNS = 80  # the CLI's width when stdout is not a terminal


def text_width(text: str) -> int:
    """Columns a terminal gives `text`: wide and ambiguous East Asian characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WFA" else 1 for ch in text)


@dataclass
class Section:
    """One titled block of the table: optional column headers, then rows of cells."""

    title: str | None  # None for a nested list's sections: the CLI counts it as "None"
    indent: int = 0
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)  # widest text per column

    def add_header(self, headers: list[str]) -> None:
        self._widen(headers)
        self.headers = headers

    def add_row(self, cells: list[Any]) -> None:
        row = [str(cell) for cell in cells]
        self.rows.append(row)
        self._widen(row)

    def _widen(self, cells: list[str]) -> None:
        lengths = [text_width(cell) for cell in cells]
        if not self.widths:
            self.widths = lengths
        else:
            self.widths = [max(a, b) for a, b in zip(self.widths, lengths, strict=False)]

    def total_width(self) -> int:
        """Columns this section needs, borders and indentation included."""
        columns = sum(w + PADDING for w in self.widths) + 2 + 2 * self.indent
        return max(text_width(str(self.title)) + 2 + 2 * self.indent, columns)

    def column_widths(self, width: int) -> list[int]:
        """Each column's share of `width`, in proportion to its text (the CLI's rounding)."""
        unscaled = [w + PADDING for w in self.widths]
        if not unscaled:
            return []
        factor = width / float(sum(unscaled))
        scaled = [round(factor * w) for w in unscaled]
        off_by = sum(scaled) - width
        while off_by != 0:
            order = range(len(scaled)) if off_by > 0 else reversed(range(len(scaled)))
            for i in order:
                if off_by > 0:
                    scaled[i] -= 1
                    off_by -= 1
                else:
                    scaled[i] += 1
                    off_by += 1
                if off_by == 0:
                    break
        return scaled


def _scalar(value: Any) -> bool:
    return not isinstance(value, list | dict)


def _split_keys(item: dict[str, Any]) -> tuple[list[str], list[str]]:
    headers = sorted(k for k, v in item.items() if _scalar(v))
    nested = sorted(k for k, v in item.items() if not _scalar(v))
    return headers, nested


def build(title: str | None, data: Any, sections: list[Section], indent: int = 0) -> None:
    """Append the sections `data` makes under `title` (None: continue the current one)."""
    if not data:
        return
    if title is not None:
        sections.append(Section(title, indent))
    current = sections[-1]
    if isinstance(data, list):
        if isinstance(data[0], dict):
            _list_of_dicts(title, data, sections, indent)
        else:
            for item in data:
                if _scalar(item):
                    current.add_row([item])
                elif all(_scalar(el) for el in item):
                    current.add_row(list(item))
                else:
                    build(None, item, sections)
    elif isinstance(data, dict):
        headers, nested = _split_keys(data)
        if len(headers) == 1:
            current.add_row([headers[0], data[headers[0]]])
        elif headers:
            current.add_header(headers)
            current.add_row([data[k] for k in headers])
        for key in nested:
            build(key, data[key], sections, indent + 1)


def _list_of_dicts(
    title: str | None, items: list[dict[str, Any]], sections: list[Section], indent: int
) -> None:
    headers: set[str] = set()
    nested: set[str] = set()
    for item in items:
        scalars, others = _split_keys(item)
        headers.update(scalars)
        nested.update(others)
    columns, more = sorted(headers), sorted(nested)
    sections[-1].add_header(columns)
    for n, item in enumerate(items):
        if n and more:
            sections.append(Section(title, indent))
            sections[-1].add_header(columns)
        sections[-1].add_row([item.get(h, "") for h in columns])
        for key in more:
            if key in item:
                build(key, item[key], sections, indent + 1)


def _centered(text: str, width: int, left: str = "|", right: str = "|") -> str:
    length = text_width(text)
    start = width // 2 - length // 2 - 1
    so_far = len(left) + start + length
    return left + " " * start + text + " " * (width - len(right) - so_far) + right


def _left(text: str, width: int, left: str, right: str = "|") -> str:
    length = text_width(text)
    padding = 2 if width - (length + 2 + len(left) + len(right)) >= 0 else 0
    fill = width - len(left) - padding - length - len(right)
    return left + " " * padding + text + " " * fill + right


def _rule(widths: list[int]) -> str:
    parts = [f"+{'-' * (widths[0] - 2)}+"] + [f"{'-' * (w - 1)}+" for w in widths[1:]]
    return "".join(parts)


def _vertical(sections: list[Section]) -> list[Section]:
    out = []
    for section in sections:
        if len(section.rows) == 1 and section.headers:
            turned = Section(section.title, section.indent)
            for header, cell in zip(section.headers, section.rows[0], strict=False):
                turned.add_row([header, cell])
            out.append(turned)
        else:
            out.append(section)
    return out


def render(title: str, data: Any, columns: int = DEFAULT_COLUMNS) -> str:
    """The table `aws ... --output table` prints for `data` under the operation's name."""
    sections: list[Section] = []
    build(title, data, sections)
    if not sections:
        return ""
    width = max(s.total_width() for s in sections)
    if width > columns:
        sections = _vertical(sections)
        width = max(s.total_width() for s in sections)
    lines = ["-" * width]
    for section in sections:
        inner = width - 2 * section.indent
        body: list[str] = []
        if section.title:
            body.append(_centered(section.title, inner))
            if not section.headers and not section.rows:
                body.append(f"+{'-' * (inner - 2)}+")
        widths = section.column_widths(inner)
        if section.headers:
            body.append(_rule(widths))
            body.append(
                "".join(
                    _centered(h, w, "|" if i == 0 else "")
                    for i, (h, w) in enumerate(zip(section.headers, widths, strict=False))
                )
            )
        if section.rows and widths:
            body.append(_rule(widths))
            for row in section.rows:
                body.append(
                    "".join(
                        _left(cell, w, "|" if i == 0 else "")
                        for i, (cell, w) in enumerate(zip(row, widths, strict=False))
                    )
                )
            body.append(_rule(widths))
        edge = "|" * section.indent
        lines.extend(edge + line + edge for line in body)
    return "\n".join(lines) + "\n"
