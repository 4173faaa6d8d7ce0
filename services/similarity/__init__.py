"""Similarity service: batched CLIP cosines for image-image, image-text and text-text."""
