"""Publishing a finished video: the HLS master playlist in S3, one IPFS directory (root CID)
mirroring the S3 layout and built from the CIDs the rows record, checked file by file before
anything says the video is complete."""

from __future__ import annotations

from collections.abc import Sequence

from vtx.core import failpoints, media, videos
from vtx.core.db import Database
from vtx.core.hls import master_of
from vtx.core.ipfs import IpfsClient
from vtx.core.ladder import Rendition
from vtx.core.objects import ObjectStore
from vtx.core.resource import PublishedOutputs
from vtx.core.verify import directory_files, directory_problems, segments_of, walk


class PublishError(RuntimeError):
    """What was about to be published is not what the rows say; nothing was marked done."""


def publish_video(
    video_id: str,
    renditions: Sequence[Rendition],
    *,
    store: ObjectStore,
    ipfs: IpfsClient | None,
    db: Database,
    resource: str,
) -> PublishedOutputs:
    """Write the master playlist, build and check the IPFS directory (when ``ipfs``), mark the
    video completed and pin its root. Safe to run again."""
    failpoints.hit("operator.publishing")
    text = master_of(renditions)
    if text is None:
        raise ValueError(f"the plan {[r.name for r in renditions]} makes no playable master")
    master = text.encode()
    master_key = media.master_key(video_id)
    store.put_bytes(master_key, master, content_type="application/vnd.apple.mpegurl")
    failpoints.hit("operator.master-written")
    root = None
    if ipfs is not None:
        records = db.transaction(lambda cur: videos.rendition_records(cur, video_id), name="rows")
        segments = segments_of(db, video_id, renditions)
        try:
            expected = directory_files(renditions, records, segments)
        except (KeyError, ValueError) as exc:
            raise PublishError(f"the rows do not name every file: {exc}") from None
        master_cid = ipfs.add_bytes(master, name=media.MASTER_PLAYLIST, pin=False)
        expected[media.MASTER_PLAYLIST] = (master_cid, len(master))
        root = ipfs.directory_from_cids({p: cid for p, (cid, _) in expected.items()}, pin=False)
        problems = directory_problems(walk(ipfs, root), expected)
        if problems:
            raise PublishError(f"the IPFS directory {root} is not whole: {'; '.join(problems)}")
    if not db.transaction(
        lambda cur: videos.complete_video(cur, video_id, master_key, root, resource=resource),
        name="complete video",
    ):
        raise PublishError("the video was deleted (or taken by another resource) meanwhile")
    if ipfs is not None and root is not None:
        # Pinned after the row names it: a deletion of a video with the same outputs, which
        # unpins only a root no row names, cannot take this pin away unseen (handlers.cleanup).
        ipfs.pin_add(root)
        unpin_replaced(db, ipfs, video_id)
    return PublishedOutputs(master_key, root)


def unpin_replaced(db: Database, ipfs: IpfsClient, video_id: str) -> int:
    """Unpin what earlier attempts of the video's renditions added and a retry replaced (no
    row names it any more), then forget it; returns how many were unpinned."""
    cids = db.transaction(lambda cur: videos.replaced_unnamed(cur, video_id), name="replaced")
    unpinned = sum(ipfs.pin_rm(cid) for cid in sorted(cids))
    if cids:
        db.transaction(lambda cur: videos.forget_replaced(cur, video_id, sorted(cids)),
                       name="forget replaced")  # fmt: skip
    return unpinned
