"""A dataset's report: one HTML file that opens anywhere, with nothing beside it.

It shows how many pairs came through, the outcome of each pair as an inline SVG bar chart (the funnel), how
many pairs reached each stage and how many that stage rejected, and every pair as a gallery card. Images are
embedded as ``data:`` URIs, so the file can be mailed or attached to an issue and still show everything.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import NamedTuple

from PIL import Image

from spotdiff.gallery import render_cards, render_page, render_summary
from spotdiff.protocol import SampleRecord, Stage
from spotdiff.storage import ArtifactStore

ACCEPTED = "accepted"
MAX_SIDE = 768
"""Images larger than this (pixels, either side) are shrunk for the report: cards show them 384 px wide, and a
run of 1024² PNGs would otherwise make a file of hundreds of megabytes. The dataset keeps the full images."""

_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}
_STAGES = list(Stage)

REPORT_STYLE = """
h2{margin-top:28px}
.chart text{font-size:12px;fill:#222}
.chart text.key{font-family:ui-monospace,monospace}
.stages{border-collapse:collapse}
.stages td,.stages th{padding:3px 12px;border-bottom:1px solid #e5e5e5}
.stages td.n{text-align:right;font-variant-numeric:tabular-nums}
"""


def funnel(records: Sequence[SampleRecord]) -> list[tuple[str, int]]:
    """Pairs per outcome, in pipeline order: the rejections stage by stage (the larger reason first within a
    stage), then the accepted pairs, which passed every stage."""
    counts = Counter(record.outcome for record in records)
    stage_of = {record.outcome: record.rejection.stage for record in records if record.rejection is not None}

    def order(item: tuple[str, int]) -> tuple[int, int, str]:
        key, count = item
        stage = _STAGES.index(stage_of[key]) if key in stage_of else len(_STAGES)
        return stage, -count, key

    return sorted(counts.items(), key=order)


class StageRow(NamedTuple):
    """One stage of the table: the pairs that got to it and the pairs it stopped."""

    stage: Stage
    reached: int
    rejected: int

    @property
    def passed(self) -> int:
        return self.reached - self.rejected


def stage_table(records: Sequence[SampleRecord]) -> list[StageRow]:
    """Which filter eats the pairs: a pair rejected at a stage reached every stage up to it; accepted pairs
    reached them all."""
    stopped = Counter(record.rejection.stage for record in records if record.rejection is not None)
    rows = []
    reached = len(records)
    for stage in _STAGES:
        rows.append(StageRow(stage, reached, stopped[stage]))
        reached -= stopped[stage]
    return rows


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def funnel_chart(counts: Sequence[tuple[str, int]]) -> str:
    """The funnel as an inline SVG horizontal bar chart: one bar per outcome, its count and share as text."""
    if not counts:
        return "<p>No pairs.</p>"
    total = sum(count for _, count in counts)
    largest = max(count for _, count in counts)
    row, bar_max = 26, 360
    label_width = min(max(len(key) for key, _ in counts) * 7 + 16, 360)  # 12 px monospace: about 7 px a character
    width, height = label_width + bar_max + 110, row * len(counts) + 4
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="outcome of each pair">'
    ]
    for index, (key, count) in enumerate(counts):
        y = index * row + 2
        bar = max(round(bar_max * count / largest), 1)
        text = f"{count} ({_percent(count, total)})"
        colour = "#3a9d5d" if key == ACCEPTED else "#d0605e"
        parts.append(
            f'<text class="key" x="{label_width - 8}" y="{y + 17}" text-anchor="end">{html.escape(key)}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{bar}" height="{row - 8}" fill="{colour}">'
            f"<title>{html.escape(key)}: {text}</title></rect>"
            f'<text x="{label_width + bar + 6}" y="{y + 17}">{text}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def stage_table_html(rows: Sequence[StageRow]) -> str:
    """The stage table as HTML: reached, rejected (and its share of those that reached the stage), passed."""
    head = "<tr><th>stage</th><th>reached</th><th>rejected</th><th>of reached</th><th>passed</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(row.stage.value)}</td><td class='n'>{row.reached}</td>"
        f"<td class='n'>{row.rejected}</td><td class='n'>{_percent(row.rejected, row.reached)}</td>"
        f"<td class='n'>{row.passed}</td></tr>"
        for row in rows
    )
    return f'<table class="stages">{head}{body}</table>'


def data_uri(data: bytes, max_side: int = MAX_SIDE) -> str | None:
    """The image as a ``data:image/png;base64,`` URI, shrunk to ``max_side``; None if it is no image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG" or max(image.size) > max_side:
                shown = image if image.mode in _PNG_MODES else image.convert("RGB")
                shown.thumbnail((max_side, max_side))
                buffer = io.BytesIO()
                shown.save(buffer, format="PNG")
                data = buffer.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def store_image_bytes(store: ArtifactStore) -> Callable[[str], bytes | None]:
    """A record's image keys read from its store; None for a missing file or a key that leaves the store."""

    def read(key: str) -> bytes | None:
        if ".." in PurePosixPath(key).parts or not store.exists(key):
            return None
        return store.get_bytes(key)

    return read


def render_report(
    records: Sequence[SampleRecord], image_bytes: Callable[[str], bytes | None], title: str = "spotdiff report"
) -> str:
    """The report page; ``image_bytes`` gives an image's bytes by storage key, and each is inlined."""

    inlined: dict[str, str | None] = {}  # content-addressed keys repeat: read and encode each once

    def inline(key: str) -> str | None:
        if key not in inlined:
            data = image_bytes(key)
            inlined[key] = None if data is None else data_uri(data)
        return inlined[key]

    return render_page(
        title,
        [
            render_summary(records),
            "<h2>Outcomes</h2>",
            funnel_chart(funnel(records)),
            "<h2>Which stage rejects the pairs</h2>",
            stage_table_html(stage_table(records)),
            "<h2>Pairs</h2>",
            render_cards(records, inline),
        ],
        style=REPORT_STYLE,
    )
