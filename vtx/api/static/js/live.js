// Live status over the API's WebSocket: subscribe to every video, hand each message on,
// reconnect with capped exponential backoff (with jitter) when the socket drops.

import { apiUrl, token, tokenRefusal } from "./api.js";

const BASE_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;
// The server sends a heartbeat every few seconds (15 s by default): a socket silent for much
// longer than that is dead even if the browser has not noticed.
const SILENCE_MS = 45000;

export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

function socketUrl() {
  const url = new URL(apiUrl("ws"));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

export class LiveStatus {
  // onMessage(msg) gets every parsed server message; onState(state, text) the connection's
  // state: needs-token, connecting, live, waiting (to reconnect) or refused (by the token).
  constructor({ onMessage, onState }) {
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.silenceTimer = null;
    this.generation = 0;
    window.addEventListener("online", () => {
      if (this.retryTimer) this.restart();
    });
  }

  restart() {
    this.stop();
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.generation += 1;
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    this.retryTimer = null;
    if (this.ws) {
      this.ws.onopen = this.ws.onmessage = this.ws.onclose = this.ws.onerror = null;
      this.ws.close(1000, "closed by the page");
      this.ws = null;
    }
  }

  connect() {
    const secret = token.get();
    if (!secret) {
      this.onState("needs-token", "Enter the API token to see live status");
      return;
    }
    const generation = this.generation;
    let ws;
    try {
      ws = new WebSocket(socketUrl(), ["vtx.v1", `bearer.${secret}`]);
    } catch {
      this.onState("refused", "The API token has characters a WebSocket cannot carry");
      return;
    }
    this.ws = ws;
    let opened = false;
    this.onState("connecting", this.attempt ? "Reconnecting…" : "Connecting…");
    ws.onopen = () => {
      opened = true;
      this.onState("live", "Live");
      ws.send(JSON.stringify({ type: "subscribe", all: true }));
      this.heard();
    };
    ws.onmessage = (event) => {
      this.heard();
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg.type === "snapshot") this.attempt = 0;
      this.onMessage(msg);
    };
    ws.onclose = async (event) => {
      if (generation !== this.generation) return;
      this.ws = null;
      clearTimeout(this.silenceTimer);
      if (!opened) {
        const refusal = await tokenRefusal();
        if (generation !== this.generation) return;
        if (refusal) {
          this.onState("refused", refusal);
          return;
        }
      }
      this.scheduleRetry(event.code === 4008 ? "Fell behind; catching up" : "Disconnected");
    };
  }

  heard() {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      if (this.ws) this.ws.close(4000, "no heartbeat");
    }, SILENCE_MS);
  }

  scheduleRetry(reason) {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.onState("waiting", `${reason}; reconnecting in ${Math.max(1, Math.round(delay / 1000))} s`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }
}
