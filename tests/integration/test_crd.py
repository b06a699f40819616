"""The VideoTranscode CRD in the real API server: a bad spec is refused before the operator
sees it, with a message that names the field."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.stack import install_crd, kubectl, namespace, stack_env
from vtx.core.resource import SourceRef, VideoTranscodeSpec, build_resource

pytestmark = pytest.mark.stack
VID = "5d1b7c0e-8a0f-4a57-9c6f-0f3c2b9d7e21"


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    install_crd()
    with namespace("vtx-test-crd") as name:
        yield name


def valid(ns: str) -> dict[str, Any]:
    spec = VideoTranscodeSpec(
        video_id=VID, source=SourceRef(key=f"videos/{VID}/source/a.mp4", size=1)
    )
    obj = build_resource(spec, ns)
    obj["spec"]["renditions"] = [{"name": "720p"}, {"name": "audio"}]
    return obj


def kubectl_apply(obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "apply", "-f", "-"],
        input=yaml.safe_dump(obj),
        capture_output=True,
        text=True,
        env={**os.environ, **stack_env()},
        timeout=60,
        check=False,
    )


def test_a_valid_resource_is_accepted_and_listed(ns: str) -> None:
    proc = kubectl_apply(valid(ns))
    assert proc.returncode == 0, proc.stderr
    listed = kubectl("get", "vt", "-n", ns)
    assert listed.split()[:5] == ["NAME", "PHASE", "PROGRESS", "RENDITIONS", "AGE"]
    assert f"v-{VID}" in listed


BAD: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "unknown rendition field": (
        lambda s: s["renditions"][0].update(foo=1),
        "spec.renditions[0].foo",
    ),
    "negative size": (lambda s: s["source"].update(size=-1), "spec.source.size"),
    "non-UUID videoId": (lambda s: s.update(videoId="not-a-uuid"), "spec.videoId"),
    "unknown deletionPolicy": (lambda s: s.update(deletionPolicy="Shred"), "spec.deletionPolicy"),
    "a rendition name that is no rung": (
        lambda s: s["renditions"][0].update(name="720p|x"),
        "spec.renditions[0].name",
    ),
    "a rendition name that is a path": (
        lambda s: s["renditions"][0].update(name="../720p"),
        "spec.renditions[0].name",
    ),
    "a rendition's filter options": (
        lambda s: s["renditions"][0].update(width="320:240[a];movie=/etc/hostname"),
        "spec.renditions[0].width",
    ),
    "formats, which every video has both of": (
        lambda s: s.update(formats=["mp4"]),
        "spec.formats",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_a_bad_spec_is_refused_naming_the_field(ns: str, case: str) -> None:
    mutate, field = BAD[case]
    obj = copy.deepcopy(valid(ns))
    obj["metadata"]["name"] = f"v-{VID[:-4]}{list(BAD).index(case):04d}"
    mutate(obj["spec"])
    proc = kubectl_apply(obj)
    assert proc.returncode != 0, f"the API server accepted a spec with {case}"
    assert field in proc.stderr, proc.stderr
    got = kubectl("get", "vt", "-n", ns, obj["metadata"]["name"], "--ignore-not-found")
    assert got == "", "nothing was stored"


def test_status_is_a_subresource_with_printer_columns(ns: str) -> None:
    assert kubectl_apply(valid(ns)).returncode == 0
    name = f"v-{VID}"
    before = json.loads(kubectl("get", "vt", name, "-n", ns, "-o", "json"))
    patch = {"status": {"phase": "Transcoding", "progress": 42, "renditionsReady": "1/3"}}
    kubectl(
        "patch",
        "vt",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(patch),
    )
    after = json.loads(kubectl("get", "vt", name, "-n", ns, "-o", "json"))
    assert after["status"]["phase"] == "Transcoding"
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    row = kubectl("get", "vt", name, "-n", ns, "--no-headers").split()
    assert row[1:4] == ["Transcoding", "42", "1/3"]
    # A spec change goes through the main resource and bumps the generation.
    kubectl("patch", "vt", name, "-n", ns, "--type=merge", "-p", '{"spec": {"suspend": true}}')
    again = json.loads(kubectl("get", "vt", name, "-n", ns, "-o", "json"))
    assert again["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert again["status"]["phase"] == "Transcoding", "the status survives a spec change"
