"""A model card's Markdown as one self-contained HTML page.

The card is written once, as Markdown (:meth:`ModelCard.to_markdown`); this renders
the small subset that rendering uses (``#``/``##`` headings, ``-`` lists, pipe tables,
paragraphs, ``_emphasis_``) to HTML with an inline style sheet and no script, font or
image from anywhere, so the file can be mailed or archived as is. Every piece of text
is HTML-escaped.
"""

from __future__ import annotations

import html
import re

__all__ = ["markdown_page"]

_EMPHASIS = re.compile(r"(?<![\w])_([^_\n]+)_(?![\w])")

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 60rem; padding: 0 1rem; color: #1b1f24; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { margin-top: 1.8rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; }
th { background: #f6f8fa; }
em { color: #9a6700; }
"""


def _inline(text: str) -> str:
    return _EMPHASIS.sub(r"<em>\1</em>", html.escape(text, quote=True))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_page(markdown: str, *, title: str) -> str:
    """A complete HTML document rendering ``markdown`` (the card's subset of Markdown)."""
    body: list[str] = []
    paragraph: list[str] = []
    in_list = False
    table: list[list[str]] = []

    def flush() -> None:
        nonlocal in_list, table
        if paragraph:
            body.append("<p>" + " ".join(_inline(p) for p in paragraph) + "</p>")
            paragraph.clear()
        if in_list:
            body.append("</ul>")
            in_list = False
        if table:
            head, *rows = table
            heads = "".join(f"<th>{_inline(c)}</th>" for c in head)
            body.append(f"<table><thead><tr>{heads}</tr></thead><tbody>")
            for row in rows:
                body.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
            body.append("</tbody></table>")
            table = []

    for raw in markdown.splitlines():
        line = raw.rstrip()
        if line.startswith("|"):
            if paragraph or in_list:
                flush()
            cells = _cells(line)
            if not all(set(c) <= {"-", ":"} and c for c in cells):  # skip the |---| rule
                table.append(cells)
            continue
        if table:
            flush()
        if line.startswith("## ") or line.startswith("# "):
            flush()
            level = 1 if line.startswith("# ") else 2
            body.append(f"<h{level}>{_inline(line[level + 1 :])}</h{level}>")
        elif line.startswith("- "):
            if paragraph:
                flush()
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{_inline(line[2:])}</li>")
        elif not line.strip():
            flush()
        else:
            if in_list:
                flush()
            paragraph.append(line)
    flush()
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
