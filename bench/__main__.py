"""Run every benchmark: ``python -m bench``."""

from bench import batching, p2p

if __name__ == "__main__":
    batching.main([])
    p2p.main([])
