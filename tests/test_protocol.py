import pytest
from pydantic import ValidationError

from spotdiff.protocol import CaptionPair, Provenance, Rejection, SampleRecord, SampleStatus, Stage


def test_caption_pair_validates() -> None:
    pair = CaptionPair(id="p1", source=" A dog on the grass ", target="A cat on the grass", seed=3)
    assert pair.source == "A dog on the grass"
    for bad in (
        {"id": "p", "source": "", "target": "A cat"},
        {"id": "p", "source": "A cat", "target": "a CAT"},
        {"id": "bad id!", "source": "A dog", "target": "A cat"},
        {"id": "p", "source": "A dog", "target": "A cat", "seed": -1},
        {"id": "p", "source": "A dog", "target": "A cat", "colour": "red"},
        {"id": "p", "source": "A dog", "target": "A cat", "source_objects": [" "]},
    ):
        with pytest.raises(ValidationError):
            CaptionPair.model_validate(bad)


def test_sample_status_and_rejection_agree() -> None:
    provenance = Provenance(seed=1, profile="tiny", spotdiff_version="0")
    common = {
        "pair_id": "p",
        "source": "a",
        "target": "b",
        "source_objects": [],
        "target_objects": [],
        "provenance": provenance,
    }
    rejection = Rejection(stage=Stage.PAIR_FILTER, reason="pair_too_similar", message="m")
    SampleRecord(status=SampleStatus.REJECTED, rejection=rejection, **common)
    with pytest.raises(ValidationError):
        SampleRecord(status=SampleStatus.REJECTED, **common)
    with pytest.raises(ValidationError):
        SampleRecord(status=SampleStatus.ACCEPTED, **common)  # accepted without regions


def test_the_documented_job_examples_are_valid_requests() -> None:
    from spotdiff.protocol.jobs import JobRequest

    examples = JobRequest.model_json_schema()["examples"]
    assert len(examples) >= 2
    for example in examples:
        JobRequest.model_validate(example)
