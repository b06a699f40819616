"""The API's pure parts: what it accepts from clients, how it signs playlists, tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from vtx.api.errors import ApiError
from vtx.api.playback import UnexpectedPlaylist, has_segments, sign_media_playlist
from vtx.api.validation import (
    check_file_name,
    parse_parts,
    parse_upload_request,
    part_count,
    part_range,
    part_size_for,
    safe_file_name,
)
from vtx.api.ws import BadMessage, parse_message
from vtx.core.tokens import check_token, hash_token, new_token, parse_token_list

MIB = 1024 * 1024
LIMIT = 10 * 1024 * MIB


def refused(body: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_upload_request(body, max_bytes=LIMIT)
    return info.value


def test_a_plain_request_and_the_original_field_names() -> None:
    req = parse_upload_request(
        {"file_name": "clip.mp4", "size": 10, "content_type": "video/mp4", "title": " Hi "},
        max_bytes=LIMIT,
    )
    assert (req.file_name, req.size, req.content_type, req.title) == (
        "clip.mp4",
        10,
        "video/mp4",
        "Hi",
    )
    old = parse_upload_request({"filename": "a.mov", "fileSize": 5}, max_bytes=LIMIT)
    assert (old.file_name, old.size, old.content_type) == ("a.mov", 5, "video/quicktime")
    assert old.title == "a.mov", "the title defaults to the file name"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../etc/passwd", "must be a file name, not a path"),
        ("..\\boot.ini", "must be a file name, not a path"),
        ("clip\x00.mp4", "contains control or invisible characters"),
        ("x" * 5000 + ".mp4", "longer than 255 characters"),
        ("...", "is not a file name"),
        ("..", "is not a file name"),
        ("   ", "is not a file name"),
        ("", "is not a file name"),
        ("harmless\u202egpj.mp4", "contains control or invisible characters"),
        ("line\nbreak.mp4", "control characters"),
    ],
)
def test_hostile_file_names_are_refused_with_the_field(name: str, message: str) -> None:
    err = refused({"file_name": name, "size": 10, "content_type": "video/mp4"})
    assert err.status == 400
    assert err.field == "file_name"
    assert message in err.message


def test_unicode_names_are_kept_but_the_key_is_plain_ascii() -> None:
    assert check_file_name("Vidéo de l'été 日本.MP4") == "Vidéo de l'été 日本.MP4"
    assert safe_file_name("Vidéo de l'été 日本.MP4") == "Video_de_l_ete.mp4"
    assert safe_file_name("日本.mp4") == "source.mp4"
    assert safe_file_name(".hidden.mkv") == "hidden.mkv"
    assert safe_file_name("a" * 300 + ".webm") == "a" * 100 + ".webm"
    assert safe_file_name("no extension") == "no_extension"


@pytest.mark.parametrize(
    ("size", "status", "message"),
    [
        (0, 400, "at least 1 byte"),
        (-5, 400, "at least 1 byte"),
        (LIMIT + 1, 413, "over the limit"),
        ("12", 400, "must be an integer"),
        (True, 400, "must be an integer"),
        (1.5, 400, "must be an integer"),
        (None, 400, "size is required"),
    ],
)
def test_sizes(size: Any, status: int, message: str) -> None:
    err = refused({"file_name": "a.mp4", "size": size, "content_type": "video/mp4"})
    assert (err.status, err.field) == (status, "size")
    assert message in err.message


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"file_name": "notes.txt", "size": 1, "content_type": "text/plain"}, "content_type",
         "is not a video or audio type"),
        ({"file_name": "list.m3u8", "size": 1, "content_type": "application/x-mpegURL"},
         "content_type", "is not named as a video or audio file"),
        ({"file_name": "notes.txt", "size": 1}, "content_type",
         "is named as a text/plain file, not a video or audio file"),
        ({"file_name": "a.mp4", "size": 1, "content_type": "video"}, "content_type",
         "is not a media type (type/subtype)"),
        ({"file_name": "a.mp4", "size": 1, "content_type": "video/" + "x" * 130}, "content_type",
         "is not a media type (type/subtype)"),
        ({"file_name": "a.mp4", "size": 1, "content_type": 7}, "content_type", "must be a string"),
        ({"file_name": 42, "size": 1}, "file_name", "must be a string"),
        ({"size": 1}, "file_name", "file_name is required"),
        ({"file_name": "a.mp4", "size": 1, "title": "x" * 201}, "title", "longer than 200"),
        ({"file_name": "a.mp4", "size": 1, "description": ["no"]}, "description",
         "must be a string"),
    ],
)  # fmt: skip
def test_fields_are_checked_one_by_one(body: dict[str, Any], field: str, message: str) -> None:
    err = refused(body)
    assert err.status == 400
    assert err.field == field
    assert message in err.message


@pytest.mark.parametrize(
    ("name", "announced", "recorded"),
    [
        ("clip.mkv", "application/octet-stream", "application/octet-stream"),
        ("clip.webm", "binary/octet-stream", "binary/octet-stream"),
        ("clip.ts", "text/vnd.trolltech.linguist", "text/vnd.trolltech.linguist"),
        ("clip.ts", None, "video/mp2t"),
        ("clip.ts", "", "video/mp2t"),
        ("song.m4a", " ", "audio/mp4"),
        ("recording", None, "application/octet-stream"),
        ("a.mp4", "application/x-mpegURL", "application/x-mpegurl"),
        ("notes.txt", "application/octet-stream", "application/octet-stream"),
        ("A.MKV", "Video/X-Matroska; charset=x", "video/x-matroska"),
    ],
)  # fmt: skip
def test_the_bytes_not_the_announced_type_decide(
    name: str, announced: str | None, recorded: str
) -> None:
    """What real clients send is accepted when the name or the generic type leaves it to the
    probe; the recorded type is what the client announced (its PUT is signed with it)."""
    body: dict[str, Any] = {"file_name": name, "size": 1}
    if announced is not None:
        body["content_type"] = announced
    assert parse_upload_request(body, max_bytes=LIMIT).content_type == recorded


@pytest.mark.parametrize("body", [None, [], "upload", 3])
def test_the_body_must_be_an_object(body: Any) -> None:
    assert refused(body).code == "invalid_body"


def test_media_type_parameters_and_case_are_dropped() -> None:
    req = parse_upload_request(
        {"file_name": "a.mp4", "size": 1, "content_type": "Video/MP4; codecs=avc1"},
        max_bytes=LIMIT,
    )
    assert req.content_type == "video/mp4"


def test_part_sizes_stay_within_s3_limits() -> None:
    assert part_size_for(100 * MIB, 16 * MIB) == 16 * MIB
    big = part_size_for(400 * 1024 * MIB, 16 * MIB)  # 400 GiB needs bigger parts
    assert part_count(400 * 1024 * MIB, big) <= 10_000
    assert big % MIB == 0
    assert part_count(33 * MIB, 16 * MIB) == 3
    assert [part_range(n, 33 * MIB, 16 * MIB) for n in (1, 2, 3)] == [16 * MIB, 16 * MIB, MIB]


def test_completion_parts() -> None:
    parts = parse_parts({"parts": [{"number": 2, "etag": '"B"'}, {"PartNumber": 1, "ETag": "a"}]})
    assert [(p.number, p.etag) for p in parts] == [(1, "a"), (2, "b")]
    assert parse_parts(None) == []
    for bad, field in [
        ({"parts": "all"}, "parts"),
        ({"parts": [{"number": 0, "etag": "x"}]}, "parts[0].number"),
        ({"parts": [{"number": 1}]}, "parts[0].etag"),
        ({"parts": [{"number": 1, "etag": "x"}, {"number": 1, "etag": "y"}]}, "parts[1].number"),
    ]:
        with pytest.raises(ApiError) as info:
            parse_parts(bad)
        assert info.value.field == field


def test_media_playlists_get_signed_segment_urls() -> None:
    text = (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:EVENT\n"
        '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:4.000000,\nseg00000.m4s\n#EXTINF:2.5,\nseg00001.m4s\n'
    )
    signed = sign_media_playlist(text, lambda name: f"https://s3/{name}?sig=1")
    assert '#EXT-X-MAP:URI="https://s3/init.mp4?sig=1"' in signed
    assert "https://s3/seg00000.m4s?sig=1\n" in signed
    assert "https://s3/seg00001.m4s?sig=1\n" in signed
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in signed
    assert has_segments(text)
    assert not has_segments("#EXTM3U\n#EXT-X-TARGETDURATION:4\n")
    for hostile in ("../../secret.txt", "file:///etc/passwd", "https://evil/x.m4s"):
        with pytest.raises(UnexpectedPlaylist):
            sign_media_playlist(f"#EXTM3U\n#EXTINF:4,\n{hostile}\n", lambda n: n)


def test_tokens_are_checked_by_hash_and_expiry() -> None:
    token = new_token()
    entries = parse_token_list(
        f"ci:{hash_token(token)},old:{hash_token('vtx_old')}:2020-01-01T00:00:00Z"
    )
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert check_token(token, entries, now).name == "ci"
    assert check_token("vtx_old", entries, now).reason == "expired"
    assert check_token("vtx_other", entries, now).reason == "unknown"
    assert check_token("bad token with spaces", entries, now).reason == "unknown"
    assert check_token(None, entries, now).reason == "missing"
    assert token not in repr(entries), "only hashes are held"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "a message is a JSON object"),
        ('{"type": "dance"}', "type must be"),
        ('{"type": "subscribe"}', "give all: true or videos"),
        ('{"type": "subscribe", "videos": ["x"]}', "must be video ids"),
        ('{"type": "subscribe", "videos": [1]}', "must be video ids"),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_websocket_messages_are_checked(text: str, message: str) -> None:
    with pytest.raises(BadMessage, match=message):
        parse_message(text)


def test_websocket_subscriptions() -> None:
    vid = "0B9F0A55-2B8C-4D8F-9A51-3A3C0C1E1A11"
    assert parse_message(f'{{"type": "subscribe", "videos": ["{vid}"]}}')["videos"] == [vid.lower()]
    assert parse_message('{"type": "subscribe", "all": true}')["all"] is True
    assert parse_message('{"type": "ping"}') == {"type": "ping"}


def test_text_frames_use_the_length_forms_of_rfc_6455() -> None:
    from vtx.api.hub import text_frame

    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")
    assert len(text_frame(b"x" * 65536)) == 10 + 65536


def test_every_route_declares_who_may_call_it_and_writes_need_a_token() -> None:
    from aiohttp import web

    from vtx.api.app import setup_routes
    from vtx.api.auth import declared_access, route_access

    app = web.Application()
    setup_routes(app)
    seen = []
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        for route in resource:
            if route.method == "HEAD":
                continue
            handler = route.handler
            level = route_access(route)
            seen.append((route.method, path, level))
            if str(path).startswith("/static"):
                assert level == "open", "the dashboard's files are public"
                continue
            assert getattr(handler, "_vtx_access", None) is not None, (
                f"{route.method} {path} declares no access level"
            )
            if route.method != "GET" or path == "/ws":
                assert level in ("write", "admin"), f"{route.method} {path} is {level}"
    assert ("GET", "/ws", "write") in seen
    assert declared_access(setup_routes) == "admin"
    assert ("DELETE", "/v1/videos/{video_id}", "write") in seen


def test_an_undeclared_handler_is_closed() -> None:
    from vtx.api.auth import declared_access

    async def forgotten() -> None:
        pass

    assert declared_access(forgotten) == "admin"


def test_a_token_sees_its_own_videos_and_an_admin_every_one() -> None:
    from vtx.api.caller import ANONYMOUS, Caller

    alice, admin = Caller("alice"), Caller("ops", admin=True)
    assert alice.may_see("alice", reading=True, open_reads=False)
    assert not alice.may_see("bob", reading=True, open_reads=False)
    assert not alice.may_see("bob", reading=False, open_reads=True), "writes are always scoped"
    assert alice.may_see("bob", reading=True, open_reads=True), "open reads are open"
    assert not alice.may_see(None, reading=True, open_reads=False), "made by hand: admins only"
    assert admin.may_see("bob", reading=False, open_reads=False)
    assert not ANONYMOUS.may_see("alice", reading=True, open_reads=False)
    assert (alice.owner_filter, admin.owner_filter) == ("alice", None)
