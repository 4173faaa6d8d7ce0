"""Regions service: segment-anything region proposals as boxes."""
