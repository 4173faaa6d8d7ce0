"""Captioning service: text from images and a prompt (a transformers vision-language model)."""
