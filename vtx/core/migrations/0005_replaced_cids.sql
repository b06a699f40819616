-- CIDs an earlier attempt of a rendition had recorded (a segment, the init segment, the MP4 or
-- the playlist) and a retried jobrunner replaced with other bytes. The jobrunner pinned them
-- when it added them; the operator unpins them (when no row names them) once the video is
-- published, or its outputs are deleted, so that no pin outlives what the rows describe.
CREATE TABLE IF NOT EXISTS replaced_cids (
    video_id UUID NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    cid TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (video_id, cid)
);
