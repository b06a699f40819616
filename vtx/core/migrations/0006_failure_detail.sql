-- A failed video's reason is a sentence for the person who uploaded it; what the tools said
-- (the condition reason, ffprobe's or FFmpeg's words) is kept here, for whoever runs vtx.
ALTER TABLE videos ADD COLUMN IF NOT EXISTS failure_detail TEXT;
