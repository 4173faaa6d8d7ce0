"""``python -m bench.synthetic``: the difference-area decision on the synthetic ground truth, per tier."""

from __future__ import annotations

import argparse
import math

from bench.synthetic.dataset import TIERS, make_pair
from bench.synthetic.metrics import THRESHOLDS, score
from bench.synthetic.oracle import oracle_path, prior_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=40, help="pairs per tier")
    parser.add_argument("--semantics", choices=["orig", "dj"], default="orig")
    args = parser.parse_args(argv)
    header = "tier              path    " + " ".join(f"P/R/F1@{t}".ljust(17) for t in THRESHOLDS)
    print(f"synthetic[{args.pairs} pairs per tier, semantics {args.semantics}]")
    print(header + "  best IoU  false alarms/pair")
    for tier in TIERS:
        pairs = [make_pair(tier, index) for index in range(args.pairs)]
        for name, path in (("oracle", oracle_path), ("prior", prior_path)):
            result = score([(path(pair, args.semantics), pair.truth) for pair in pairs])
            if any(pair.truth for pair in pairs):
                cells = " ".join(
                    f"{result.precision[t]:.2f}/{result.recall[t]:.2f}/{result.f1[t]:.2f}".ljust(17) for t in THRESHOLDS
                )
            else:  # nothing changed: only false alarms mean anything
                cells = " ".join("-".ljust(17) for _ in THRESHOLDS)
            best = "-" if math.isnan(result.mean_best_iou) else f"{result.mean_best_iou:.3f}"
            alarms = "-" if math.isnan(result.false_alarms_per_pair) else f"{result.false_alarms_per_pair:.2f}"
            print(f"{tier:<17} {name:<7} {cells}  {best:>8}  {alarms:>8}", flush=True)


if __name__ == "__main__":
    main()
