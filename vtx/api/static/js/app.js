// The dashboard: wires the token, the live status socket, the list, uploads and the player.

import { token } from "./api.js";
import { announce, setText } from "./dom.js";
import { VideoList } from "./list.js";
import { LiveStatus } from "./live.js";
import { Player } from "./player.js";
import { Uploader } from "./upload.js";
import { Webhooks } from "./webhooks.js";

const player = new Player();
const list = new VideoList({
  onPlay(id) {
    const video = list.get(id);
    if (!video) return;
    list.select(id);
    player.open(video);
  },
  onChange(video) {
    player.update(video);
  },
});
const uploader = new Uploader({ list });
const webhooks = new Webhooks();

const connection = document.getElementById("connection");
const connectionText = document.getElementById("connection-text");
const live = new LiveStatus({
  onMessage(msg) {
    if (msg.type === "snapshot") {
      for (const video of msg.videos) list.upsert(video);
    } else if (msg.type === "status") {
      list.applyStatus(msg);
    }
  },
  onState(state, text) {
    connection.dataset.state = state;
    setText(connectionText, text);
  },
});

const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token");
tokenInput.value = token.get();
tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  token.set(tokenInput.value.trim());
  tokenInput.removeAttribute("aria-invalid");
  announce(token.get() ? "API token saved." : "API token removed.");
  live.restart();
  list.reload();
  uploader.renderUnfinished();
  webhooks.reload();
});
document.getElementById("token-forget").addEventListener("click", () => {
  token.set("");
  tokenInput.value = "";
  announce("API token removed from this browser.");
  live.restart();
  uploader.renderUnfinished();
  webhooks.reload();
});

live.connect();
list.reload();
uploader.renderUnfinished();
webhooks.reload();
