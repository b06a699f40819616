"""The FFmpeg jobrunner: runs in each Job pod (``vtx jobrunner``)."""
