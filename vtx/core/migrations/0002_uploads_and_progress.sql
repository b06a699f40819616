-- Multipart uploads that a client can resume, and the transcode's progress as the operator last
-- saw it, so that progress and lists are answered from SQL without asking Kubernetes.
ALTER TABLE videos ADD COLUMN IF NOT EXISTS upload_id TEXT;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS part_size BIGINT;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS phase TEXT;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS progress INT NOT NULL DEFAULT 0;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS renditions JSONB;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS outputs JSONB;
