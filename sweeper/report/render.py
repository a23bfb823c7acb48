"""One renderer for many tables and formats: plain text, Markdown, booktabs LaTeX, CSV.

A :class:`Table` is what a report decided to show (title, a stub column of row names, the value
columns, cells already formatted as text, notes); :func:`render` lays out any number of them in
one format, as torch.utils.benchmark's ``Compare`` does for its results. The paper tables
(sweeper.report.paper) and the comparison of two sweeps (sweeper.report.compare) both go
through it; the old tool's tables keep their own byte-exact layout (sweeper.report.tables).
Standard library only.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

__all__ = ["FORMATS", "Table", "latex_escape", "render"]

FORMATS = ("text", "md", "latex", "csv")
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
# Characters our cells use that LaTeX needs spelt out (math mode keeps them upright and spaced).
_LATEX_SYMBOLS = {
    "±": r"$\pm$",
    "∝": r"$\propto$",
    "→": r"$\to$",
    "²": r"$^2$",
    "×": r"$\times$",
    ">": r"$>$",  # in text mode OT1 prints < and > as inverted marks
    "<": r"$<$",
    "|": r"\textbar{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(k) for k in [*_LATEX_SPECIALS, *_LATEX_SYMBOLS]))


def latex_escape(text: str) -> str:
    """Text as LaTeX prints it literally (``_`` -> ``\\_``; ``±`` -> ``$\\pm$``)."""
    table = {**_LATEX_SPECIALS, **_LATEX_SYMBOLS}
    return _LATEX_PATTERN.sub(lambda m: table[m.group(0)], text)


@dataclass
class Table:
    """A titled grid of text: ``stub`` heads the first column (row names), ``columns`` the rest.

    ``column_title`` names what the value columns are (``sequence length``): LaTeX spans it over
    them; the other formats prefix each column header with ``column_prefix``.
    """

    title: str
    stub: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]  # each: the row name, then one cell per column
    notes: Sequence[str] = field(default_factory=list)
    column_title: Optional[str] = None
    column_prefix: str = ""
    align: str = "r"  # "l" or "r" for every value column, or one letter per value column
    key: str = ""  # LaTeX \label: tab:sweeper-KEY

    def aligns(self) -> str:
        """One letter per value column; the stub is always left-aligned."""
        return self.align * len(self.columns) if len(self.align) == 1 else self.align

    def header(self) -> List[str]:
        prefix = f"{self.column_prefix} " if self.column_prefix else ""
        return [self.stub, *(f"{prefix}{c}" for c in self.columns)]


def _text(table: Table) -> str:
    grid = [table.header(), *[list(r) for r in table.rows]]
    widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [
            cell.rjust(w) if a == "r" else cell.ljust(w)
            for cell, w, a in zip(row[1:], widths[1:], table.aligns())
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(grid[0]))
    out = [table.title, rule, line(grid[0]), rule, *[line(r) for r in grid[1:]], rule]
    return "\n".join([*out, *table.notes])


def _md_cell(text: str) -> str:
    """Literal in Markdown: ``|`` would end the cell, ``*`` start emphasis or a list."""
    return text.replace("|", "\\|").replace("*", "\\*")


def _md(table: Table) -> str:
    header = table.header()
    rules = {"l": ":---", "r": "---:"}
    out = [
        f"**{table.title}**",
        "",
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "| :--- | " + " | ".join(rules[a] for a in table.aligns()) + " |",
        *["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows],
    ]
    if table.notes:
        out += ["", *[f"{_md_cell(note)}  " for note in table.notes]]
        out[-1] = out[-1].rstrip()
    return "\n".join(out)


def _latex(table: Table) -> str:
    n = len(table.columns)
    spec = "l" + table.aligns()
    out = [
        r"\begin{table}[htbp]",
        r"  \centering",
        rf"  \caption{{{latex_escape(table.title)}}}",
        *([rf"  \label{{tab:sweeper-{table.key}}}"] if table.key else []),
        rf"  \begin{{tabular}}{{{spec}}}",
        r"    \toprule",
    ]
    if table.column_title:
        out += [
            rf"    & \multicolumn{{{n}}}{{c}}{{{latex_escape(table.column_title)}}} \\",
            rf"    \cmidrule(l){{2-{n + 1}}}",
            "    " + " & ".join(latex_escape(c) for c in [table.stub, *table.columns]) + r" \\",
        ]
    else:
        out.append("    " + " & ".join(latex_escape(c) for c in table.header()) + r" \\")
    out.append(r"    \midrule")
    out += ["    " + " & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
    out += [r"    \bottomrule", r"  \end{tabular}"]
    if table.notes:
        notes = r" \\ ".join(latex_escape(note) for note in table.notes)
        out.append(rf"  \par\smallskip{{\footnotesize {notes}\par}}")
    out.append(r"\end{table}")
    return "\n".join(out)


def _csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["table", *table.header()])
    for row in table.rows:
        writer.writerow([table.title, *row])
    return out.getvalue().rstrip("\n")


_RENDERERS = {"text": _text, "md": _md, "latex": _latex, "csv": _csv}


def render(tables: Sequence[Table], fmt: str, preamble: Sequence[str] = ()) -> str:
    """The tables in ``fmt`` (one of FORMATS), after ``preamble`` lines (provenance): a comment
    in LaTeX and CSV, plain lines in text and Markdown."""
    if fmt not in _RENDERERS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "latex":
        head = [f"% {latex_free(line)}" for line in preamble]
    elif fmt == "csv":
        head = [f"# {line}" for line in preamble]
    elif fmt == "md":  # a line break after each line (two spaces), not one paragraph
        head = [f"{_md_cell(line)}  " for line in preamble[:-1]] + [
            _md_cell(line) for line in preamble[-1:]
        ]
    else:
        head = list(preamble)
    blocks = [_RENDERERS[fmt](table) for table in tables]
    parts = (["\n".join(head)] if head else []) + blocks
    return "\n\n".join(parts) + "\n"


def latex_free(text: str) -> str:
    """A line safe inside a LaTeX comment (no line breaks)."""
    return " ".join(text.splitlines())
