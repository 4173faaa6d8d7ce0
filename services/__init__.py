"""Model services: each loads one model family and serves it batched over HTTP on the kit."""
