"""Rewriting service: a caption with one object replaced (a transformers causal language model; stage (a))."""
