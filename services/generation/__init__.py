"""Generation service: an image pair from a caption pair (SDXL, shared initial latent)."""
