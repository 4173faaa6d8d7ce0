"""The public API: jobs of caption pairs, their progress, samples and exports (no torch here)."""
