"""Rewriting serving: one caption rewritten per request, sampled with its own seed, batched across requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.kit import Call, Serving
from services.rewriting.jobs import Answer, RewriteJob
from spotdiff.imgdiff.rewrite import RECIPES, clean_answer
from spotdiff.protocol.rewriting import RewriteRequest, RewriteResponse
from spotdiff.settings import RewritingSettings

if TYPE_CHECKING:
    from services.rewriting.model import RewritingModel


class RewritingServing(
    Serving[RewritingSettings, "RewritingModel", RewriteRequest, RewriteJob, Answer, RewriteResponse]
):
    """Every caption may share a batch: the token budget is the service's, and each row samples with its own
    generator, so a caption's rewrite does not depend on what it was batched with."""

    op = "rewrites"

    def setup(self, settings: RewritingSettings) -> RewritingModel:
        from services.rewriting.model import RewritingModel

        return RewritingModel(settings)

    def decode(self, request: RewriteRequest, call: Call[RewritingSettings]) -> RewriteJob:
        return RewriteJob(request.caption, request.seed)

    def predict(self, runner: RewritingModel, items: list[RewriteJob]) -> list[Answer]:
        return runner.rewrite(items)

    def encode(self, result: Answer, item: RewriteJob, call: Call[RewritingSettings]) -> RewriteResponse:
        """The recipe's post-filters decide what of the answer is a caption; a drop keeps the answer and reason."""
        post_filters = RECIPES[call.settings.recipe].post_filters
        cleaned = clean_answer(result.text, result.prompt, post_filters=post_filters)
        return RewriteResponse(
            text=cleaned.text,
            reason=cleaned.reason,
            answer=result.text,
            tokens=result.tokens,
            model_id=call.settings.model,
        )
