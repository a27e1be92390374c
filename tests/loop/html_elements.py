"""Reading back the HTML report in tests: its elements, tables and embedded JSON."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser


class Page(HTMLParser):
    """Every element of a page with its attributes, the text of each table cell by table
    id, and the text of each element with an id."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], str | None]] = []
        self._svg: str | None = None
        self.tables: dict[str, list[list[str]]] = {}
        self.text_of: dict[str, str] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._open: list[tuple[str, str | None]] = []
        self.feed(text)
        self.json = json.loads(re.search(r'id="report-json">(.*?)</script>', text, re.S)[1])

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        self.elements.append((tag, a, self._svg))
        if tag == "svg":
            self._svg = a.get("id")
        if tag in ("meta", "br", "link", "img"):
            return
        self._open.append((tag, a.get("id")))
        if a.get("id"):
            self.text_of.setdefault(a["id"], "")
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = None
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        while self._open:
            t, _ = self._open.pop()
            if t == tag:
                break

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        for _, i in self._open:
            if i:
                self.text_of[i] += data

    def find(self, tag: str, cls: str | None = None, within: str | None = None, **attrs):
        """Elements of ``tag`` (with class ``cls`` and the given attributes), optionally
        only those inside the ``<svg>`` with id ``within``."""
        out = []
        for t, a, svg in self.elements:
            if within is not None and svg != within:
                continue
            if t != tag or (cls is not None and cls not in a.get("class", "").split()):
                continue
            if all(a.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                out.append(a)
        return out

    def ids(self) -> set[str]:
        return {a["id"] for _, a, _ in self.elements if a.get("id")}

    def rows(self, table_id: str) -> list[list[str]]:
        """Body rows of a table (the header row left out)."""
        return self.tables[table_id][1:]
