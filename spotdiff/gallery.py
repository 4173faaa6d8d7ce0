"""The HTML gallery of a run, and the page pieces it shares with the report (``spotdiff.report``).

A card shows one pair side by side with its boxes drawn, the labels, captions and scores of each region, or the
rejection that stopped it with the rule and thresholds that decided it. Where a card's images come from is the
caller's choice (an ``ImageSource``): the gallery links them relative to the page, the report inlines them, so
both render the very same cards, with tools to work through them: filters by outcome and reason, a search, a
large view of one pair, keys to move; a script inline in the page, nothing fetched.
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
.rule{font-size:13px;margin:4px 0}
.tools{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin:12px 0;font-size:14px}
.card{cursor:zoom-in}
.card:focus{outline:3px solid #36c;outline-offset:2px}
#zoom{width:96vw;max-width:96vw;max-height:94vh;border:none;border-radius:8px;padding:16px}
#zoom::backdrop{background:rgba(0,0,0,.6)}
#zoom .card{cursor:default;border:none;max-width:none;margin:0}
#zoom .frame{width:46vw;max-width:46vw}
#zoom .box span{font-size:14px}
.hint{font-size:12px;color:#666}
"""

SCRIPT = r"""
(() => {
  const cards = [...document.querySelectorAll("#cards > .card")];
  const outcome = document.getElementById("filter-outcome");
  const reason = document.getElementById("filter-reason");
  const search = document.getElementById("filter-search");
  const shown = document.getElementById("shown");
  const zoom = document.getElementById("zoom");
  if (!outcome || !zoom) return;
  let current = null;
  const visible = () => cards.filter((card) => !card.hidden);
  function apply() {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const card of cards) {
      card.hidden = !((!outcome.value || card.dataset.status === outcome.value)
        && (!reason.value || card.dataset.reason === reason.value)
        && words.every((word) => card.dataset.search.includes(word)));
    }
    shown.textContent = `${visible().length} of ${cards.length} shown`;
  }
  function open(card) {
    current = card;
    const large = card.cloneNode(true);
    large.removeAttribute("id");
    large.removeAttribute("tabindex");
    large.hidden = false;
    zoom.querySelector(".zoom-body").replaceChildren(large);
    if (!zoom.open) zoom.showModal();
  }
  function step(by) {
    const list = visible();
    if (!list.length) return;
    const at = list.indexOf(current);
    const next = list[((at < 0 ? 0 : at + by) + list.length) % list.length];
    if (zoom.open) open(next);
    else { current = next; next.focus(); }
  }
  for (const card of cards) {
    card.addEventListener("click", () => open(card));
    card.addEventListener("focus", () => { current = card; });
    card.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(card); }
    });
  }
  zoom.addEventListener("click", (event) => { if (event.target === zoom) zoom.close(); });
  zoom.addEventListener("close", () => { if (current) current.focus(); });
  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, select")) return;
    if (event.key === "ArrowRight" || event.key === "j") { event.preventDefault(); step(1); }
    else if (event.key === "ArrowLeft" || event.key === "k") { event.preventDefault(); step(-1); }
    else if (event.key === "/" && !zoom.open) { event.preventDefault(); search.focus(); }
  });
  outcome.addEventListener("change", apply);
  reason.addEventListener("change", apply);
  search.addEventListener("input", apply);
  apply();
})();
"""
THRESHOLD_NAMES = ("min", "max", "threshold")


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


def search_text(record: SampleRecord) -> str:
    """A record's words, lower case, for a search: id, captions, objects, labels and captions of its regions,
    its rejection (the gallery's search box and the samples route's ``q``)."""
    words = [record.pair_id, record.source, record.target, *record.source_objects, *record.target_objects]
    for region in record.regions:
        words += [region.label_source or "", region.label_target or "", region.difference_caption or ""]
    if record.rejection is not None:
        words += [record.rejection.reason, record.rejection.message]
    return " ".join(words).lower()


def _is_threshold(name: str) -> bool:
    return name in THRESHOLD_NAMES or name.endswith(tuple(f"_{word}" for word in THRESHOLD_NAMES))


def rule_line(reason: str, numbers: dict[str, Any]) -> str:
    """The rule that decided a rejection in words: its reason, the numbers measured, the thresholds they met."""
    measured = [f"{name} {_number_text(value)}" for name, value in numbers.items() if not _is_threshold(name)]
    limits = [f"{name} {_number_text(value)}" for name, value in numbers.items() if _is_threshold(name)]
    text = reason.replace("_", " ")
    if measured:
        text += ": " + ", ".join(measured)
    if limits:
        text += " against " + ", ".join(limits)
    return text


def render_card(record: SampleRecord, image_src: ImageSource) -> str:
    """One pair: both images with the boxes over them, each region's labels and caption, or its rejection."""
    rejected = record.status is SampleStatus.REJECTED
    attributes = (
        f'id="{html.escape(record.pair_id)}" data-status="{record.status.value}" '
        f'data-reason="{html.escape(record.outcome)}" data-search="{html.escape(search_text(record))}" '
        'tabindex="0"'
    )
    parts = [
        f'<div class="card{" rejected" if rejected else ""}" {attributes}>',
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
            rule = html.escape(rule_line(rejection.reason, rejection.numbers))
            parts.append(f'<p class="rule" data-testid="rule">{rule}</p>')
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
    cards = "\n".join(render_card(record, image_src) for record in ordered)
    return f'{render_tools(records)}\n<div id="cards">\n{cards}\n</div>'


def render_tools(records: Sequence[SampleRecord]) -> str:
    """The filters over the cards (outcome, reason, each with its count; words) and the large view."""
    statuses = Counter(record.status.value for record in records)
    reasons = Counter(record.outcome for record in records)
    outcomes = "".join(f'<option value="{key}">{key} ({count})</option>' for key, count in sorted(statuses.items()))
    why = "".join(
        f'<option value="{html.escape(key)}">{html.escape(key)} ({count})</option>'
        for key, count in sorted(reasons.items())
    )
    return "".join(
        [
            '<div class="tools" role="search">',
            f'<label>outcome <select id="filter-outcome"><option value="">all</option>{outcomes}</select></label>',
            f'<label>reason <select id="filter-reason"><option value="">all</option>{why}</select></label>',
            '<label>search <input id="filter-search" type="search" placeholder="pair id or word"></label>',
            '<span id="shown"></span>',
            '<span class="hint">click or Enter: large view · ← → or j k: move · /: search · Esc: close</span>',
            "</div>",
            '<dialog id="zoom" aria-label="the pair, large"><div class="zoom-body"></div>',
            '<form method="dialog"><button>Close</button></form></dialog>',
        ]
    )


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
            f"<script>{SCRIPT}</script>",
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
