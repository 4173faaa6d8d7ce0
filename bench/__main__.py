"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from bench import batching, orchestration, p2p, regions, scale
from bench.synthetic import __main__ as synthetic

if __name__ == "__main__":
    batching.main([])
    p2p.main([])
    regions.main([])
    synthetic.main([])
    orchestration.main([])
    scale.main(["--pairs", "1000"])  # `make bench-scale` runs the 10,000-pair job
