"""vtx: video transcoding platform for Kubernetes."""

from __future__ import annotations

import functools


@functools.cache
def package_version() -> str:
    """The installed package's version ("0.0.0" from a source tree that was not installed).

    Read on first use: importlib.metadata costs about 0.1 s of every process's start-up, which a
    jobrunner pod would spend before its FFmpeg starts."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vtx")
    except PackageNotFoundError:
        return "0.0.0"
