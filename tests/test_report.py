"""The report: funnel and stage table from records, one self-contained page, and ``spotdiff report``."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from spotdiff.cli import main
from spotdiff.exports import read_records
from spotdiff.gallery import TINY_NOTE, render_gallery
from spotdiff.protocol import Box, CaptionPair, Provenance, Region, Rejection, SampleRecord, SampleStatus, Stage
from spotdiff.report import (
    data_uri,
    funnel,
    render_report,
    stage_table,
    store_image_bytes,
)
from spotdiff.runner import start_folder
from spotdiff.storage import ArtifactStore

DATA_PNG = "data:image/png;base64,"
CAPTION = "the dog <script>alert(1)</script> became a cat"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, of a page."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def assert_self_contained(page: str) -> Tags:
    """Every image inline as a PNG data URI; no script, stylesheet, link or URL that would fetch anything."""
    tags = Tags(page)
    images = tags.named("img")
    assert images
    for attrs in images:
        src = attrs["src"]
        assert src is not None and src.startswith(DATA_PNG), src[:80] if src else src
        Image.open(io.BytesIO(base64.b64decode(src.removeprefix(DATA_PNG)))).verify()
    # one script, the gallery's tools, inline: nothing is fetched
    assert len(tags.named("script")) == 1 and all("src" not in attrs for attrs in tags.named("script"))
    assert not tags.named("link") and not tags.named("iframe")
    for _, attrs in tags.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:", "#")), value
    assert "http://" not in page and "https://" not in page and "images/" not in page
    return tags


def png(colour: str, size: tuple[int, int] = (16, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def provenance() -> Provenance:
    return Provenance(seed=7, profile="tiny", spotdiff_version="0")


def accepted(pair_id: str, source: str | None, target: str | None, caption: str = CAPTION) -> SampleRecord:
    region = Region(
        box=Box(x1=2, y1=3, x2=10, y2=9),
        box_normalised="[0.12, 0.25, 0.62, 0.75]",
        source_image=1,
        crop_cosine=0.42,
        text_match=0.31,
        label_source="a brown dog",
        label_target="a grey cat",
        label_cosine=0.55,
        difference_caption=caption,
    )
    return SampleRecord(
        pair_id=pair_id,
        status=SampleStatus.ACCEPTED,
        source="A dog on the grass",
        target="A cat on the grass",
        source_objects=["dog"],
        target_objects=["cat"],
        image_source=source,
        image_target=target,
        width=16,
        height=12,
        pair_cosine=0.95,
        regions=[region],
        provenance=provenance(),
    )


def rejected(pair_id: str, stage: Stage, reason: str, numbers: dict, images: tuple[str, str] | None) -> SampleRecord:
    return SampleRecord(
        pair_id=pair_id,
        status=SampleStatus.REJECTED,
        source="A dog on the grass",
        target="A cat on the grass",
        source_objects=["dog"],
        target_objects=["cat"],
        image_source=images[0] if images else None,
        image_target=images[1] if images else None,
        width=16 if images else None,
        height=12 if images else None,
        rejection=Rejection(stage=stage, reason=reason, message=f"{reason} decided it", numbers=numbers),
        provenance=provenance(),
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run_dir(tmp_path)


def make_run_dir(tmp_path: Path) -> Path:
    """A run folder by hand: two images in the store (red, blue), seven records."""
    store = ArtifactStore(str(tmp_path / "run"))
    pair = (store.put_image(png("red")), store.put_image(png("blue")))
    records = [
        accepted("dog-cat", *pair),
        accepted("cup-mug", *pair, caption="a mug instead of a cup"),
        rejected(
            "too-alike", Stage.PAIR_FILTER, "pair_too_similar", {"pair_cosine": 0.99123, "min": 0.7, "max": 0.98}, pair
        ),
        rejected("alike-2", Stage.PAIR_FILTER, "pair_too_similar", {"pair_cosine": 0.985}, pair),
        rejected("far", Stage.PAIR_FILTER, "pair_too_different", {"pair_cosine": 0.5}, pair),
        rejected("words", Stage.OBJECTS, "no_changed_objects", {}, None),
        rejected("labels", Stage.REGION_LABELS, "labels_filtered", {"reasons": ["labels_alike"]}, pair),
    ]
    folder = start_folder(store, [CaptionPair(id=r.pair_id, source=r.source, target=r.target) for r in records])
    for record in records:
        folder.create_record(record)
    return tmp_path / "run"


def records_of(run_dir: Path) -> list[SampleRecord]:
    return read_records(run_dir)


def test_funnel_counts_each_outcome_in_pipeline_order(run_dir: Path) -> None:
    records = records_of(run_dir)
    assert funnel(records) == [
        ("objects:no_changed_objects", 1),
        ("pair_filter:pair_too_similar", 2),
        ("pair_filter:pair_too_different", 1),
        ("region_labels:labels_filtered", 1),
        ("accepted", 2),
    ]
    assert [record.outcome for record in records[:3]] == ["accepted", "accepted", "pair_filter:pair_too_similar"]
    assert funnel([]) == []


def test_stage_table_counts_who_reached_and_who_was_stopped(run_dir: Path) -> None:
    rows = stage_table(records_of(run_dir))
    assert [row.stage for row in rows] == list(Stage)
    assert [(row.reached, row.rejected, row.passed) for row in rows] == [
        (7, 0, 7),  # rewrite (pairs given as pairs: none was rewritten)
        (7, 1, 6),  # objects
        (6, 0, 6),  # generate
        (6, 3, 3),  # pair_filter
        (3, 0, 3),  # proposals
        (3, 0, 3),  # difference_areas
        (3, 1, 2),  # region_labels
        (2, 0, 2),  # difference_caption
    ]
    assert all(row.reached == 0 for row in stage_table([]))


def test_report_is_one_self_contained_page(run_dir: Path) -> None:
    records = records_of(run_dir)
    page = render_report(records, store_image_bytes(ArtifactStore(str(run_dir))), title="a <b> title")
    tags = assert_self_contained(page)
    assert len(tags.named("img")) == 2 * 6  # every record with images, both sides
    assert "a &lt;b&gt; title" in page and "<b> title" not in page
    text = " ".join(tags.text)
    assert "7 pairs · 2 accepted · 5 rejected" in text and TINY_NOTE in text

    assert len(tags.named("svg")) == 1
    assert len(tags.named("rect")) == len(funnel(records)) == 5
    for key, count in funnel(records):
        assert key in text and f"{count} ({100 * count / 7:.1f}%)" in text


def test_cards_show_labels_captions_scores_and_rejections(run_dir: Path) -> None:
    page = render_report(records_of(run_dir), store_image_bytes(ArtifactStore(str(run_dir))))
    tags = Tags(page)
    text = " ".join(tags.text)
    assert "a brown dog" in text and "a grey cat" in text and "a mug instead of a cup" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and page.count("<script>") == 1 and CAPTION in text
    titles = [attrs["title"] for attrs in tags.named("div") if attrs.get("class") in ("box", "region")]
    assert titles and all(title == "crop cos 0.420 · text match 0.310 · label cos 0.550" for title in titles)
    for reason in ("pair_too_similar", "pair_too_different", "no_changed_objects", "labels_filtered"):
        assert f"{reason} decided it" in text
    assert "rejected at pair_filter: pair_too_similar" in text and "0.9912" in text
    assert "pair too similar: pair_cosine 0.9912 against min 0.7, max 0.98" in text  # the rule and its thresholds
    assert '["labels_alike"]' in text
    boxes = [attrs["style"] for attrs in tags.named("div") if attrs.get("class") == "box"]
    assert boxes[0] == "left:12.50%;top:25.00%;width:50.00%;height:50.00%"


def test_a_missing_image_is_named_not_linked(run_dir: Path) -> None:
    page = render_report(records_of(run_dir)[:1], lambda key: None)
    assert not Tags(page).named("img") and "(image missing: images/" in page


def test_images_are_shrunk_and_reencoded_as_png() -> None:
    big = png("green", (2000, 100))
    for data in (big, _jpeg(big)):
        uri = data_uri(data)
        assert uri is not None and uri.startswith(DATA_PNG)
        with Image.open(io.BytesIO(base64.b64decode(uri.removeprefix(DATA_PNG)))) as image:
            assert image.format == "PNG" and image.size == (768, 38)
    small = png("red")
    assert data_uri(small) == DATA_PNG + base64.b64encode(small).decode()
    assert data_uri(b"not an image") is None


def _jpeg(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_store_image_bytes_stays_inside_the_store(run_dir: Path) -> None:
    read = store_image_bytes(ArtifactStore(str(run_dir / "images")))
    (run_dir / "secret.png").write_bytes(png("red"))
    assert read("../secret.png") is None and read("absent.png") is None


def test_gallery_shares_the_cards_and_links_relative_paths(run_dir: Path) -> None:
    records = records_of(run_dir)
    gallery, report = Tags(render_gallery(records)), Tags(render_report(records, lambda key: png("red")))
    assert all(attrs["src"] and attrs["src"].startswith("images/") for attrs in gallery.named("img"))
    assert len(gallery.named("img")) == len(report.named("img"))
    assert [attrs for attrs in gallery.named("div") if attrs.get("class") in ("box", "region")] == [
        attrs for attrs in report.named("div") if attrs.get("class") in ("box", "region")
    ]


def test_cli_writes_the_report(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir)]) == 0
    assert_self_contained((run_dir / "report.html").read_text(encoding="utf-8"))
    assert capsys.readouterr().out.strip() == str(run_dir / "report.html")
    elsewhere = tmp_path / "a" / "b.html"
    assert main(["report", str(run_dir), "--out", str(elsewhere), "--title", "mine"]) == 0
    assert "<title>mine</title>" in elsewhere.read_text(encoding="utf-8")


def test_cli_refuses_a_directory_that_is_no_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "manifest.json not found" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()
