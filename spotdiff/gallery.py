"""A self-contained HTML gallery of a run: each pair side by side, boxes drawn, labels, captions, rejections."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence

from spotdiff.protocol import SampleRecord, SampleStatus

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
"""


def _frame(image_key: str | None, record: SampleRecord) -> str:
    if image_key is None or not record.width or not record.height:
        return '<div class="frame">(no image)</div>'
    boxes = []
    for number, region in enumerate(record.regions, 1):
        box = region.box
        style = (
            f"left:{100 * box.x1 / record.width:.2f}%;top:{100 * box.y1 / record.height:.2f}%;"
            f"width:{100 * box.width / record.width:.2f}%;height:{100 * box.height / record.height:.2f}%"
        )
        title = html.escape(f"crop cos {region.crop_cosine:.3f} · text match {region.text_match:.3f}")
        boxes.append(f'<div class="box" style="{style}" title="{title}"><span>{number}</span></div>')
    return f'<div class="frame"><img src="{html.escape(image_key)}" alt="">{"".join(boxes)}</div>'


def _card(record: SampleRecord) -> str:
    rejected = record.status is SampleStatus.REJECTED
    parts = [
        f'<div class="card{" rejected" if rejected else ""}" id="{html.escape(record.pair_id)}">',
        f"<b>{html.escape(record.pair_id)}</b> · {html.escape(record.source)} → {html.escape(record.target)}",
        f'<div class="meta">objects: {html.escape(", ".join(record.source_objects) or "-")} → '
        f"{html.escape(', '.join(record.target_objects) or '-')} · seed {record.provenance.seed}"
        + (f" · pair cos {record.pair_cosine:.4f}" if record.pair_cosine is not None else "")
        + "</div>",
        '<div class="pair">',
        _frame(record.image_source, record),
        _frame(record.image_target, record),
        "</div>",
    ]
    if record.rejection is not None:
        rejection = record.rejection
        parts.append(
            f'<p class="reason">rejected at {rejection.stage.value}: {html.escape(rejection.reason)}</p>'
            f'<p class="meta">{html.escape(rejection.message)} {html.escape(str(rejection.numbers))}</p>'
        )
    for number, region in enumerate(record.regions, 1):
        parts.append(
            f'<div class="region"><b>{number}</b> {html.escape(region.box_normalised)} · '
            f"left: <i>{html.escape(region.label_source or '')}</i> · right: "
            f"<i>{html.escape(region.label_target or '')}</i><br>"
            f"difference: {html.escape(region.difference_caption or '')}</div>"
        )
    parts.append("</div>")
    return "\n".join(parts)


def render_gallery(records: Sequence[SampleRecord], *, title: str = "spotdiff gallery") -> str:
    """The gallery page; image paths are storage keys, relative to the page."""
    accepted = sum(record.status is SampleStatus.ACCEPTED for record in records)
    funnel = Counter(
        f"{record.rejection.stage.value}: {record.rejection.reason}" for record in records if record.rejection
    )
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(funnel.items()))
    tiny = any(record.provenance.profile == "tiny" for record in records)
    ordered = sorted(records, key=lambda record: (record.status is not SampleStatus.ACCEPTED, record.pair_id))
    return "\n".join(
        [
            "<!doctype html>",
            f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
            f"<style>{STYLE}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">{TINY_NOTE}</p>' if tiny else "",
            f"<p>{len(records)} pairs · {accepted} accepted · {len(records) - accepted} rejected</p>",
            f'<table class="funnel"><tr><th>rejected at</th><th>pairs</th></tr>{rows}</table>' if rows else "",
            *(_card(record) for record in ordered),
            "</body></html>",
        ]
    )
