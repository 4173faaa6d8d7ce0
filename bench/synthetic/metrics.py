"""Detection metrics for difference areas: one-to-one matching at an IoU, precision, recall, F1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spotdiff.protocol.common import Box

THRESHOLDS = (0.3, 0.5, 0.7)


def box_iou(a: Box, b: Box) -> float:
    """Plain intersection over union of continuous boxes."""
    inter = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1)) * max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


Change = Sequence[Box]  # the acceptable boxes of one change: before, after and their union


def change_iou(box: Box, change: Change) -> float:
    """A prediction's IoU with a change: its best IoU with the before, after or union box."""
    return max(box_iou(box, accepted) for accepted in change)


def matches(predicted: Sequence[Box], truth: Sequence[Change], threshold: float) -> int:
    """True positives under one-to-one matching of predictions to changes, greedily by highest IoU first."""
    pairs = sorted(
        ((change_iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)), reverse=True
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    for value, i, j in pairs:
        if value < threshold:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    return len(used_p)


@dataclass(frozen=True)
class TierScore:
    precision: dict[float, float]
    recall: dict[float, float]
    f1: dict[float, float]
    mean_best_iou: float
    false_alarms_per_pair: float
    pairs: int


def score(results: Sequence[tuple[Sequence[Box], Sequence[Change]]]) -> TierScore:
    """Scores over (predicted, truth) per pair; false alarms count predictions on pairs with no truth."""
    predicted_total = sum(len(p) for p, _ in results)
    truth_total = sum(len(t) for _, t in results)
    precision, recall, f1 = {}, {}, {}
    for threshold in THRESHOLDS:
        hits = sum(matches(p, t, threshold) for p, t in results)
        precision[threshold] = hits / predicted_total if predicted_total else 1.0
        recall[threshold] = hits / truth_total if truth_total else 1.0
        total = precision[threshold] + recall[threshold]
        f1[threshold] = 2 * precision[threshold] * recall[threshold] / total if total else 0.0
    best = [max((change_iou(p, t) for p in predicted), default=0.0) for predicted, truth in results for t in truth]
    empty = [len(p) for p, t in results if not t]
    return TierScore(
        precision=precision,
        recall=recall,
        f1=f1,
        mean_best_iou=sum(best) / len(best) if best else float("nan"),
        false_alarms_per_pair=sum(empty) / len(empty) if empty else float("nan"),
        pairs=len(results),
    )
