-- A rendition's outputs are recorded in one transaction when its Job is done: which Job made
-- them, how many segments the playlist lists, the init segment's CID and how many decode errors
-- FFmpeg reported. The operator trusts these rows, not a status report, to call a rendition done.
ALTER TABLE transcodes ADD COLUMN IF NOT EXISTS job TEXT;
ALTER TABLE transcodes ADD COLUMN IF NOT EXISTS segment_count INT;
ALTER TABLE transcodes ADD COLUMN IF NOT EXISTS init_cid TEXT;
ALTER TABLE transcodes ADD COLUMN IF NOT EXISTS decode_errors INT NOT NULL DEFAULT 0;
ALTER TABLE transcodes ADD COLUMN IF NOT EXISTS recorded_at TIMESTAMPTZ;
-- The source's duration as probed: outputs are checked against it.
ALTER TABLE videos ADD COLUMN IF NOT EXISTS source_duration DOUBLE PRECISION;
