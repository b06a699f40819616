"""A small client for Kubo's RPC API (``/api/v0``): add with CIDv1, pin, unpin, cat, directories.

``ipfshttpclient`` is not used: it refuses every Kubo newer than 0.8.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests

CHUNK = 256 * 1024


@dataclass(frozen=True)
class IpfsEntry:
    name: str
    cid: str
    size: int  # bytes of a file (0 for a directory)
    is_dir: bool


class IpfsError(RuntimeError):
    """A Kubo RPC call failed; the message names the call."""


def _part_header(boundary: str, name: str, content_type: str) -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quote(name, safe="/")}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def _multipart(
    boundary: str,
    entries: Iterable[tuple[str, IO[bytes] | bytes | None]],
    sent: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """A streamed multipart body; an entry whose content is None is a directory. ``sent`` is
    told of each chunk of a streamed file once the chunk has been handed on."""
    for name, content in entries:
        if content is None:
            yield _part_header(boundary, name, "application/x-directory") + b"\r\n"
            continue
        yield _part_header(boundary, name, "application/octet-stream")
        if isinstance(content, bytes):
            yield content
        else:
            while chunk := content.read(CHUNK):
                yield chunk
                if sent is not None:
                    sent(len(chunk))
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


class IpfsClient:
    def __init__(self, api_url: str, *, timeout_s: float = 30.0, token: str = "") -> None:
        """``token``: a bearer token of Kubo's ``API.Authorizations`` (each token may call only
        the RPC paths its entry allows; job pods get one that may only add)."""
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = requests.Session()
        if token:
            self._http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._http.close()

    def _call(
        self,
        call: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, str]] | None = None,
        stream: bool = False,
        **kw: Any,
    ) -> requests.Response:
        try:
            resp = self._http.post(
                f"{self.api_url}/api/v0/{call}",
                params=params,
                stream=stream,
                timeout=self.timeout_s,
                **kw,
            )
        except requests.RequestException as exc:
            raise IpfsError(f"ipfs {call}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            try:
                message = resp.json().get("Message", resp.text)
            except ValueError:
                message = resp.text
            raise IpfsError(f"ipfs {call}: HTTP {resp.status_code}: {message.strip()[:300]}")
        return resp

    def version(self) -> str:
        version: str = self._call("version").json()["Version"]
        return version

    def _add(
        self,
        entries: Iterable[tuple[str, IO[bytes] | bytes | None]],
        pin: bool,
        sent: Callable[[int], None] | None = None,
    ) -> list[dict[str, Any]]:
        boundary = uuid.uuid4().hex
        resp = self._call(
            "add",
            params={
                "cid-version": 1,
                "pin": str(pin).lower(),
                "quieter": "false",
                "progress": "false",
            },
            data=_multipart(boundary, entries, sent),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]

    def add_bytes(self, data: bytes, *, name: str = "file", pin: bool = True) -> str:
        """Add one file; returns its CIDv1."""
        cid: str = self._add([(name, data)], pin)[-1]["Hash"]
        return cid

    def add_stream(
        self,
        stream: IO[bytes],
        *,
        name: str = "file",
        pin: bool = True,
        sent: Callable[[int], None] | None = None,
    ) -> str:
        """Add one file read from ``stream`` without holding it in memory; returns its CIDv1.
        ``sent`` is told of the bytes as they go."""
        cid: str = self._add([(name, stream)], pin, sent)[-1]["Hash"]
        return cid

    def add_file(
        self, path: Path, *, pin: bool = True, sent: Callable[[int], None] | None = None
    ) -> str:
        """Add one file; ``sent`` is told of the bytes as they are read to be sent."""
        with path.open("rb") as f:
            return self.add_stream(f, name=path.name, pin=pin, sent=sent)

    def add_directory(self, root: Path, *, pin: bool = True) -> str:
        """Add a directory tree; returns the root CID, under which files keep their paths."""
        top = "root"

        def entries() -> Iterator[tuple[str, IO[bytes] | bytes | None]]:
            yield top, None
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                rel = Path(dirpath).relative_to(root)
                for d in dirnames:
                    yield f"{top}/{(rel / d).as_posix()}", None
                for name in sorted(filenames):
                    with (Path(dirpath) / name).open("rb") as f:
                        yield f"{top}/{(rel / name).as_posix()}", f

        for entry in self._add(entries(), pin):
            if entry.get("Name") == top:
                cid: str = entry["Hash"]
                return cid
        raise IpfsError("ipfs add: Kubo did not report the root directory")

    def directory_from_cids(self, files: Mapping[str, str], *, pin: bool = True) -> str:
        """Build a directory from CIDs already in the node (relative path → CID), without adding
        the bytes again; returns the root CID."""
        work = f"/vtx-tmp-{uuid.uuid4().hex}"
        self._call("files/mkdir", params={"arg": work, "parents": "true", "cid-version": 1})
        try:
            for rel, cid in sorted(files.items()):
                rel = rel.strip("/")
                if not rel or ".." in rel.split("/"):
                    raise ValueError(f"not a relative path: {rel!r}")
                parent = f"{work}/{rel}".rsplit("/", 1)[0]
                self._call(
                    "files/mkdir", params={"arg": parent, "parents": "true", "cid-version": 1}
                )
                self._call("files/cp", params=[("arg", f"/ipfs/{cid}"), ("arg", f"{work}/{rel}")])
            root: str = self._call("files/stat", params={"arg": work}).json()["Hash"]
            if pin:
                self.pin_add(root)
            return root
        finally:
            self._call("files/rm", params={"arg": work, "recursive": "true", "force": "true"})

    def ls(self, path: str) -> list[IpfsEntry]:
        """The entries of a directory (a CID or ``<cid>/<relative path>``), without fetching
        the files themselves."""
        body = self._call(
            "ls", params={"arg": path, "resolve-type": "true", "size": "true", "stream": "false"}
        ).json()
        objects = body.get("Objects") or []
        links = (objects[0].get("Links") if objects else None) or []
        return [
            IpfsEntry(str(link["Name"]), str(link["Hash"]), int(link.get("Size") or 0),
                      int(link.get("Type") or 0) == 1)
            for link in links
        ]  # fmt: skip

    def cat(self, path: str) -> bytes:
        """The bytes of a CID or ``<cid>/<relative path>``."""
        return self._call("cat", params={"arg": path}).content

    def iter_cat(self, path: str) -> Iterator[bytes]:
        resp = self._call("cat", params={"arg": path}, stream=True)
        try:
            yield from resp.iter_content(CHUNK)
        finally:
            resp.close()

    def pin_add(self, cid: str) -> None:
        self._call("pin/add", params={"arg": cid, "recursive": "true"})

    def pin_rm(self, cid: str) -> bool:
        """Unpin; returns False when it was not pinned."""
        try:
            self._call("pin/rm", params={"arg": cid, "recursive": "true"})
        except IpfsError as exc:
            if "not pinned" in str(exc):
                return False
            raise
        return True

    def is_pinned(self, cid: str) -> bool:
        try:
            self._call("pin/ls", params={"arg": cid, "type": "recursive"})
        except IpfsError as exc:
            if "not pinned" in str(exc):
                return False
            raise
        return True

    def recursive_pins(self) -> set[str]:
        """Every CID pinned recursively (what ``pin add`` and ``add`` with a pin leave)."""
        keys = self._call("pin/ls", params={"type": "recursive"}).json().get("Keys") or {}
        return set(keys)
