"""Reading report.html back in tests: which files it embeds, and the links it makes (stdlib html.parser)."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote


class _ReportParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict] = []  # {"src": ..., "alt": ..., "href": ...} per <figure>
        self.links: list[str] = []
        self.texts: list[str] = []
        self._figure: dict | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "figure":
            self._figure = {}
        elif tag == "img" and self._figure is not None:
            self._figure.update(src=attributes.get("src"), alt=attributes.get("alt"))
        elif tag == "a":
            self.links.append(attributes.get("href"))
            if self._figure is not None:
                self._figure["href"] = attributes.get("href")

    def handle_endtag(self, tag):
        if tag == "figure" and self._figure is not None:
            self.figures.append(self._figure)
            self._figure = None

    def handle_data(self, data):
        self.texts.append(data)


def parse_report(path: Path) -> _ReportParser:
    parser = _ReportParser()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    return parser


def embedded_files(path: Path) -> dict[str, bytes]:
    """File name (the figure's link, URL-decoded) -> the bytes embedded in its data: URI."""
    embedded = {}
    for figure in parse_report(path).figures:
        source = figure.get("src") or ""
        assert source.startswith("data:image/"), f"figure {figure} does not embed its image"
        embedded[unquote(figure["href"])] = base64.b64decode(source.split(",", 1)[1])
    return embedded


def page_text(path: Path) -> str:
    """The report's text as a reader sees it (entities decoded)."""
    return "".join(parse_report(path).texts)
