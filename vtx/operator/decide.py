"""What the operator does with one VideoTranscode, decided from what it observed (pure).

:func:`decide` takes a :class:`Snapshot` (the spec, the status, the Jobs' states, the rows and
objects that exist, the free slots) and returns a :class:`Decision`: the status to have and the
actions that get there. Some actions observe (probe the source, read the rows, verify the
outputs, publish); the step carries them out and asks again with what they found, so a table
of snapshots and decisions tests every rule without a cluster (``tests/unit/test_decide.py``).

A rendition is done on evidence only: its Job is Complete, its rows record every output and
name that Job, and the outputs check out in storage. What a jobrunner reports (phase,
progress) is shown, never trusted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from vtx.core import images as img
from vtx.core import media, videos
from vtx.core import resource as vt
from vtx.core.failures import explain
from vtx.core.jobargs import source_key_of
from vtx.core.ladder import (
    DEFAULT_LADDER,
    InvalidSource,
    Rendition,
    Rung,
    SourceFacts,
    is_track,
    plan_ladder,
    sound_apart,
)
from vtx.core.ranges import check_bounds
from vtx.core.verify import record_problems
from vtx.core.videos import RenditionRecord
from vtx.operator.grouping import Capacity, choose, split
from vtx.operator.jobs import planned_jobs, split_jobs
from vtx.operator.reports import Report
from vtx.operator.state import JobObs

TERMINAL = ("Ready", "Failed")
WAITING_FOR_SLOT = "the source is probed when a transcode slot is free for this video"
DONE = ("Succeeded", "Failed")

# --- what the step observed ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    facts: SourceFacts | None = None
    refused: str | None = None  # the source cannot be transcoded: why
    looks_like: str | None = None  # what a refused file's first bytes say it is (failures.sniff)
    unavailable: str | None = None  # it could not be read just now: why


@dataclass(frozen=True)
class Policy:
    max_output_fps: float = 60.0
    max_audio_tracks: int = 4
    max_subtitle_tracks: int = 4
    redo_limit: int = 2  # re-runs of a rendition whose outputs did not check out
    probe_retry_limit: int = 5  # probes in a row that may fail for a passing reason
    probe_backoff_s: float = 10.0  # the wait after the first such failure; doubled each time
    ladder: tuple[Rung, ...] = DEFAULT_LADDER
    split_seconds: float = 120.0  # a longer source is split in ranges (0: never)
    max_ranges: int = 16
    min_range_seconds: float = 30.0


@dataclass(frozen=True)
class Snapshot:
    name: str
    generation: int
    spec: vt.VideoTranscodeSpec
    status: vt.VideoTranscodeStatus
    now: datetime
    policy: Policy = Policy()
    jobs: Mapping[str, JobObs] = field(default_factory=dict)  # transcode Jobs it owns
    ingest_job: JobObs | None = None
    slots: int = 0  # Jobs it may create now (free slots of the cap, earlier resources first)
    stalled: frozenset[str] = frozenset()  # running Jobs without progress for the stall time
    probe: ProbeResult | None = None
    records: Mapping[str, RenditionRecord] | None = None  # None: not read in this step
    checks: Mapping[str, tuple[str, ...]] | None = None  # rendition → problems found in storage
    failures: Mapping[str, str] = field(default_factory=dict)  # Job → its pod's last words
    published: vt.PublishedOutputs | None = None
    claim: videos.Claim | None = None  # whether this resource may work on the video
    reports: Mapping[str, Report] = field(default_factory=dict)  # rendition → its jobrunner's
    capacity: Capacity | None = None  # what the cluster offers (read when a plan is to be made)


# --- what it decided ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimVideo:
    """Observe: may this resource work on its video (the row agrees, no other resource owns
    it)? A resource made by hand gets the video's row made for it."""


@dataclass(frozen=True)
class Probe:
    """Observe: probe the source."""


@dataclass(frozen=True)
class ReadRecords:
    """Observe: read the video's transcodes and segment rows."""


@dataclass(frozen=True)
class Verify:
    """Observe: check these renditions' outputs in S3 (and their rows) before trusting them."""

    renditions: tuple[str, ...]


@dataclass(frozen=True)
class ExplainFailure:
    """Observe: read why a failed Job's pod failed."""

    job: str


@dataclass(frozen=True)
class Publish:
    """Write the master playlist, build and check the IPFS root, mark the video completed."""

    renditions: tuple[Rendition, ...]


@dataclass(frozen=True)
class Continue:
    """Decide again with the new status (after planning: admission in the same step)."""


@dataclass(frozen=True)
class CreateTranscodeJob:
    name: str
    renditions: tuple[Rendition, ...]
    # A Job that makes a rendition again, because its outputs did not check out, starts over:
    # it does not resume from segments already stored.
    resume: bool = True
    # A split video's ranges Job (its bounds, and how many ranges run at once), or the Job
    # that puts them together.
    range_bounds: tuple[int, ...] = ()
    parallelism: int = 1
    finalize: bool = False


@dataclass(frozen=True)
class CreateIngestJob:
    pass


@dataclass(frozen=True)
class DeleteJob:
    name: str


@dataclass(frozen=True)
class SetSuspended:
    name: str
    suspended: bool


@dataclass(frozen=True)
class ReplacePods:
    """A stalled Job: delete its pods that ran the whole stall time (the Job makes another),
    with a Warning event when there was one."""

    name: str


@dataclass(frozen=True)
class MarkFailed:
    reason: str  # a sentence for the person who uploaded the video
    detail: str  # the condition reason and what the tools said


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the resource."""

    kind: Literal["Normal", "Warning"]
    reason: str
    message: str


Observe = ClaimVideo | Probe | ReadRecords | Verify | ExplainFailure | Publish | Continue
Effect = CreateTranscodeJob | CreateIngestJob | DeleteJob | SetSuspended | ReplacePods | MarkFailed
Action = Observe | Effect | Emit
OBSERVE = (ClaimVideo, Probe, ReadRecords, Verify, ExplainFailure, Publish, Continue)


@dataclass(frozen=True)
class Decision:
    status: vt.VideoTranscodeStatus
    actions: tuple[Action, ...] = ()
    note: str | None = None  # what the phase event says
    waiting: int = 0  # Jobs it wants but has no slot for

    @property
    def observes(self) -> tuple[Observe, ...]:
        return tuple(a for a in self.actions if isinstance(a, OBSERVE))


def missing_jobs(s: Snapshot) -> int:
    """Jobs the resource would create now with slots enough (what admission counts). A
    resource not yet probed counts one: it is probed only when a slot is free for it, so a
    thousand waiting resources cost no probe until they can run."""
    plan = s.status.plan
    if s.spec.suspend or s.status.phase in TERMINAL:
        return 0
    if plan is None:
        return 1 if _may_probe(s) else 0
    entries = s.status.renditions
    bounds = range_bounds(s.status)
    jobs = planned_jobs(s.name, plan, s.status.grouped(s.spec), _redos(entries), bounds)
    ranges_job, final_job = split_jobs(s.name, plan) if bounds else ("", "")
    return sum(
        len(bounds) - 1 if name == ranges_job else 1
        for name, group in jobs.items()
        if name not in s.jobs
        and any(_entry(entries, r.name).phase not in DONE for r in group)
        and (
            name != final_job
            or (_may_finalize(s, entries, plan) and not _failed_sound(entries, plan))
        )
        and (name != ranges_job or final_job not in s.jobs)
    )


def range_bounds(status: vt.VideoTranscodeStatus) -> tuple[int, ...]:
    """A split video's range bounds (empty for any other)."""
    grouping = status.grouping
    return grouping.range_bounds if grouping is not None and grouping.reason == "Split" else ()


def _may_finalize(
    s: Snapshot, entries: Mapping[str, vt.RenditionStatus], plan: Sequence[Rendition]
) -> bool:
    """Whether a split video's ranges may be put together: its ranges Job is Complete and its
    sound renditions succeeded (their MP4 gives the video renditions' MP4s their sound)."""
    ranges_job = s.jobs.get(split_jobs(s.name, plan)[0])
    sound = [r for r in plan if r.kind == "audio"]
    return (
        ranges_job is not None
        and ranges_job.state == "succeeded"
        and all(_entry(entries, r.name).phase == "Succeeded" for r in sound)
    )


def _failed_sound(
    entries: Mapping[str, vt.RenditionStatus], plan: Sequence[Rendition]
) -> Rendition | None:
    """A split video's sound rendition that failed for good, if one did."""
    return next(
        (r for r in plan if r.kind == "audio" and _entry(entries, r.name).phase == "Failed"), None
    )


def _may_probe(s: Snapshot) -> bool:
    """Whether an unplanned resource would probe now (not while waiting out a failed probe)."""
    retry_at = s.status.probe_retry_at
    return retry_at is None or vt.parse_timestamp(retry_at) <= s.now


def _entry(entries: Mapping[str, vt.RenditionStatus], name: str) -> vt.RenditionStatus:
    return entries.get(name) or vt.RenditionStatus()


def _redos(entries: Mapping[str, vt.RenditionStatus]) -> dict[str, int]:
    return {name: e.redos for name, e in entries.items()}


class _Draft:
    """The status being decided, and the actions that go with it."""

    def __init__(self, s: Snapshot) -> None:
        self.s = s
        self.status = s.status
        self.entries: dict[str, vt.RenditionStatus] = dict(s.status.renditions)
        self.actions: list[Action] = []
        self.verify: list[str] = []
        self.note: str | None = None
        self.waiting = 0

    # --- building blocks -------------------------------------------------------------------
    def act(self, action: Action) -> None:
        if action not in self.actions:
            self.actions.append(action)

    def emit(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.act(Emit(kind, reason, message[: vt.MESSAGE_LIMIT]))

    def set(self, **changes: object) -> None:
        self.status = dataclasses.replace(self.status, **changes)  # type: ignore[arg-type]

    def condition(
        self, type: vt.ConditionType, value: vt.ConditionStatus, reason: str, message: str
    ) -> None:
        self.set(
            conditions=vt.set_condition(
                self.status.conditions, type, value, reason, message, self.s.generation, self.s.now
            )
        )

    def entry(self, name: str) -> vt.RenditionStatus:
        return _entry(self.entries, name)

    def update(self, name: str, **changes: object) -> None:
        self.entries[name] = dataclasses.replace(self.entry(name), **changes)  # type: ignore[arg-type]

    def fail(
        self, reason: str, message: str, *, probed: bool | None = None, ours: bool = True,
        looks_like: str | None = None,
    ) -> None:  # fmt: skip
        """Failed for good; the video's row says so only when the video is this resource's.
        The conditions keep the technical words; the row and the status event get a sentence."""
        self.set(phase="Failed", observed_generation=self.s.generation)
        if probed is False:
            self.condition("Probed", "False", reason, message)
        self.condition("Ready", "False", reason, message)
        detail = f"{reason}: {message}"
        self.note = explain(detail, looks_like)
        if ours:
            self.act(MarkFailed(self.note, detail))
        self.emit("Warning", reason, message)

    def claimed(self) -> bool:
        """Whether the resource may work on its video; asks, or fails it, when not known."""
        s = self.s
        if vt.NAME_PREFIX + s.spec.video_id != s.name:
            self.fail(
                "InvalidSpec", f"a resource for video {s.spec.video_id} is named "
                f"{vt.NAME_PREFIX}{s.spec.video_id}, not {s.name}", ours=False,
            )  # fmt: skip
            return False
        try:
            source_key_of(s.spec.video_id, s.spec.source.key)
        except ValueError as exc:
            self.fail("InvalidSpec", str(exc), ours=False)
            return False
        if s.claim is None:
            self.act(ClaimVideo())
            return False
        if s.claim.refused is not None:
            self.fail("InvalidSpec", s.claim.refused, ours=False)
            return False
        return True

    def result(self) -> Decision:
        status = dataclasses.replace(self.status, renditions=dict(self.entries))
        actions = list(self.actions)
        if self.verify:
            actions.append(Verify(tuple(sorted(set(self.verify)))))
        return Decision(status, tuple(actions), self.note, self.waiting)

    # --- the steps of a resource's life ---------------------------------------------------------
    def plan(self) -> None:
        s, probe = self.s, self.s.probe
        if probe is None:
            if not _may_probe(s):
                return
            self.waiting = 1  # it keeps its place in the queue, and its slot while probed
            if s.slots > 0:
                self.act(Probe())
                return
            if self.status.phase != "Queued":
                # Probed when a slot is free for it: its facts are read when they are used.
                self.set(phase="Queued")
                self.condition("Probed", "Unknown", "WaitingForSlot", WAITING_FOR_SLOT)
                self.note = "queued: waiting for a transcode slot"
                self.emit("Normal", "Queued", WAITING_FOR_SLOT)
            return
        if probe.refused is not None:
            self.fail("InvalidSource", probe.refused, probed=False, looks_like=probe.looks_like)
            return
        if probe.unavailable is not None:
            failures = self.status.probe_failures + 1
            self.set(probe_failures=failures)
            if failures >= s.policy.probe_retry_limit:
                self.fail(
                    "SourceUnreadable",
                    f"the source could not be read {failures} times: {probe.unavailable}",
                    probed=False,
                )
                return
            wait = s.policy.probe_backoff_s * 2 ** (failures - 1)
            self.set(probe_retry_at=vt.timestamp(s.now + timedelta(seconds=wait)))
            self.emit("Warning", "ProbeRetry", f"retrying in {wait:.0f}s: {probe.unavailable}")
            return
        assert probe.facts is not None
        try:
            plan = plan_ladder(probe.facts, s.policy.ladder, max_fps=s.policy.max_output_fps,
                               max_audio_tracks=s.policy.max_audio_tracks,
                               max_subtitle_tracks=s.policy.max_subtitle_tracks)  # fmt: skip
        except InvalidSource as exc:
            self.fail("InvalidSource", str(exc), probed=False)
            return
        if s.spec.renditions is not None:
            chosen = self.select(plan, [r.name for r in s.spec.renditions])
            if chosen is None:
                return
            plan = chosen
        facts = probe.facts
        grouping = choose(s.spec.group_renditions, len(plan), s.capacity)
        if s.spec.group_renditions is None and any(r.kind == "video" for r in plan):
            cut = split(
                facts.duration, s.capacity, split_s=s.policy.split_seconds,
                cap=s.policy.max_ranges, min_range_s=s.policy.min_range_seconds,
            )  # fmt: skip
            if cut is not None:
                plan, grouping = sound_apart(plan), cut
        self.set(
            plan=tuple(plan),
            grouping=grouping,
            phase="Queued",
            progress=0,
            renditions_ready=f"0/{len(plan)}",
            probe_failures=0,
            probe_retry_at=None,
            source=vt.SourceStatus(
                duration=facts.duration, width=facts.width or 0, height=facts.height or 0,
                fps=facts.fps or 0.0, rotation=facts.rotation,
                video_codec=facts.video_codec or "", audio_codec=facts.audio_codec or "",
                has_audio=facts.has_audio, field_order=facts.field_order,
            ),
        )  # fmt: skip
        self.entries = {r.name: vt.RenditionStatus(phase="Queued") for r in plan}
        names = ", ".join(r.name for r in plan)
        jobs = "one Job" if grouping.grouped or len(plan) == 1 else f"{len(plan)} Jobs"
        if grouping.range_bounds:
            jobs = f"{len(grouping.range_bounds) - 1} ranges"
        said = f"{len(plan)} renditions planned: {names}; {jobs} ({grouping.reason})"
        self.condition("Probed", "True", "Probed", said)
        self.emit("Normal", "Probed", f"{names}; {jobs}: {grouping.message}")
        self.act(Continue())

    def select(self, plan: list[Rendition], wanted: list[str]) -> list[Rendition] | None:
        """The renditions ``spec.renditions`` names, of those that fit the source."""
        known = {r.name for r in self.s.policy.ladder} | {"audio"}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            self.fail(
                "InvalidSpec",
                f"spec.renditions names {', '.join(unknown)}; the ladder has "
                f"{', '.join(sorted(known))}",
            )
            return None
        # A video's tracks follow its video renditions (their HLS have no sound of their own
        # when the video has several audio tracks).
        chosen = [r for r in plan if r.name in wanted]
        if any(r.kind == "video" for r in chosen):
            chosen += [r for r in plan if is_track(r.name) and r not in chosen]
        if not chosen:
            self.fail(
                "InvalidSpec",
                f"none of {', '.join(wanted)} fits the source (never upscaled); it can make "
                f"{', '.join(r.name for r in plan)}",
            )
            return None
        return chosen

    def suspend(self) -> None:
        for job in [*self.s.jobs.values(), *([self.s.ingest_job] if self.s.ingest_job else [])]:
            if job.state == "active" and not job.suspended:
                self.act(SetSuspended(job.name, True))
        if self.status.phase != "Suspended":
            self.set(phase="Suspended")
            self.note = "suspended"
            self.emit("Normal", "Suspended", "no new Jobs; running ones suspended")

    def resume(self) -> None:
        for job in [*self.s.jobs.values(), *([self.s.ingest_job] if self.s.ingest_job else [])]:
            if job.suspended:
                self.act(SetSuspended(job.name, False))
        self.emit("Normal", "Resumed", "Jobs resumed")

    def follow_ingest(self) -> None:
        ingest = self.status.ingest
        if ingest is None or ingest.phase != "Running":
            return
        job = self.s.ingest_job
        if job is None:
            outcome = vt.IngestStatus("Failed", "the ingest Job is gone before it ended")
        elif job.state == "active":
            return
        elif job.state == "succeeded":
            outcome = vt.IngestStatus("Succeeded", "the original is pinned to IPFS")
        else:
            why = self.s.failures.get(job.name)
            if why is None:
                self.act(ExplainFailure(job.name))
                return
            outcome = vt.IngestStatus("Failed", why)
        if outcome.phase == "Failed" and self.status.phase == "Ready":
            # Degraded is written anew, and it names the source's decode errors too.
            if self.s.records is None:
                self.act(ReadRecords())
                return
            self.set(ingest=outcome)
            self.degraded(decode_errors=decode_errors(self.s.records))
        else:
            self.set(ingest=outcome)
        if outcome.phase == "Failed":
            self.emit("Warning", "IngestFailed", outcome.message)

    def degraded(self, decode_errors: int) -> None:
        """Degraded names what is missing or flawed: renditions that failed for good, an
        original that could not be pinned, a source that decoded with errors. None of them
        keeps the video from being Ready."""
        assert self.status.plan is not None
        failed = [r.name for r in self.status.plan if self.entry(r.name).phase == "Failed"]
        parts: list[tuple[str, str]] = []
        if failed:
            parts.append(("RenditionsFailed", "renditions failed: " + ", ".join(failed)))
        if self.status.ingest is not None and self.status.ingest.phase == "Failed":
            parts.append(
                (
                    "IngestFailed",
                    "the original is not pinned to IPFS: " + self.status.ingest.message,
                )
            )
        if decode_errors:
            parts.append(
                (
                    "DecodeErrors",
                    f"the source had {decode_errors} decode errors: the outputs may show glitches"
                    " where it was damaged",
                )
            )
        if not parts:
            self.condition("Degraded", "False", "AllRenditions", "every rendition is ready")
            return
        self.condition("Degraded", "True", parts[0][0], "; ".join(p[1] for p in parts))

    def transcodes(self) -> None:
        s = self.s
        plan = self.status.plan
        assert plan is not None
        bounds = range_bounds(self.status)
        if bounds:
            try:
                check_bounds(bounds, self.status.source.duration if self.status.source else 0)
            except ValueError as exc:
                self.fail("InvalidStatus", f"status.grouping.rangeBounds: {exc}")
                return
        jobs = planned_jobs(s.name, plan, self.status.grouped(s.spec), _redos(self.entries), bounds)
        ranges_job, final_job = split_jobs(s.name, plan) if bounds else ("", "")
        for name in s.jobs:
            if name not in jobs:
                self.act(DeleteJob(name))  # made for an earlier try of its renditions
        to_create: list[tuple[str, tuple[Rendition, ...]]] = []
        for name, group in jobs.items():
            open_ = [r for r in group if self.entry(r.name).phase not in DONE]
            job = s.jobs.get(name)
            if name == ranges_job and (final_job in s.jobs or (job and job.state == "succeeded")):
                continue  # its ranges are stored: the Job that puts them together takes over
            if name == final_job and job is None:
                ranges = s.jobs.get(ranges_job)
                stored = ranges is not None and ranges.state == "succeeded"
                if stored and open_ and self.sound_failed(plan, open_):
                    continue
                if not _may_finalize(s, self.entries, plan):
                    continue  # not before the ranges and the sound are stored
            if job is None:
                if open_:
                    to_create.append((name, group))
                continue
            for r in group:
                if self.entry(r.name).job != name or self.entry(r.name).attempts != job.attempts:
                    self.update(r.name, job=name, attempts=job.attempts)
            if job.state == "active":
                self.follow_running(job, open_)
            elif job.state == "failed":
                self.follow_failed(job, open_)
            else:
                for r in open_:
                    redo = self.follow_succeeded(name, r)
                    if redo is not None:
                        to_create.append(redo)
        self.create(to_create, len(jobs))
        self.conclude()

    def sound_failed(self, plan: Sequence[Rendition], open_: Sequence[Rendition]) -> bool:
        """A split video whose ranges are stored and whose sound rendition failed for good: its
        video renditions' MP4s take their sound from that rendition's, so they fail too, at
        once, rather than in a Job that would find nothing to put together over its retries."""
        sound = _failed_sound(self.entries, plan)
        if sound is None:
            return False
        why = f"the sound rendition {sound.name} failed"
        if cause := self.entry(sound.name).message:
            why += f" ({cause})"
        why += ": a split video's MP4s take their sound from it"
        for r in open_:
            self.update(r.name, phase="Failed", message=why[: vt.MESSAGE_LIMIT])
        self.emit("Warning", "RenditionFailed", f"{', '.join(r.name for r in open_)}: {why}")
        return True

    def follow_running(self, job: JobObs, open_: Sequence[Rendition]) -> None:
        """A running Job's renditions show what their jobrunner last reported (if anything
        arrived): shown, not trusted."""
        for r in open_:
            report = self.s.reports.get(r.name)
            entry = self.entry(r.name)
            if report is None:
                if entry.phase in ("Pending", "Queued", "Suspended"):
                    self.update(r.name, phase="Running")
                continue
            shown = (report.shown_phase, report.progress, report.message)
            if (entry.phase, entry.progress, entry.message) != shown:
                self.update(r.name, phase=shown[0], progress=shown[1], message=shown[2])
        if job.name in self.s.stalled:
            self.act(ReplacePods(job.name))

    def follow_failed(self, job: JobObs, open_: Sequence[Rendition]) -> None:
        if not open_:
            return
        why = self.s.failures.get(job.name)
        if why is None:
            self.act(ExplainFailure(job.name))
            return
        for r in open_:
            self.update(r.name, phase="Failed", message=why[: vt.MESSAGE_LIMIT])
        self.emit("Warning", "RenditionFailed", f"{', '.join(r.name for r in open_)}: {why}")

    def follow_succeeded(self, job: str, r: Rendition) -> tuple[str, tuple[Rendition, ...]] | None:
        """A Complete Job's rendition: done once its rows and objects check out; made again
        (returns the new Job) when they do not."""
        s = self.s
        if s.records is None:
            self.act(ReadRecords())
            return None
        problems = record_problems(
            s.records.get(r.name), job=job, rendition=r, ipfs=s.spec.storage_ipfs
        )
        if not problems:
            if s.checks is None or r.name not in s.checks:
                self.verify.append(r.name)
                return None
            problems = list(s.checks[r.name])
        if problems:
            return self.redo(r, problems)
        record = s.records[r.name]
        self.update(
            r.name, phase="Succeeded", progress=100, message=None,
            outputs=outputs_of(record, r),
        )  # fmt: skip
        return None

    def redo(
        self, r: Rendition, problems: Sequence[str]
    ) -> tuple[str, tuple[Rendition, ...]] | None:
        entry = self.entry(r.name)
        first = problems[0]
        if entry.redos >= self.s.policy.redo_limit:
            message = f"its outputs did not check out after {entry.redos + 1} runs: {first}"
            self.update(r.name, phase="Failed", message=message[: vt.MESSAGE_LIMIT], outputs=None)
            self.emit("Warning", "OutputsIncomplete", f"{r.name}: {message}")
            return None
        redos = entry.redos + 1
        self.update(
            r.name, phase="Queued", progress=0, redos=redos, job=None, attempts=0, outputs=None,
            message=f"made again: {first}"[: vt.MESSAGE_LIMIT],
        )  # fmt: skip
        self.emit("Warning", "Redo", f"{r.name} is made again ({len(problems)} problems): {first}")
        jobs = planned_jobs(self.s.name, (r,), False, {r.name: redos})
        return next(iter(jobs.items()))

    def create(self, to_create: Sequence[tuple[str, tuple[Rendition, ...]]], planned: int) -> None:
        s = self.s
        bounds = range_bounds(self.status)
        assert self.status.plan is not None
        ranges_job, final_job = split_jobs(s.name, self.status.plan) if bounds else ("", "")
        # A split video's ranges Job takes the slots left after the others, one per range.
        budget = max(0, s.slots)
        allowed: list[tuple[str, tuple[Rendition, ...]]] = []
        for name, group in to_create:
            if budget < 1:
                break
            allowed.append((name, group))
            if name == ranges_job:
                parallel = min(len(bounds) - 1, budget)
                budget -= parallel
                self.act(CreateTranscodeJob(name, group, range_bounds=bounds, parallelism=parallel))
            else:
                budget -= 1
                redone = any(self.entry(r.name).redos for r in group)
                self.act(
                    CreateTranscodeJob(name, group, resume=not redone, finalize=name == final_job)
                )
            for r in group:
                if self.entry(r.name).phase not in DONE:
                    self.update(r.name, phase="Pending", job=name, attempts=0)
        for _name, group in to_create[len(allowed) :]:
            for r in group:
                if self.entry(r.name).phase not in DONE:
                    self.update(r.name, phase="Queued")
        self.waiting = len(to_create) - len(allowed)
        if allowed and s.spec.storage_ipfs and s.ingest_job is None and self.status.ingest is None:
            self.act(CreateIngestJob())
            self.set(ingest=vt.IngestStatus("Running", "pinning the original to IPFS"))
        jobs_created = self.status.condition("JobsCreated")
        if (
            allowed
            and self.waiting == 0
            and (jobs_created is None or jobs_created.status != "True")
        ):
            self.condition("JobsCreated", "True", "JobsCreated", f"{planned} transcode Jobs")
            self.emit("Normal", "JobsCreated", f"{planned} transcode Jobs")

    def conclude(self) -> None:
        """The video's phase and progress from its renditions; publish when all are done."""
        s = self.s
        plan = self.status.plan
        assert plan is not None
        entries = [self.entry(r.name) for r in plan]
        done = [r for r, e in zip(plan, entries, strict=True) if e.phase == "Succeeded"]
        failed = [r for r, e in zip(plan, entries, strict=True) if e.phase == "Failed"]
        progress = round(
            sum(100 if e.phase == "Succeeded" else e.progress for e in entries) / len(plan)
        )
        self.set(progress=min(progress, 99), renditions_ready=f"{len(done)}/{len(plan)}")
        if len(done) + len(failed) < len(plan):
            running = bool(s.jobs) or any(isinstance(a, CreateTranscodeJob) for a in self.actions)
            self.set(phase="Transcoding" if running else "Queued")
            return
        if not done:
            message = "every rendition failed: " + ", ".join(r.name for r in failed)
            first = next((e.message for e in entries if e.phase == "Failed" and e.message), None)
            if first:
                message += f" (first: {first})"
            self.fail("RenditionsFailed", message)
            return
        self.set(phase="Publishing")
        if s.records is None:
            self.act(ReadRecords())
            return
        # What was checked in an earlier step is checked again: storage may have changed since.
        unchecked = [r.name for r in done if s.checks is None or r.name not in s.checks]
        if unchecked:
            self.verify.extend(unchecked)
            return
        assert s.checks is not None
        bad = [(r, s.checks[r.name]) for r in done if s.checks[r.name]]
        if bad:
            redone = [job for r, problems in bad if (job := self.redo(r, problems)) is not None]
            self.create(redone, len(planned_jobs(s.name, plan, self.status.grouped(s.spec))))
            self.conclude()
            return
        if s.published is None:
            self.act(Publish(tuple(done)))
            return
        self.ready(s.published, done)

    def ready(self, published: vt.PublishedOutputs, done: Sequence[Rendition]) -> None:
        s = self.s
        assert s.records is not None
        self.set(phase="Ready", progress=100, outputs=published, observed_generation=s.generation)
        self.degraded(decode_errors=decode_errors(s.records))
        where = f"root CID {published.cid}" if published.cid else f"master {published.master}"
        self.condition("Ready", "True", "Published", where)
        self.note = f"{len(done)} renditions published"
        self.emit("Normal", "Ready", f"master {published.master}, {where}")


def decode_errors(records: Mapping[str, RenditionRecord]) -> int:
    """The decode errors FFmpeg reported reading the source (each Job decodes it whole)."""
    return max((o.decode_errors for r in records.values() for o in r.outputs.values()), default=0)


def outputs_of(record: RenditionRecord, r: Rendition) -> vt.RenditionOutputs:
    """A verified rendition's outputs as its rows record them."""
    mp4 = record.get(videos.file_format(r.kind), videos.S3)
    hls = record.get(videos.HLS, videos.S3)
    if mp4 is None or hls is None or not mp4.key or not hls.key:
        raise ValueError(f"{r.name}: its outputs are not recorded")
    cids: dict[str, str] = {}
    if mp4.cid:
        cids[media.mp4_name(r.kind)] = mp4.cid
    if hls.cid:
        cids[media.HLS_PLAYLIST] = hls.cid
    if hls.init_cid:
        cids[media.HLS_INIT] = hls.init_cid
    images = {}
    for fmt, name in img.FILES.items() if r.images else ():
        row = record.get(fmt, videos.S3)
        if row is None or not row.key:
            raise ValueError(f"{r.name}: its {fmt} is not recorded")
        images[fmt] = row.key
        if row.cid:
            cids[f"{img.FOLDER}/{name}"] = row.cid
    return vt.RenditionOutputs(mp4=mp4.key, hls=hls.key, cids=cids, images=images)


def decide(s: Snapshot) -> Decision:
    """What to do next with one resource, given what was observed."""
    d = _Draft(s)
    phase = s.status.phase
    if phase in TERMINAL:
        d.follow_ingest()
        return d.result()
    if not d.claimed():
        return d.result()
    if s.status.plan is None:
        if s.spec.suspend:
            d.suspend()
        else:
            d.plan()
        return d.result()
    if s.spec.suspend:
        d.suspend()
        return d.result()
    if phase == "Suspended":
        d.resume()
    d.follow_ingest()
    d.transcodes()
    return d.result()
