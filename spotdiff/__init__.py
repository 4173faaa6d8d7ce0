"""spotdiff: Img-Diff difference samples as a service.

The kernel package is torch-free on purpose: gateway, workers and clients import it and must stay small.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("spotdiff")  # pyproject.toml says it, once
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
