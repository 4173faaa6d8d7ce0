"""Celery workers: they run the pipeline of each pair against the model services (no torch here)."""
