-- Signed webhooks (Standard Webhooks): the endpoints an API token registered, and one delivery
-- per event and endpoint, retried with growing delays until the endpoint answers 2xx or a day
-- has passed. A delivery's id is its webhook-id header, the same on every attempt.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id UUID PRIMARY KEY,
    owner TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    event_types TEXT[] NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_by_owner ON webhook_endpoints (owner, created_at);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    endpoint_id UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The event that caused it: the same event enqueued twice makes one delivery per endpoint.
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- No reference to videos: a delivery outlives the video it is about (video.deleted).
    video_id UUID,
    payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_status INT,
    last_error TEXT,
    delivered_at TIMESTAMPTZ,
    CONSTRAINT webhook_deliveries_state CHECK (state IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_deliveries_one_per_event UNIQUE (endpoint_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_endpoint
    ON webhook_deliveries (endpoint_id, created_at DESC);
