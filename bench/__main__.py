"""Run every benchmark: ``python -m bench``."""

from bench import batching

if __name__ == "__main__":
    batching.main([])
