"""The HTML gallery of a run, and the page pieces it shares with the report (``spotdiff.report``).

A card shows one pair side by side with its boxes drawn, the labels, captions and scores of each region, or the
rejection that stopped it. Where a card's images come from is the caller's choice (an ``ImageSource``): the
gallery links them relative to the page, the report inlines them, so both render the very same cards.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from spotdiff.protocol import Region, SampleRecord, SampleStatus

ImageSource = Callable[[str], str | None]
"""A storage key to the value of an ``<img src>``, or None when the image cannot be shown."""

TINY_NOTE = (
    "These samples come from the tiny profile: random-weight models. The images are noise and the labels and "
    "captions are random words. They show that every stage ran and how records look, not what real models make."
)

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
.note{background:#fff3cd;border:1px solid #e0c36a;padding:10px 14px;border-radius:6px;max-width:900px}
.funnel td,.funnel th{padding:2px 10px;text-align:left}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px;margin:14px 0;max-width:1100px}
.card.rejected{border-color:#e4a1a1}
.pair{display:flex;gap:12px}
.frame{position:relative;width:384px;max-width:45vw}
.frame img{width:100%;display:block;image-rendering:pixelated}
.box{position:absolute;border:2px solid #e00;box-sizing:border-box}
.box span{position:absolute;top:0;left:0;background:#e00;color:#fff;font-size:11px;padding:0 3px}
.meta{font-size:13px;color:#555}
.region{font-size:14px;margin:6px 0}
.reason{color:#a00;font-weight:600}
.numbers{font-size:13px;color:#555;margin:4px 0;padding-left:18px}
"""


def relative_link(key: str) -> str:
    """The gallery's image source: the storage key itself, relative to a page at the store's root."""
    return key


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def region_scores(region: Region) -> str:
    """The numbers that kept a region, as one line for a ``title`` (shown on hover)."""
    return (
        f"crop cos {_score(region.crop_cosine)} · text match {_score(region.text_match)} · "
        f"label cos {_score(region.label_cosine)}"
    )


def _frame(image_key: str | None, record: SampleRecord, image_src: ImageSource) -> str:
    if image_key is None or not record.width or not record.height:
        return '<div class="frame">(no image)</div>'
    src = image_src(image_key)
    if src is None:
        return f'<div class="frame">(image missing: {html.escape(image_key)})</div>'
    boxes = []
    for number, region in enumerate(record.regions, 1):
        box = region.box
        style = (
            f"left:{100 * box.x1 / record.width:.2f}%;top:{100 * box.y1 / record.height:.2f}%;"
            f"width:{100 * box.width / record.width:.2f}%;height:{100 * box.height / record.height:.2f}%"
        )
        title = html.escape(region_scores(region))
        boxes.append(f'<div class="box" style="{style}" title="{title}"><span>{number}</span></div>')
    return f'<div class="frame"><img src="{html.escape(src)}" alt="">{"".join(boxes)}</div>'


def _number_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def render_card(record: SampleRecord, image_src: ImageSource) -> str:
    """One pair: both images with the boxes over them, each region's labels and caption, or its rejection."""
    rejected = record.status is SampleStatus.REJECTED
    parts = [
        f'<div class="card{" rejected" if rejected else ""}" id="{html.escape(record.pair_id)}">',
        f"<b>{html.escape(record.pair_id)}</b> · {html.escape(record.source)} → {html.escape(record.target)}",
        f'<div class="meta">objects: {html.escape(", ".join(record.source_objects) or "-")} → '
        f"{html.escape(', '.join(record.target_objects) or '-')} · seed {record.provenance.seed}"
        + (f" · pair cos {record.pair_cosine:.4f}" if record.pair_cosine is not None else "")
        + "</div>",
        '<div class="pair">',
        _frame(record.image_source, record, image_src),
        _frame(record.image_target, record, image_src),
        "</div>",
    ]
    if record.rejection is not None:
        rejection = record.rejection
        parts.append(
            f'<p class="reason">rejected at {html.escape(rejection.stage.value)}: {html.escape(rejection.reason)}</p>'
            f'<p class="meta">{html.escape(rejection.message)}</p>'
        )
        if rejection.numbers:
            items = "".join(
                f"<li><code>{html.escape(name)}</code> = {html.escape(_number_text(value))}</li>"
                for name, value in rejection.numbers.items()
            )
            parts.append(f'<ul class="numbers">{items}</ul>')
    for number, region in enumerate(record.regions, 1):
        parts.append(
            f'<div class="region" title="{html.escape(region_scores(region))}"><b>{number}</b> '
            f"{html.escape(region.box_normalised)} · "
            f"left: <i>{html.escape(region.label_source or '')}</i> · right: "
            f"<i>{html.escape(region.label_target or '')}</i><br>"
            f"difference: {html.escape(region.difference_caption or '')}</div>"
        )
    parts.append("</div>")
    return "\n".join(parts)


def render_cards(records: Sequence[SampleRecord], image_src: ImageSource) -> str:
    """Every card, accepted pairs first, each group by pair id, so two renders of one run read the same."""
    ordered = sorted(records, key=lambda record: (record.status is not SampleStatus.ACCEPTED, record.pair_id))
    return "\n".join(render_card(record, image_src) for record in ordered)


def render_summary(records: Sequence[SampleRecord]) -> str:
    """The counts line, after the tiny-profile note when the records came from random-weight models."""
    accepted = sum(record.status is SampleStatus.ACCEPTED for record in records)
    tiny = any(record.provenance.profile == "tiny" for record in records)
    return "\n".join(
        [
            f'<p class="note">{html.escape(TINY_NOTE)}</p>' if tiny else "",
            f'<p class="counts">{len(records)} pairs · {accepted} accepted · {len(records) - accepted} rejected</p>',
        ]
    )


def render_page(title: str, body: Sequence[str], *, style: str = "") -> str:
    """The page around the parts: one document, its style inline, nothing fetched."""
    return "\n".join(
        [
            "<!doctype html>",
            f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
            f"<style>{STYLE}{style}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            *body,
            "</body></html>",
        ]
    )


def render_gallery(records: Sequence[SampleRecord], *, title: str = "spotdiff gallery") -> str:
    """The gallery page; image paths are storage keys, relative to the page."""
    funnel = Counter(
        f"{record.rejection.stage.value}: {record.rejection.reason}" for record in records if record.rejection
    )
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(funnel.items()))
    return render_page(
        title,
        [
            render_summary(records),
            f'<table class="funnel"><tr><th>rejected at</th><th>pairs</th></tr>{rows}</table>' if rows else "",
            render_cards(records, relative_link),
        ],
    )
