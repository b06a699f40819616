"""The vtx API: uploads, progress, playback, the WebSocket hub and the dashboard."""
