"""Probing an uploaded source safely: ffprobe reads it over HTTP with a protocol whitelist and
an allow-list of demuxers, and the result is checked against the configured limits."""

from __future__ import annotations

import json
import math
import subprocess
import threading

from vtx.core.ladder import InvalidSource, SourceFacts, display_size
from vtx.core.media import INPUT_FORMATS, allowed_protocols, classify_failure, failure_reason
from vtx.core.probe import facts_from_ffprobe, ffprobe_args
from vtx.core.settings import Settings


class ProbeUnavailable(RuntimeError):
    """The source could not be read for a reason that may pass (network, storage)."""


_running: set[subprocess.Popen[str]] = set()
_running_lock = threading.Lock()
_stopping = threading.Event()  # set by stop_probes: no probe starts after it


class ProbeCancelled(RuntimeError):
    """The process is stopping: the probe was not run, or was killed, and says nothing of the
    source (not a failed probe: the next operator probes it)."""


# What a media tool reading a hostile file gets: a path to find its libraries, nothing else.
# No credential of the process that starts it (database URL, S3 keys) is in its environment.
MEDIA_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def sandboxed(args: list[str], *, memory_mb: int, cpu_s: int) -> list[str]:
    """``args`` run under limits a hostile file cannot talk its way past: address space, CPU
    time, open files, and no file written (``prlimit``, part of util-linux in every Debian)."""
    return [
        "prlimit", f"--as={memory_mb * 1024 * 1024}", f"--cpu={cpu_s}", "--nofile=256",
        "--fsize=0", "--core=0", "--", *args,
    ]  # fmt: skip


def run_probe(
    args: list[str], timeout_s: float, *, memory_mb: int = 1024
) -> subprocess.CompletedProcess[str]:
    """Run ffprobe sandboxed (:func:`sandboxed`, :data:`MEDIA_ENV`) and killed after
    ``timeout_s``, known to :func:`stop_probes` meanwhile. Raises ProbeCancelled once the
    process is stopping."""
    with _running_lock:
        if _stopping.is_set():
            raise ProbeCancelled("the process is stopping: no probe starts")
        proc = subprocess.Popen(
            sandboxed(args, memory_mb=memory_mb, cpu_s=max(1, int(timeout_s))),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=MEDIA_ENV,
        )  # fmt: skip
        _running.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    finally:
        with _running_lock:
            _running.discard(proc)
    if _stopping.is_set():
        raise ProbeCancelled("the process is stopping: the probe was cut short")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def stop_probes() -> int:
    """Kill every probe still running and let no other start (the process is stopping);
    returns how many were killed."""
    with _running_lock:
        _stopping.set()
        procs = list(_running)
    for proc in procs:
        proc.kill()
    return len(procs)


def probe_source(url: str, settings: Settings) -> SourceFacts:
    """Probe ``url`` and check the limits; raises InvalidSource or ProbeUnavailable."""
    timeout_s = settings.probe_timeout_s
    args = ffprobe_args(
        url,
        allowed_protocols=allowed_protocols(url),
        allowed_formats=",".join(INPUT_FORMATS),
        timeout_s=min(settings.request_timeout_s * 3, timeout_s),
    )
    try:
        proc = run_probe(args, timeout_s, memory_mb=settings.probe_memory_mb)
    except subprocess.TimeoutExpired as exc:
        raise ProbeUnavailable(f"ffprobe did not finish within {timeout_s}s") from exc
    if proc.returncode < 0 or proc.returncode == 137:
        # Killed (its CPU or memory limit, or the OOM killer): a file that makes the probe
        # spin or swell does it again; the video fails after the retry limit, not at once.
        raise ProbeUnavailable(f"ffprobe was stopped by a limit (exit {proc.returncode})")
    if proc.returncode != 0:
        message = failure_reason(proc.stderr)
        if classify_failure(proc.stderr) == "invalid":
            raise InvalidSource(f"the source is not a readable video or audio file: {message}")
        raise ProbeUnavailable(f"ffprobe failed: {message}")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise InvalidSource("ffprobe gave no readable report for the source") from exc
    facts = facts_from_ffprobe(report)
    check_limits(facts, settings)
    return facts


def check_limits(facts: SourceFacts, settings: Settings) -> None:
    """Refuse sources beyond the configured duration, size and frame rate (pure)."""
    if not facts.has_video and not facts.has_audio:
        raise InvalidSource("the source has neither a video nor an audio stream")
    if not math.isfinite(facts.duration) or facts.duration <= 0:
        raise InvalidSource("the source has no duration")
    if facts.duration > settings.max_source_seconds:
        raise InvalidSource(
            f"the source lasts {facts.duration:.0f}s, more than the limit of "
            f"{settings.max_source_seconds}s"
        )
    if facts.has_video:
        w, h = facts.width or 0, facts.height or 0
        longest, shortest = max(w, h), min(w, h)
        if longest > settings.max_source_width or shortest > settings.max_source_height:
            raise InvalidSource(
                f"the source is {w}x{h}, larger than the limit of "
                f"{settings.max_source_width}x{settings.max_source_height}"
            )
        # As a viewer sees it: a sample aspect ratio stretches the frame the outputs are sized
        # from (1920x1080 at 40:1 would make outputs 76800 pixels wide).
        dw, dh = display_size(facts)
        if max(dw, dh) > settings.max_source_width or min(dw, dh) > settings.max_source_height:
            raise InvalidSource(
                f"the source is {dw}x{dh} as displayed (sample aspect ratio {facts.sar}), larger"
                f" than the limit of {settings.max_source_width}x{settings.max_source_height}"
            )
        if facts.fps and facts.fps > settings.max_source_fps:
            raise InvalidSource(
                f"the source has {facts.fps:g} frames per second, more than the limit of "
                f"{settings.max_source_fps}"
            )
