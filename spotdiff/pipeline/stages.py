"""The stages of one caption pair (DESIGN.md), over the four service clients.

Services compute scores; `spotdiff.imgdiff` decides; this module only composes the two and records what
happened. The embedded run and the distributed workers run this same code: the embedded run takes a pair
through every step in one process (`PairPipeline.run`), a worker takes it through one step per task
(`PairPipeline.step`) and keeps the pair's `PairRun` in the artifact store between steps. The order of the
steps is `spotdiff.pipeline.graph`'s.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

from spotdiff.clients import ServiceCallError, ServiceClients
from spotdiff.imgdiff.areas import (
    AreaScore,
    CropPair,
    CropText,
    area_scores_needed,
    candidates,
    decide_areas,
    pair_window,
    proposals_decision,
    text_match_crops,
)
from spotdiff.imgdiff.boxes import normalised_box
from spotdiff.imgdiff.labels import (
    LabelPair,
    LabelScore,
    decide_labels,
    label_crop_box,
    label_scores_needed,
    select_label_boxes,
)
from spotdiff.imgdiff.objects import changed_objects, objects_decision
from spotdiff.imgdiff.prior import prior_boxes
from spotdiff.imgdiff.prompts import cross_replace_words, difference_caption_prompt, region_label_prompt
from spotdiff.imgdiff.render import png_bytes, red_boxed, side_by_side
from spotdiff.pipeline.graph import FIRST_STEP, next_step
from spotdiff.pipeline.record import pair_record, service_models
from spotdiff.pipeline.state import Area, PairRun, Pictures
from spotdiff.protocol import CaptionPair, ModelRef, Region, Rejection, SampleRecord, Stage
from spotdiff.protocol.captioning import CaptionRequest
from spotdiff.protocol.generation import PairRequest
from spotdiff.protocol.regions import Prompt, PromptedRequest
from spotdiff.protocol.similarity import CosineRequest, Operand, ScorePair
from spotdiff.settings import Settings
from spotdiff.storage import ArtifactStore

K = TypeVar("K", bound=Hashable)


class Rejected(Exception):
    """A stage decided against the pair."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


class PairFailed(Exception):
    """The pair could not finish (a service stayed unavailable, or a bug): not a decision about the pair.

    ``record`` is what is known so far, with the failure as its rejection; a caller may retry the pair later or
    write the record so that the failure is seen.
    """

    def __init__(self, record: SampleRecord, cause: Exception) -> None:
        assert record.rejection is not None
        super().__init__(f"{record.pair_id}: {record.rejection.stage.value}: {cause}")
        self.record = record
        self.cause = cause


def _reject(stage: Stage, reason: str, message: str, numbers: dict[str, Any] | None = None) -> Rejected:
    return Rejected(Rejection(stage=stage, reason=reason, message=message, numbers=numbers or {}))


class PairPipeline:
    """Runs caption pairs through every stage and returns one `SampleRecord` per pair."""

    def __init__(
        self, clients: ServiceClients, store: ArtifactStore, settings: Settings, models: dict[str, ModelRef]
    ) -> None:
        self.clients = clients
        self.store = store
        self.settings = settings
        self.config = settings.pipeline
        self.models = models

    @classmethod
    async def connect(cls, clients: ServiceClients, store: ArtifactStore, settings: Settings) -> PairPipeline:
        """A pipeline whose records name the models the services report (`/v1/info`)."""
        return cls(clients, store, settings, await service_models(clients))

    async def pictures(self, run: PairRun) -> Pictures:
        """The pair's images: those the generate step decoded, or (in a later task) read back from the store."""
        if run._pictures is None:
            assert run.image_keys is not None, "no images before the generate step"  # pragma: no mutate (a message)
            source, target = await asyncio.gather(
                *(asyncio.to_thread(self.store.get_bytes, key) for key in run.image_keys)
            )
            run._pictures = await asyncio.to_thread(Pictures.from_png, source, target)
        return run._pictures

    async def cosine(self, run: PairRun, pairs: list[ScorePair]) -> list[float]:
        """Scores of ``pairs`` on this pair's two images, in requests of bounded size sent concurrently."""
        encoded = (await self.pictures(run)).encoded
        images = {"1": encoded[0], "2": encoded[1]}
        size = self.config.cosine_pairs_per_request
        chunks = [pairs[start : start + size] for start in range(0, len(pairs), size)]
        responses = await asyncio.gather(
            *(self.clients.similarity.cosine(CosineRequest(images=images, pairs=chunk)) for chunk in chunks)
        )
        scores = [score for response in responses for score in response.scores]
        if len(scores) != len(pairs):
            raise ValueError(f"the similarity service answered {len(scores)} scores for {len(pairs)} pairs")
        return scores

    async def scored(self, run: PairRun, keys: Sequence[K], operands: Callable[[K], ScorePair]) -> dict[K, float]:
        """Each key's score: the pair ``operands`` makes of it, scored on this pair's images. Decisions read
        scores by what they score, never by position."""
        scores = await self.cosine(run, [operands(key) for key in keys])
        return {key: scores[position] for position, key in enumerate(keys)}

    async def run(self, pair: CaptionPair) -> SampleRecord:
        """Every step in order; a rejection stops the pair with its reason. Transient failures raise `PairFailed`."""
        run = PairRun(pair=pair)
        step: Stage | None = FIRST_STEP
        while step is not None:
            record = await self.step(run, step)
            if record is not None:
                return record
            step = next_step(step)
        raise AssertionError("the last step always ends the pair")  # pragma: no mutate (unreachable)

    async def step(self, run: PairRun, step: Stage) -> SampleRecord | None:
        """One step of ``run``; the pair's record when the pair ends here (rejected, refused by a service, or
        through the last step), None when it goes on to `next_step`. Transient failures raise `PairFailed`."""
        try:
            if step is FIRST_STEP:
                with run.timed(Stage.OBJECTS):
                    self.find_objects(run)
            with run.timed(step):
                await self.stages[step](run)
        except Rejected as rejected:
            return self.record(run, rejected.rejection)
        except ServiceCallError as exc:
            numbers = {"service": exc.service, "status": exc.status, "code": exc.code}
            if exc.transient:
                failure = Rejection(stage=run.stage, reason="service_unavailable", message=str(exc), numbers=numbers)
                raise PairFailed(self.record(run, failure), exc) from exc
            refusal = Rejection(stage=run.stage, reason="service_refused", message=str(exc), numbers=numbers)
            return self.record(run, refusal)
        except Exception as exc:
            failure = Rejection(stage=run.stage, reason="internal_error", message=f"{type(exc).__name__}: {exc}")
            raise PairFailed(self.record(run, failure), exc) from exc
        return self.record(run, None) if next_step(step) is None else None

    @property
    def stages(self) -> dict[Stage, Callable[[PairRun], Awaitable[None]]]:
        return {
            Stage.GENERATE: self.generate,
            Stage.PAIR_FILTER: self.filter_pair,
            Stage.PROPOSALS: self.propose,
            Stage.DIFFERENCE_AREAS: self.find_areas,
            Stage.REGION_LABELS: self.label_regions,
            Stage.DIFFERENCE_CAPTION: self.caption_differences,
        }

    # stage 0
    def find_objects(self, run: PairRun) -> None:
        pair = run.pair
        if pair.source_objects is not None or pair.target_objects is not None:
            run.source_objects, run.target_objects = pair.source_objects or [], pair.target_objects or []
        else:
            run.source_objects, run.target_objects = changed_objects(pair.source, pair.target)
        changed = objects_decision(run.source_objects, run.target_objects)
        if not changed:
            raise _reject(Stage.OBJECTS, changed.reason, "the captions differ in no object word", changed.numbers)

    # stage 1
    async def generate(self, run: PairRun) -> None:
        pair = run.pair
        response = await self.clients.generation.pair(
            PairRequest(
                source=pair.source,
                target=pair.target,
                seed=pair.seed,
                cross_replace_words=cross_replace_words(self.config.semantics) or None,
            )
        )
        run.seed, run.params = response.seed, response.params
        run.warnings = [f"generation: {warning}" for warning in response.warnings]
        raw = (base64.b64decode(response.source_image), base64.b64decode(response.target_image))
        run._pictures = await asyncio.to_thread(Pictures.from_png, *raw)
        run.size = run._pictures.size
        keys = await asyncio.gather(*(asyncio.to_thread(self.store.put_image, data) for data in raw))
        run.image_keys = (keys[0], keys[1])

    # stage 2
    async def filter_pair(self, run: PairRun) -> None:
        (run.pair_cosine,) = await self.cosine(run, [ScorePair(a=Operand(image="1"), b=Operand(image="2"))])
        decision = pair_window(
            run.pair_cosine, self.config.pair_cosine_min, self.config.pair_cosine_max, self.config.semantics
        )
        if not decision:
            raise _reject(
                Stage.PAIR_FILTER, decision.reason, "the image pair is outside the similarity window", decision.numbers
            )

    # stage 3
    async def propose(self, run: PairRun) -> None:
        pictures = await self.pictures(run)
        width, height = pictures.size
        mode = self.config.proposals
        if mode == "amg":
            found = await asyncio.gather(*(self.clients.regions.proposals(image) for image in pictures.encoded))
            boxes_1, boxes_2 = [p.box for p in found[0].proposals], [p.box for p in found[1].proposals]
        else:
            images = pictures.images
            priors = await asyncio.to_thread(
                prior_boxes, images[0], images[1], block=self.config.prior_block, max_boxes=self.config.prior_max_boxes
            )
            if not priors:
                raise _reject(Stage.PROPOSALS, "no_change_found", "the change map shows no region that changed")
            if mode == "prior":
                boxes_1, boxes_2 = [prior.box for prior in priors], []
            else:
                prompts = [Prompt(box=prior.box) for prior in priors]
                answers = await asyncio.gather(
                    *(
                        self.clients.regions.prompted(PromptedRequest(image=image, prompts=prompts))
                        for image in pictures.encoded
                    )
                )
                boxes_1, boxes_2 = ([region.box for region in answer.regions if region.box] for answer in answers)
        run.proposals = len(boxes_1) + len(boxes_2)
        proposals = candidates(boxes_1, boxes_2, width, height)
        decision = proposals_decision(proposals, self.config.semantics)
        if decision.reason == "zero_size_crop":
            raise _reject(Stage.DIFFERENCE_AREAS, decision.reason, "a proposal crops to no pixels", decision.numbers)
        if not decision:
            raise _reject(
                Stage.PROPOSALS, decision.reason, "no proposal with a pixel on either image", decision.numbers
            )
        run.candidates = proposals.found

    # stage 4
    async def find_areas(self, run: PairRun) -> None:
        proposals = run.candidates
        semantics = self.config.semantics

        def operands(key: AreaScore) -> ScorePair:
            box = proposals[key.candidate].box
            if isinstance(key, CropPair):
                return ScorePair(a=Operand(image="1", box=box), b=Operand(image="2", box=box))
            return ScorePair(a=Operand(image=str(key.image), box=box), b=Operand(text=key.word))

        needed = area_scores_needed(proposals, run.source_objects, run.target_objects, semantics)
        scores = await self.scored(run, needed, operands)
        selection = decide_areas(
            proposals,
            run.source_objects,
            run.target_objects,
            scores,
            text_min=self.config.text_match_min,
            crop_max=self.config.crop_cosine_max,
            nms_iou=self.config.nms_iou,
            max_boxes=self.config.max_boxes,
            semantics=semantics,
        )
        run.areas = []
        for index in selection.kept:
            decision = selection.decisions[index].decision
            source_side, target_side = text_match_crops(proposals[index], semantics)
            run.areas.append(
                Area(
                    proposals[index],
                    scores[CropPair(index)],
                    decision.numbers["text_match"],
                    {word: scores[CropText(index, source_side, word)] for word in run.source_objects},
                    {word: scores[CropText(index, target_side, word)] for word in run.target_objects},
                )
            )
        if not run.areas:
            reasons = Counter(decided.reason for decided in selection.decisions)
            raise _reject(
                Stage.DIFFERENCE_AREAS,
                "no_difference_area",
                "no proposal passed the area tests",
                {"candidates": len(proposals), "reasons": dict(reasons)},
            )

    # stage 5
    async def label_regions(self, run: PairRun) -> None:
        pictures = await self.pictures(run)
        width, height = pictures.size
        semantics = self.config.semantics
        chosen, choices = select_label_boxes(
            [area.candidate.box for area in run.areas],
            width,
            height,
            min_area_fraction=self.config.min_region_area_fraction,
            max_area_fraction=self.config.max_region_area_fraction,
            max_regions=self.config.max_labelled_regions,
            semantics=semantics,
        )
        sized = [run.areas[index] for index in chosen]
        if not sized:
            raise _reject(
                Stage.REGION_LABELS,
                "no_box_to_label",
                "no difference area has a size that gets labelled",
                {"areas": len(run.areas), "reasons": dict(Counter(choice.reason for choice in choices))},
            )
        requests = [
            CaptionRequest(
                image=image,
                prompt=region_label_prompt(area.candidate.box, width, height, semantics),
                max_new_tokens=self.config.label_max_new_tokens,
            )
            for area in sized
            for image in pictures.encoded
        ]
        answers = await asyncio.gather(*(self.clients.captioning.caption(request) for request in requests))
        labels = [(answers[2 * index].text, answers[2 * index + 1].text) for index in range(len(sized))]

        def operands(key: LabelScore) -> ScorePair:
            first, second = labels[key.box]
            if isinstance(key, LabelPair):
                return ScorePair(a=Operand(text=first), b=Operand(text=second))
            crop = label_crop_box(sized[key.box].candidate.box, width, height, semantics)
            return ScorePair(a=Operand(image=str(key.image), box=crop), b=Operand(text=(first, second)[key.image - 1]))

        scores = await self.scored(run, label_scores_needed(len(sized)), operands)
        decisions = decide_labels(
            labels,
            scores,
            cosine_max=self.config.label_cosine_max,
            match_min=self.config.label_match_min,
            semantics=semantics,
        )
        for index, area in enumerate(sized):
            area.label_source, area.label_target = labels[index]
            area.label_cosine = scores[LabelPair(index)]
        run.areas = [sized[decided.index] for decided in decisions if decided.keep]
        if not run.areas:
            raise _reject(
                Stage.REGION_LABELS,
                "labels_filtered",
                "no region kept labels that differ and match their crops",
                {"labelled": len(sized), "reasons": dict(Counter(decided.reason for decided in decisions))},
            )

    # stage 6
    async def caption_differences(self, run: PairRun) -> None:
        pictures = await self.pictures(run)
        width, height = pictures.size

        def render(area: Area) -> tuple[bytes, bytes, str]:
            left, right = (red_boxed(image, area.candidate.box) for image in pictures.images)
            return png_bytes(left), png_bytes(right), base64.b64encode(png_bytes(side_by_side(left, right))).decode()

        async def region(area: Area) -> Region:
            """One area's difference caption, asked of the side-by-side image, and its red-boxed images kept."""
            left, right, combined = await asyncio.to_thread(render, area)
            caption = await self.clients.captioning.caption(
                CaptionRequest(
                    image=combined,
                    prompt=difference_caption_prompt(
                        area.label_source or "", area.label_target or "", self.config.caption_wording
                    ),
                    max_new_tokens=self.config.caption_max_new_tokens,
                )
            )
            left_key, right_key = await asyncio.gather(
                asyncio.to_thread(self.store.put_image, left), asyncio.to_thread(self.store.put_image, right)
            )
            return Region(
                box=area.candidate.box,
                box_normalised=normalised_box(area.candidate.box, width, height),
                source_image=area.candidate.source_image,
                crop_cosine=area.crop_cosine,
                text_match=area.text_match,
                source_text_scores=area.source_text_scores,
                target_text_scores=area.target_text_scores,
                label_source=area.label_source,
                label_target=area.label_target,
                label_cosine=area.label_cosine,
                difference_caption=caption.text,
                boxed_image_source=left_key,
                boxed_image_target=right_key,
            )

        run.regions = list(await asyncio.gather(*(region(area) for area in run.areas)))

    def record(self, run: PairRun, rejection: Rejection | None) -> SampleRecord:
        return pair_record(run, rejection, self.settings, self.models)
