-- Who may act on a video: the VideoTranscode that claimed it (<namespace>/<name>), so that one
-- live resource per video does the work and no resource touches another video's outputs.
ALTER TABLE videos ADD COLUMN IF NOT EXISTS resource TEXT;
-- Whose video it is: the name of the API token that announced the upload. A token sees, plays,
-- deletes and follows its own videos only (an admin token sees every video).
ALTER TABLE videos ADD COLUMN IF NOT EXISTS owner TEXT;
CREATE INDEX IF NOT EXISTS videos_by_owner ON videos (owner, created_at DESC, id);
