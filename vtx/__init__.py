"""vtx: video transcoding platform for Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vtx")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
