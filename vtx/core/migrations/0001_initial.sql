-- The original plan's tables, with the keys that make retried writes harmless, and the outbox.
-- Written for both PostgreSQL and CockroachDB: TEXT, BIGINT, UUID, JSONB, ON CONFLICT.
CREATE TABLE IF NOT EXISTS videos (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    file_id UUID,
    title TEXT,
    description TEXT,
    file_name TEXT,
    file_path TEXT,
    content_type TEXT,
    ipfs_cid TEXT,
    checksum TEXT,
    upload_status TEXT NOT NULL DEFAULT 'pending',
    failure_reason TEXT,
    file_size BIGINT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS videos_by_created_at ON videos (created_at DESC, id);

CREATE TABLE IF NOT EXISTS transcodes (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    video_id UUID NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    file_path TEXT,
    file_cid TEXT,
    format TEXT NOT NULL,
    resolution TEXT NOT NULL,
    storage_type TEXT NOT NULL DEFAULT 's3',
    type TEXT NOT NULL DEFAULT 'transcode',
    width INT,
    height INT,
    bitrate BIGINT,
    size BIGINT,
    duration DECIMAL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT transcodes_one_per_output UNIQUE (video_id, format, resolution, storage_type)
);

CREATE TABLE IF NOT EXISTS transcode_segments (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    transcode_id UUID NOT NULL REFERENCES transcodes (id) ON DELETE CASCADE,
    file_path TEXT,
    file_cid TEXT,
    storage_type TEXT NOT NULL DEFAULT 's3',
    sequence BIGINT NOT NULL,
    duration DECIMAL NOT NULL,
    size BIGINT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT transcode_segments_one_per_sequence UNIQUE (transcode_id, sequence)
);

-- Events written in the same transaction as the change they announce; a relay publishes them.
CREATE TABLE IF NOT EXISTS outbox (
    id UUID PRIMARY KEY,
    topic TEXT NOT NULL,
    key TEXT,
    payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at TIMESTAMPTZ,
    attempts INT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;
