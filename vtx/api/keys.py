"""Typed keys of what the app and its requests hold."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vtx.api.caller import Caller
from vtx.api.hub import StatusHub
from vtx.api.services import Services
from vtx.core.bus import StatusReader
from vtx.core.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
READER = web.AppKey("reader", StatusReader)
READY = web.AppKey("ready", dict[str, Any])
SERVICES = web.AppKey("services", Services)
HUB = web.AppKey("hub", StatusHub)
REQUEST_ID = web.RequestKey("request_id", str)
CALLER = web.RequestKey("caller", Caller)
