"""The OpenAPI 3.1 description of every endpoint, served at GET /openapi.json."""

from __future__ import annotations

from typing import Any

from vtx import package_version
from vtx.core.ladder import RENDITION_NAME
from vtx.core.webhooks import EVENT_TYPES

UUID = {"type": "string", "format": "uuid"}
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "The request is malformed; error.field names the input",
        401: "No API token, or one this server does not accept",
        404: "No such video",
        409: "The video is not in a state for this",
        413: "Larger than the limit or than announced",
        415: "The body is not JSON",
        422: "The uploaded bytes do not match what was announced",
        503: "A server the API needs cannot be reached; retry",
    }
    return {str(s): _json(_ref("Error"), words[s]) for s in statuses}


VIDEO_ID = {"name": "video_id", "in": "path", "required": True, "schema": UUID}
ENDPOINT_ID = {"name": "endpoint_id", "in": "path", "required": True, "schema": UUID}
RENDITION = {
    "name": "rendition",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": RENDITION_NAME.pattern},
}
MP4_FILE = {
    "name": "file",
    "in": "path",
    "required": True,
    "description": "video.mp4, audio.mp4 for sound only (audio, audio-N), subtitles.vtt for "
    "subtitles (text-N): as the video lists it",
    "schema": {"type": "string", "enum": ["video.mp4", "audio.mp4", "subtitles.vtt"]},
}
IMAGE_FILE = {
    "name": "file",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": ["poster.jpg", "thumbnail.jpg", "storyboard.jpg"]},
}
PLAYLIST = {
    "description": "An HLS playlist",
    "content": {"application/vnd.apple.mpegurl": {"schema": {"type": "string"}}},
}
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
READ: list[dict[str, list[str]]] = [
    {"bearer": []},
    {},
]  # open unless the server requires tokens on reads (VTX_API_OPEN_READS)

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                },
            },
            "request_id": {"type": "string"},
        },
    },
    "UploadRequest": {
        "type": "object",
        "description": "Also accepted: filename for file_name and fileSize for size. Unknown "
        "fields are ignored.",
        "required": ["file_name", "size"],
        "properties": {
            "file_name": {"type": "string", "maxLength": 255, "examples": ["holiday.mp4"]},
            "size": {"type": "integer", "minimum": 1, "description": "Bytes"},
            "content_type": {
                "type": "string",
                "description": "video/*, audio/*, application/octet-stream, or any type for a "
                "file named as a media file (the probe decides what the bytes are); the name's "
                "media type when left out or empty",
                "examples": ["video/mp4"],
            },
            "title": {"type": "string", "maxLength": 200},
            "description": {"type": "string", "maxLength": 5000},
        },
    },
    "Upload": {
        "type": "object",
        "description": "How to send the bytes: one PUT, or the parts of a multipart upload.",
        "required": ["method", "expires_at"],
        "properties": {
            "method": {"enum": ["PUT", "multipart"]},
            "url": {"type": "string", "description": "PUT the whole file here"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "upload_id": {"type": "string"},
            "part_size": {"type": "integer"},
            "part_count": {"type": "integer"},
            "parts": {
                "type": "array",
                "description": "Parts still to send: PUT each part's bytes to its url and keep "
                "the ETag response header",
                "items": {
                    "type": "object",
                    "properties": {
                        "number": {"type": "integer"},
                        "size": {"type": "integer"},
                        "url": {"type": "string"},
                    },
                },
            },
            "uploaded": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "number": {"type": "integer"},
                        "etag": {"type": "string"},
                        "size": {"type": "integer"},
                    },
                },
            },
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
    "Rendition": {
        "type": "object",
        "properties": {
            "phase": {"type": "string"},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "message": {"type": ["string", "null"]},
            "kind": {"type": ["string", "null"]},
            "width": {"type": ["integer", "null"]},
            "height": {"type": ["integer", "null"]},
            "mp4": {
                "type": ["string", "null"],
                "description": "Link to the MP4 (to the WebVTT file, for subtitles)",
            },
            "language": {
                "type": ["string", "null"],
                "description": "A track's language as the source tags it (audio-N, text-N)",
            },
            "title": {
                "type": ["string", "null"],
                "description": "A track's name as the source tags it (audio-N, text-N)",
            },
        },
    },
    "Video": {
        "type": "object",
        "required": ["id", "status", "progress", "renditions", "playback"],
        "properties": {
            "id": UUID,
            "title": {"type": "string"},
            "description": {"type": "string"},
            "file_name": {"type": "string"},
            "size": {"type": "integer"},
            "content_type": {"type": "string"},
            "status": {
                "enum": ["awaiting_upload", "uploaded", "completed", "failed", "deleted"],
                "description": "Where the upload is (the videos row)",
            },
            "phase": {
                "type": ["string", "null"],
                "description": "Where the transcode is: Pending, Probing, Queued, Transcoding, "
                "Publishing, Ready, Failed, Suspended",
            },
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "renditions": {"type": "object", "additionalProperties": _ref("Rendition")},
            "failure_reason": {
                "type": ["string", "null"],
                "description": "Why the video failed, as a sentence for the person who uploaded "
                "it (for example: This file is an HLS playlist, not a video.)",
            },
            "failure_detail": {
                "type": ["string", "null"],
                "description": "What the tools said, for whoever runs vtx: the condition reason "
                "and ffprobe's, FFmpeg's or a check's words",
            },
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "source": {
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "cid": {"type": ["string", "null"]},
                    "checksum": {"type": ["string", "null"]},
                },
            },
            "cid": {"type": ["string", "null"], "description": "Root CID of the outputs"},
            "images": {
                "type": ["object", "null"],
                "description": (
                    "The video's still images, once the rendition that makes them succeeded"
                    " (null for sound only). JPEGs as signed URLs a browser loads without a"
                    " token; the storyboard's WebVTT cues through the API."
                ),
                "properties": {
                    "poster": {"type": "string", "description": "Up to 720 px on the short side"},
                    "thumbnail": {"type": "string", "description": "180 px on the short side"},
                    "storyboard": {"type": "string", "description": "The sprite sheet"},
                    "storyboard_vtt": {
                        "type": "string",
                        "description": "WebVTT cues pointing into the sheet with #xywh=",
                    },
                },
            },
            "playback": {
                "type": "object",
                "properties": {
                    "hls": {"type": ["string", "null"], "description": "Master playlist"},
                    "ipfs": {"type": ["string", "null"], "description": "Through the gateway"},
                },
            },
        },
    },
    "NewVideo": {
        "allOf": [
            _ref("Video"),
            {
                "type": "object",
                "required": ["video_id", "s3_path", "upload"],
                "properties": {
                    "video_id": UUID,
                    "presigned_url": {
                        "type": ["string", "null"],
                        "description": "The PUT URL (null for a multipart upload)",
                    },
                    "s3_path": {"type": "string"},
                    "upload": _ref("Upload"),
                },
            },
        ]
    },
    "CompleteRequest": {
        "type": "object",
        "properties": {
            "parts": {
                "type": "array",
                "description": "For a multipart upload: every part with its ETag",
                "items": {
                    "type": "object",
                    "required": ["number", "etag"],
                    "properties": {
                        "number": {"type": "integer", "minimum": 1, "maximum": 10000},
                        "etag": {"type": "string"},
                    },
                },
            }
        },
    },
    "Progress": {
        "type": "object",
        "properties": {
            "video_id": UUID,
            "status": {"type": "string"},
            "phase": {"type": ["string", "null"]},
            "progress": {"type": "integer"},
            "renditions": {"type": "object"},
            "failure_reason": {"type": ["string", "null"]},
            "failure_detail": {"type": ["string", "null"]},
        },
    },
    "WebhookRequest": {
        "type": "object",
        "required": ["url", "event_types"],
        "properties": {
            "url": {
                "type": "string",
                "maxLength": 2048,
                "description": "http or https; not a private, loopback or link-local address"
                " unless the server allows them (VTX_WEBHOOK_ALLOW_PRIVATE)",
            },
            "event_types": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"type": "string", "enum": list(EVENT_TYPES)},
            },
        },
    },
    "Webhook": {
        "type": "object",
        "properties": {
            "id": UUID,
            "url": {"type": "string"},
            "event_types": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "NewWebhook": {
        "allOf": [
            _ref("Webhook"),
            {
                "type": "object",
                "properties": {
                    "secret": {
                        "type": "string",
                        "description": "The signing secret (whsec_...), shown this once: verify"
                        " each delivery's webhook-signature with it (Standard Webhooks)",
                    }
                },
            },
        ]
    },
    "Delivery": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "The webhook-id header of each try"},
            "event_type": {"type": "string"},
            "video_id": {"type": ["string", "null"]},
            "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
            "attempts": {"type": "integer"},
            "last_status": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]},
            "created_at": {"type": "string"},
            "delivered_at": {"type": ["string", "null"]},
            "next_attempt_at": {"type": ["string", "null"]},
        },
    },
}


_BY_ID = {"video_id": "$response.body#/id"}
# What a client can do next with the id a new upload answers with.
NEW_VIDEO_LINKS = {
    name: {"operationId": op, "parameters": _BY_ID}
    for name, op in [
        ("GetVideo", "getVideo"), ("GetUpload", "getUpload"), ("CompleteUpload", "completeUpload"),
        ("PutSource", "putSource"), ("GetProgress", "getProgress"), ("DeleteVideo", "deleteVideo"),
        ("PlayMaster", "playMaster"),
    ]
}  # fmt: skip


def _upload_operation(summary: str, operation_id: str) -> dict[str, Any]:
    created = _json(_ref("NewVideo"), "The video row and how to upload its bytes")
    created["links"] = NEW_VIDEO_LINKS
    return {
        "summary": summary,
        "operationId": operation_id,
        "security": SECURED,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("UploadRequest")}},
        },
        "responses": {
            "201": created,
            **_errors(400, 401, 413, 415, 503),
        },
    }


def openapi_document(server_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/videos": {
            "post": _upload_operation("Announce an upload", "createUpload"),
            "get": {
                "summary": "List videos, newest first",
                "operationId": "listVideos",
                "security": READ,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "videos": {"type": "array", "items": _ref("Video")},
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        },
                        "A page of videos",
                    ),
                    **_errors(400, 401, 503),
                },
            },
        },
        "/upload/video": {
            "post": _upload_operation("Announce an upload (original path)", "uploadVideo")
        },
        "/v1/videos/{video_id}": {
            "parameters": [VIDEO_ID],
            "get": {
                "summary": "One video: phase, renditions, playback links",
                "operationId": "getVideo",
                "security": READ,
                "responses": {"200": _json(_ref("Video"), "The video"), **_errors(401, 404, 503)},
            },
            "delete": {
                "summary": "Delete the video's transcode (its deletionPolicy decides the outputs)",
                "operationId": "deleteVideo",
                "security": SECURED,
                "responses": {
                    "202": _json({"type": "object"}, "Deleted"),
                    **_errors(401, 404, 503),
                },
            },
        },
        "/v1/videos/{video_id}/upload": {
            "parameters": [VIDEO_ID],
            "get": {
                "summary": "Parts already uploaded, and fresh URLs for the missing ones",
                "operationId": "getUpload",
                "security": SECURED,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "id": UUID,
                                "status": {"type": "string"},
                                "size": {"type": "integer"},
                                "upload": {"anyOf": [_ref("Upload"), {"type": "null"}]},
                            },
                        },
                        "The upload's state",
                    ),
                    **_errors(401, 404, 409, 503),
                },
            },
        },
        "/v1/videos/{video_id}/complete": {
            "parameters": [VIDEO_ID],
            "post": {
                "summary": "The bytes are uploaded: start the transcode",
                "operationId": "completeUpload",
                "security": SECURED,
                "requestBody": {
                    "content": {"application/json": {"schema": _ref("CompleteRequest")}}
                },
                "responses": {
                    "202": _json(_ref("Video"), "Transcode requested (or already was)"),
                    **_errors(400, 401, 404, 409, 415, 422, 503),
                },
            },
        },
        "/v1/videos/{video_id}/source": {
            "parameters": [VIDEO_ID],
            "put": {
                "summary": "Upload the bytes through the API (streamed to storage)",
                "operationId": "putSource",
                "security": SECURED,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                "responses": {
                    "202": _json(_ref("Video"), "Stored; transcode requested"),
                    **_errors(401, 404, 409, 413, 422, 503),
                },
            },
        },
        "/v1/videos/{video_id}/play/master.m3u8": {
            "parameters": [VIDEO_ID],
            "get": {
                "summary": "HLS master playlist (while transcoding: the renditions with segments)",
                "operationId": "playMaster",
                "security": READ,
                "responses": {"200": PLAYLIST, **_errors(401, 404, 503)},
            },
        },
        "/v1/videos/{video_id}/play/{rendition}/hls/index.m3u8": {
            "parameters": [VIDEO_ID, RENDITION],
            "get": {
                "summary": "A rendition's playlist with signed segment URLs",
                "operationId": "playMedia",
                "security": READ,
                "responses": {"200": PLAYLIST, **_errors(401, 404, 503)},
            },
        },
        "/v1/videos/{video_id}/play/{rendition}/{file}": {
            "parameters": [VIDEO_ID, RENDITION, MP4_FILE],
            "get": {
                "summary": "Redirect to a signed URL of the rendition's MP4",
                "operationId": "playMp4",
                "security": READ,
                "responses": {"302": {"description": "To the MP4"}, **_errors(401, 404, 503)},
            },
        },
        "/v1/videos/{video_id}/play/images/storyboard.vtt": {
            "parameters": [VIDEO_ID],
            "get": {
                "summary": "The storyboard's cues, each pointing at a signed URL of the sheet",
                "operationId": "playStoryboard",
                "security": READ,
                "responses": {
                    "200": {
                        "description": "WebVTT, one cue per tile (#xywh=x,y,w,h)",
                        "content": {"text/vtt": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 404, 503),
                },
            },
        },
        "/v1/videos/{video_id}/play/images/{file}": {
            "parameters": [VIDEO_ID, IMAGE_FILE],
            "get": {
                "summary": "Redirect to a signed URL of the poster, thumbnail or storyboard sheet",
                "operationId": "playImage",
                "security": READ,
                "responses": {"302": {"description": "To the image"}, **_errors(401, 404, 503)},
            },
        },
        "/video/{video_id}/progress": {
            "parameters": [VIDEO_ID],
            "get": {
                "summary": "Progress of a video (original polling endpoint)",
                "operationId": "getProgress",
                "security": READ,
                "responses": {
                    "200": _json(_ref("Progress"), "Progress"),
                    **_errors(401, 404, 503),
                },
            },
        },
        "/v1/webhooks": {
            "post": {
                "summary": "Register a webhook for the caller's videos; answers its secret once",
                "operationId": "registerWebhook",
                "security": SECURED,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("WebhookRequest")}},
                },
                "responses": {
                    "201": _json(_ref("NewWebhook"), "The webhook, with its signing secret"),
                    "409": _json(_ref("Error"), "The owner has as many webhooks as allowed"),
                    **_errors(400, 401, 413, 415, 503),
                },
            },
            "get": {
                "summary": "The caller's webhooks (without their secrets)",
                "operationId": "listWebhooks",
                "security": SECURED,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"webhooks": {"type": "array", "items": _ref("Webhook")}},
                        },
                        "The webhooks",
                    ),
                    **_errors(401, 503),
                },
            },
        },
        "/v1/webhooks/{endpoint_id}": {
            "parameters": [ENDPOINT_ID],
            "delete": {
                "summary": "Remove a webhook and its delivery log",
                "operationId": "deleteWebhook",
                "security": SECURED,
                "responses": {
                    "204": {"description": "Removed"},
                    "404": _json(_ref("Error"), "No such webhook of the caller's"),
                    **_errors(401, 503),
                },
            },
        },
        "/v1/webhooks/{endpoint_id}/deliveries": {
            "parameters": [ENDPOINT_ID],
            "get": {
                "summary": "A webhook's deliveries, newest first",
                "operationId": "webhookDeliveries",
                "security": SECURED,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "deliveries": {"type": "array", "items": _ref("Delivery")}
                            },
                        },
                        "The deliveries",
                    ),
                    "404": _json(_ref("Error"), "No such webhook of the caller's"),
                    **_errors(400, 401, 503),
                },
            },
        },
        "/ws": {
            "get": {
                "summary": "WebSocket of status events (see the API docs for its messages)",
                "operationId": "statusSocket",
                "security": SECURED,
                "responses": {
                    "101": {"description": "Switching to the WebSocket protocol"},
                    **_errors(400, 401),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "responses": {"200": _json({"type": "object"}, "Alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: database, storage, Kubernetes and Pulsar reachable",
                "operationId": "readyz",
                "responses": {
                    "200": _json({"type": "object"}, "Ready"),
                    "503": _json({"type": "object"}, "Not ready; checks says why"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This description",
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vtx",
            "version": package_version(),
            "description": "Upload videos; get MP4 and HLS renditions in S3 and IPFS, with live "
            "progress. Reads of a single video and playback are open when the server allows "
            "open reads; everything else needs a bearer token.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
