"""The benchmark's WebSocket client reads the frames the hub writes, however they are split."""

from bench.api import client_frame, server_frames
from vtx.api.hub import text_frame


def test_frames_split_anywhere_come_out_whole_and_in_order() -> None:
    payloads = [b"a", b"x" * 125, b"y" * 126, b"z" * 70_000]
    stream = b"".join(text_frame(p) for p in payloads) + b"\x89\x00"  # and an empty ping
    for step in (1, 3, 1000, len(stream)):
        buf, got = bytearray(), []
        for at in range(0, len(stream), step):
            buf += stream[at : at + step]
            got += server_frames(buf)
        assert got == [(0x1, p) for p in payloads] + [(0x9, b"")]
        assert not buf


def test_a_client_frame_is_masked_and_unmasks_to_its_payload() -> None:
    frame = client_frame(0x1, b'{"type":"ping"}')
    assert frame[0] == 0x81
    assert frame[1] == 0x80 | 15
    mask, body = frame[2:6], frame[6:]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(body)) == b'{"type":"ping"}'
