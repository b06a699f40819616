"""The kopf operator: VideoTranscode resources become per-rendition Jobs (``vtx operator``)."""
