"""`vtx verify`, run as a user runs it, at the end of every end-to-end test: the video is
whole across SQL, S3, IPFS and its resource, or the test fails with each discrepancy."""

from __future__ import annotations

import os
import subprocess

from tests.stack import REPO, stack_env


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["vtx", "verify", *args], cwd=REPO, env={**os.environ, **stack_env()},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def assert_verified(*video_ids: str) -> None:
    """Each video checks out (a video still in progress checks out only if it claims nothing)."""
    assert video_ids, "nothing to verify"
    for video_id in video_ids:
        proc = verify(video_id)
        assert proc.returncode == 0, f"vtx verify {video_id}:\n{proc.stdout}{proc.stderr}"


def assert_complete(*video_ids: str) -> None:
    """Each video is completed (Ready) and checks out."""
    assert video_ids, "nothing to verify"
    for video_id in video_ids:
        proc = verify(video_id)
        report = f"vtx verify {video_id}:\n{proc.stdout}{proc.stderr}"
        assert proc.returncode == 0, report
        assert f"ok    {video_id} completed" in proc.stdout, report
