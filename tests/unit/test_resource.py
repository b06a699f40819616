from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from vtx.core.resource import (
    RenditionSpec,
    SourceRef,
    VideoTranscodeSpec,
    build_resource,
    rendition_status_patch,
    renditions_ready,
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
        renditions=[
            RenditionSpec("720p", "video", 1280, 720, 30.0, "2800k", "2996k", "4200k", "128k"),
            RenditionSpec("audio", "audio", audio_bitrate="128k"),
        ],
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
    assert d["renditions"][0]["videoBitrate"] == "2800k"
    assert "width" not in d["renditions"][1], "None fields are left out"
    assert VideoTranscodeSpec.from_dict(d) == spec


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("videoId"), "spec.videoId is required"),
        (lambda d: d["source"].update(size="big"), "spec.source.size must be int"),
        (
            lambda d: d["renditions"][0].update(width=True),
            r"spec.renditions\[0\].width must be int",
        ),
        (
            lambda d: d.update(deletionPolicy="Shred"),
            "spec.deletionPolicy must be one of Retain, Delete, not 'Shred'",
        ),
        (lambda d: d.update(formats=["webm"]), r"spec.formats\[0\] must be one of mp4, hls"),
        (lambda d: d.update(formats=[]), "spec.formats must name at least one format"),
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
    conds = set_condition([], "Probed", "True", "Probed", "ok", 1, t1)
    conds = set_condition(conds, "Ready", "False", "Transcoding", "x" * 5000, 1, t1)
    again = set_condition(conds, "Probed", "True", "Probed", "still ok", 2, t2)
    probed = next(c for c in again if c["type"] == "Probed")
    assert probed["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert probed["observedGeneration"] == 2
    flipped = set_condition(again, "Probed", "False", "InvalidSource", "bad", 2, t2)
    assert (
        next(c for c in flipped if c["type"] == "Probed")["lastTransitionTime"]
        == "2026-01-01T12:05:00Z"
    )
    assert len(next(c for c in conds if c["type"] == "Ready")["message"]) == 1024
    assert [c["type"] for c in flipped].count("Probed") == 1


def test_a_rendition_patch_touches_only_its_own_entry() -> None:
    patch = rendition_status_patch("720p", phase="Running", progress=40, message="m" * 2000)
    assert list(patch["status"]["renditions"]) == ["720p"]
    assert len(patch["status"]["renditions"]["720p"]["message"]) == 1024
    status = {"renditions": {"480p": {"phase": "Succeeded"}, "720p": {"phase": "Running"}}}
    assert renditions_ready(status) == "1/2"
    with pytest.raises(TypeError, match="not a rendition status field: progres"):
        rendition_status_patch("720p", progres=40)


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
