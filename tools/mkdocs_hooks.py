"""MkDocs hook: render the reStructuredText habits of cowpath's docstrings.

The docstrings are written for ``help()`` and Sphinx-style readers;
mkdocstrings renders them as Markdown, which leaves two things raw. This
hook, run on the rendered HTML, fixes both:

- roles (``:func:`shutil.copy2```) lose the role and link the name:
  cowpath's own names to their entry on the API page, the standard
  library's to docs.python.org. No intersphinx inventory is fetched, so the
  strict build works offline;
- definition lists (a term line, then its description indented by four
  spaces, as in "Keyword-only extras") become ``<dl>`` lists instead of one
  run-on paragraph.
"""

from __future__ import annotations

import re
from typing import Any

import cowpath

__all__ = ["on_page_content"]

_PYTHON_DOCS = "https://docs.python.org/3/library/"
# Built-in exceptions live on one page; modules each have their own.
_BUILTIN_EXCEPTIONS = frozenset({"OSError", "FileExistsError", "FileNotFoundError", "ValueError"})
# Unqualified names in the docstrings are cowpath's own (``:func:`copy2```).
_PUBLIC = frozenset(cowpath.__all__)
_ROLE = re.compile(r":(func|class|meth|mod|attr|exc|data|obj):<code>(~?)([\w.]+)</code>")


def _is_api(page_url: str) -> bool:
    return page_url.rstrip("/").endswith("api")


def _target(role: str, name: str, page_url: str) -> str | None:
    if role == "meth" and "." not in name:
        return None  # a method of the class being documented: not worth guessing which
    if name in _PUBLIC:
        name = f"cowpath.{name}"
    if name == "cowpath" or name.startswith("cowpath."):
        # mkdocstrings gives each object's heading its dotted path as id.
        api = "" if _is_api(page_url) else "../api/"
        return f"{api}#{name}"
    if name in _BUILTIN_EXCEPTIONS:
        return f"{_PYTHON_DOCS}exceptions.html#{name}"
    module = name.split(".", 1)[0]
    if module in {"shutil", "pathlib", "os"}:
        return f"{_PYTHON_DOCS}{module}.html#{name}"
    return None


def _link(match: re.Match[str], page_url: str) -> str:
    role, short, name = match.group(1), match.group(2), match.group(3)
    shown = name.rsplit(".", 1)[-1] if short else name
    target = _target(role, name, page_url)
    if target is None:
        return f"<code>{shown}</code>"
    return f'<a href="{target}"><code>{shown}</code></a>'


_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.DOTALL)
_INDENT = "    "


def _definition_list(match: re.Match[str]) -> str:
    lines = match.group(1).split("\n")
    # A term: an unindented line followed by at least one indented line.
    if len(lines) < 2 or lines[0].startswith(_INDENT) or not lines[1].startswith(_INDENT):
        return match.group(0)
    items: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith(_INDENT):
            items[-1][1].append(line.strip())
        else:
            items.append((line.strip(), []))
    if any(not description for _, description in items):
        return match.group(0)
    body = "".join(f"<dt>{term}</dt><dd>{' '.join(text)}</dd>" for term, text in items)
    return f"<dl>{body}</dl>"


def on_page_content(html: str, page: Any, **_: Any) -> str:
    """Link ``:role:<code>name</code>`` spans and turn indented definitions into lists."""
    url = str(page.url)
    html = _ROLE.sub(lambda match: _link(match, url), html)
    if not _is_api(url):
        return html  # the other pages are Markdown written for Markdown
    return _PARAGRAPH.sub(_definition_list, html)
