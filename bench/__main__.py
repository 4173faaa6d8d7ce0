"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from bench import batching, orchestration, p2p, regions
from bench.synthetic import __main__ as synthetic

if __name__ == "__main__":
    batching.main([])
    p2p.main([])
    regions.main([])
    synthetic.main([])
    orchestration.main([])
