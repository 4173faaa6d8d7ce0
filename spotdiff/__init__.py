"""spotdiff: Img-Diff difference samples as a service.

The kernel package is torch-free on purpose: gateway, workers and clients import it and must stay small.
"""

__version__ = "0.1.0"
