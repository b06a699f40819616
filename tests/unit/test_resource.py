from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from vtx.core import resource as vt
from vtx.core.ladder import SourceFacts, plan_ladder
from vtx.core.resource import (
    RenditionSpec,
    SourceRef,
    VideoTranscodeSpec,
    build_resource,
    resource_name,
    set_condition,
    video_id_from_name,
)

VID = "0b9f0a55-2b8c-4d8f-9a51-3a3c0c1e1a11"
CRD = Path(__file__).resolve().parents[2] / "crds" / "videotranscodes.vtx.dev.yaml"


def full_spec() -> VideoTranscodeSpec:
    return VideoTranscodeSpec(
        video_id=VID,
        source=SourceRef(key=f"videos/{VID}/source/a.mp4", size=10, bucket="media-videos",
                         content_type="video/mp4"),
        renditions=[RenditionSpec("720p"), RenditionSpec("audio")],
        storage_ipfs=False,
        deletion_policy="Delete",
        group_renditions=True,
    )  # fmt: skip


def test_names_are_deterministic_and_reversible() -> None:
    assert resource_name(VID.upper()) == f"v-{VID}"
    assert video_id_from_name(f"v-{VID}") == VID
    for bad in ("x-" + VID, "v-not-a-uuid"):
        with pytest.raises(ValueError, match="not a VideoTranscode name"):
            video_id_from_name(bad)


def test_spec_round_trips_through_its_dict() -> None:
    spec = full_spec()
    d = spec.to_dict()
    assert d["renditions"] == [{"name": "720p"}, {"name": "audio"}]
    assert d["storage"] == {"ipfs": False}
    assert VideoTranscodeSpec.from_dict(d) == spec


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("videoId"), "spec.videoId is required"),
        (lambda d: d["source"].update(size="big"), "spec.source.size must be int"),
        (
            lambda d: d["renditions"][0].update(name=7),
            r"spec.renditions\[0\].name must be string",
        ),
        (
            lambda d: d.update(deletionPolicy="Shred"),
            "spec.deletionPolicy must be one of Retain, Delete, not 'Shred'",
        ),
        (lambda d: d.update(suspend="yes"), "spec.suspend must be boolean, not str"),
        (lambda d: d.update(videoId="not-a-uuid"), "spec.videoId must be a UUID"),
    ],
)
def test_bad_spec_dicts_name_the_field(mutate: object, message: str) -> None:
    d = full_spec().to_dict()
    mutate(d)  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        VideoTranscodeSpec.from_dict(d)


def test_the_whole_object() -> None:
    obj = build_resource(
        full_spec(), "media", labels={"team": "a", "vtx.dev/video-id": "someone-else"}
    )
    assert obj["apiVersion"] == "vtx.dev/v1alpha1"
    assert obj["kind"] == "VideoTranscode"
    assert obj["metadata"]["name"] == f"v-{VID}"
    assert obj["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "vtx", "vtx.dev/video-id": VID, "team": "a",
    }  # fmt: skip


def test_conditions_keep_their_transition_time_until_status_changes() -> None:
    t1 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    t2 = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    conds = set_condition((), "Probed", "True", "Probed", "ok", 1, t1)
    conds = set_condition(conds, "Ready", "False", "Transcoding", "x" * 5000, 1, t1)
    again = set_condition(conds, "Probed", "True", "Probed", "still ok", 2, t2)
    probed = next(c for c in again if c.type == "Probed")
    assert probed.last_transition_time == "2026-01-01T12:00:00Z"
    assert probed.observed_generation == 2
    flipped = set_condition(again, "Probed", "False", "InvalidSource", "bad", 2, t2)
    assert next(c for c in flipped if c.type == "Probed").last_transition_time == (
        "2026-01-01T12:05:00Z"
    )
    assert len(next(c for c in conds if c.type == "Ready").message) == 1024
    assert [c.type for c in flipped].count("Probed") == 1


FACTS = SourceFacts(duration=10, has_video=True, has_audio=True, width=1280, height=720, fps=30)


def full_status() -> vt.VideoTranscodeStatus:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    plan = tuple(plan_ladder(FACTS))
    return vt.VideoTranscodeStatus(
        phase="Ready",
        observed_generation=2,
        progress=100,
        renditions_ready="2/2",
        source=vt.SourceStatus(10.0, 1280, 720, 30.0, 0, "h264", "aac", True),
        plan=plan,
        renditions={
            "480p": vt.RenditionStatus(
                "Succeeded",
                100,
                "j-480p",
                1,
                0,
                None,
                vt.RenditionOutputs("k.mp4", "k.m3u8", {"video.mp4": "cid1"}),
            ),
            "720p": vt.RenditionStatus("Failed", 40, "j-720p-r1", 2, 1, "OOMKilled"),
        },
        ingest=vt.IngestStatus("Succeeded", "pinned"),
        outputs=vt.PublishedOutputs("videos/x/master.m3u8", "root"),
        conditions=set_condition((), "Ready", "True", "Published", "root CID root", 2, now),
        probe_failures=1,
        probe_retry_at="2026-01-01T12:00:10Z",
    )


def test_status_round_trips_through_its_dict() -> None:
    status = full_status()
    d = status.to_dict()
    assert d["plan"][0] == {
        "name": "480p", "kind": "video", "width": 854, "height": 480, "fps": 30.0,
        "videoKbps": 1400, "maxrateKbps": 1498, "bufsizeKbit": 2100, "audioKbps": 128,
        "images": True,
    }  # fmt: skip
    assert d["plan"][1]["images"] is False
    assert vt.VideoTranscodeStatus.from_dict(d) == status
    assert vt.VideoTranscodeStatus.from_dict({}) == vt.VideoTranscodeStatus()
    assert vt.VideoTranscodeStatus.from_dict({"kopf": {"x": 1}}) == vt.VideoTranscodeStatus()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["plan"][0].update(width="320:240[a];movie=/etc/hostname"), "width must be"),
        (lambda d: d["plan"][0].update(name="480p|x"), "is not of the form"),
        (lambda d: d["plan"][0].update(name="../480p"), "is not of the form"),
        (lambda d: d["plan"][0].update(name="480p\n"), "is not of the form"),
        (lambda d: d["plan"][0].update(width=76800), "width must be an integer from 2 to 8192"),
        (lambda d: d["plan"][0].update(width=855), "must be even"),
        (lambda d: d["plan"][0].update(filters="movie=x"), "unknown fields"),
        (lambda d: d["plan"].append(dict(d["plan"][0])), "names each rendition once"),
        (lambda d: d.update(plan=[]), "1 to 24 renditions"),
        (lambda d: d.update(phase="Done"), "status.phase must be one of"),
        (lambda d: d["renditions"]["480p"].update(progress="x"), "progress must be integer"),
    ],
)
def test_a_status_the_operator_did_not_write_is_refused(mutate: object, message: str) -> None:
    d = full_status().to_dict()
    mutate(d)  # type: ignore[operator]
    with pytest.raises(vt.InvalidStatus, match=message):
        vt.VideoTranscodeStatus.from_dict(d)


def test_the_crd_schema_knows_every_field_the_model_writes() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec = full_spec().to_dict()
    assert set(spec) <= set(schema["properties"])
    assert set(spec["source"]) <= set(schema["properties"]["source"]["properties"])
    items = schema["properties"]["renditions"]["items"]["properties"]
    for r in spec["renditions"]:
        assert set(r) <= set(items)
    assert set(schema["properties"]) - set(spec) == set(), "the model can write every spec field"
    assert schema["properties"]["videoId"]["pattern"]
    uuid.UUID(VID)
    status_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    status = full_status().to_dict()
    known = status_schema["properties"]
    assert set(status) <= set(known)
    assert set(known) - {"kopf"} == set(vt.STATUS_KEYS), "the model reads every status field"
    for item in status["plan"]:
        assert set(item) <= set(known["plan"]["items"]["properties"])
    entry = known["renditions"]["additionalProperties"]["properties"]
    for r in status["renditions"].values():
        assert set(r) <= set(entry)
    assert set(status["source"]) <= set(known["source"]["properties"])


def test_earlier_resources_take_the_free_slots_first() -> None:
    from vtx.operator.state import Waiting, slots_for

    a = Waiting("2026-01-01T00:00:01Z", "ns", "a", missing=2)
    b = Waiting("2026-01-01T00:00:02Z", "ns", "b", missing=3)
    c = Waiting("2026-01-01T00:00:03Z", "ns", "c", missing=1)
    waiting = [c, a, b]
    assert slots_for(a, waiting, free=2) == 2
    assert slots_for(b, waiting, free=2) == 0, "a comes first"
    assert slots_for(b, waiting, free=4) == 2
    assert slots_for(c, waiting, free=4) == 0
    assert slots_for(c, [c], free=4) == 1


def test_the_crd_and_the_model_name_the_same_phases() -> None:
    from typing import get_args

    from vtx.core.resource import Phase, RenditionPhase

    crd = yaml.safe_load(CRD.read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["phase"]["enum"] == list(get_args(Phase))
    entry = status["properties"]["renditions"]["additionalProperties"]["properties"]
    assert entry["phase"]["enum"] == list(get_args(RenditionPhase))
