// The list of videos, newest first, kept current by status events (no polling).

import { api, ApiError, sameObject } from "./api.js";
import { announce, el, setText, show } from "./dom.js";
import { bytes, percent, when } from "./format.js";

const PAGE = 20;
const FINAL = new Set(["Ready", "Failed"]);
// Jobrunner event phases, and the rendition phase the API shows for each.
const EVENT_PHASE = {
  starting: "Running",
  encoding: "Running",
  uploading: "Uploading",
  done: "Succeeded",
  failed: "Failed",
  retrying: "Running",
  interrupted: "Running",
};
const PHASE_WORDS = {
  Pending: "waiting",
  Running: "encoding",
  Uploading: "uploading",
  Succeeded: "done",
  Failed: "failed",
};
const STATUS_WORDS = {
  awaiting_upload: "Awaiting upload",
  uploaded: "Uploaded",
  completed: "Ready",
  failed: "Failed",
};
// The row can lag the event that announced a final phase by a moment: read it again.
const REFETCH_TRIES = 5;
const HLS_REFETCH_MS = 5000;
// The images come with the first video rendition: its "done" event makes the page read the
// video again until the row has them (the row can lag the event), at most this many times.
const IMAGE_TRIES = 4;
// The thumbnail's box (16:9; other shapes are fitted inside it), so rows keep their height.
const THUMB_W = 128;
const THUMB_H = 72;

function newerFirst(a, b) {
  const ta = Date.parse(a.created_at) || 0;
  const tb = Date.parse(b.created_at) || 0;
  if (ta !== tb) return tb - ta;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

// As the operator sums it up: the mean of the renditions, short of 100 until all are done.
function overallProgress(renditions) {
  const values = Object.values(renditions).map((r) =>
    r.phase === "Succeeded" ? 100 : percent(r.progress));
  if (!values.length) return 0;
  return Math.min(99, Math.round(values.reduce((a, b) => a + b, 0) / values.length));
}

export class VideoList {
  constructor({ onPlay, onChange }) {
    this.onPlay = onPlay;
    this.onChange = onChange;
    this.videos = new Map();
    this.items = new Map();
    this.fetching = new Map();
    this.hlsAsked = new Map();
    this.imagesAsked = new Set();
    this.nextCursor = null;
    this.selected = null;
    this.root = document.getElementById("video-list");
    this.empty = document.getElementById("list-empty");
    this.count = document.getElementById("list-count");
    this.error = document.getElementById("list-error");
    this.more = document.getElementById("load-more");
    this.more.addEventListener("click", () => this.loadPage(this.nextCursor));
  }

  async reload() {
    for (const item of this.items.values()) item.root.remove();
    this.videos.clear();
    this.items.clear();
    this.nextCursor = null;
    await this.loadPage(null);
  }

  async loadPage(cursor) {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    this.more.disabled = true;
    this.root.setAttribute("aria-busy", "true");
    try {
      const page = await api.get(`v1/videos?${query}`);
      show(this.error, false);
      for (const video of page.videos) this.upsert(video);
      this.nextCursor = page.next_cursor;
    } catch (err) {
      this.showError(err);
    } finally {
      this.root.removeAttribute("aria-busy");
      this.more.disabled = false;
      show(this.more, Boolean(this.nextCursor));
      this.updateCount();
    }
  }

  showError(err) {
    setText(this.error, err.message);
    show(this.error, true);
  }

  get(id) {
    return this.videos.get(id) || null;
  }

  // A video as the API describes it (GET /v1/videos/{id}, snapshots, upload answers).
  upsert(video) {
    if (!video || !video.id || video.status === "deleted") return;
    this.videos.set(video.id, video);
    let item = this.items.get(video.id);
    if (!item) {
      item = this.build(video.id);
      this.items.set(video.id, item);
      this.place(video, item.root);
    }
    this.patch(item, video);
    this.updateCount();
    this.onChange(video);
  }

  remove(id) {
    this.items.get(id)?.root.remove();
    this.items.delete(id);
    this.videos.delete(id);
    this.updateCount();
  }

  place(video, node) {
    for (const other of this.root.children) {
      const known = this.videos.get(other.dataset.id);
      if (known && newerFirst(video, known) < 0) {
        this.root.insertBefore(node, other);
        return;
      }
    }
    this.root.append(node);
  }

  updateCount() {
    const n = this.videos.size;
    setText(this.count, n === 1 ? "1 shown" : `${n} shown`);
    show(this.empty, n === 0 && !this.error.textContent);
  }

  // One status event: the video's own phase (rendition null) or a rendition's progress.
  applyStatus(event) {
    const video = this.videos.get(event.video_id);
    if (!video) {
      this.refetch(event.video_id);
      return;
    }
    if (event.rendition === null || event.rendition === undefined) {
      const before = video.phase;
      video.phase = event.phase;
      video.progress = percent(event.progress);
      if (event.message && event.phase === "Failed") video.failure_reason ||= event.message;
      if (FINAL.has(event.phase)) {
        if (before !== event.phase) this.announceFinal(video, event);
        this.refetch(video.id, event.phase);
      }
    } else {
      const renditions = video.renditions || (video.renditions = {});
      const entry = renditions[event.rendition] || (renditions[event.rendition] = {});
      // A split video's ranges report apart: the rendition is as far as its ranges together.
      const split = Number.isInteger(event.parts) && event.parts > 1;
      let progress = percent(event.progress);
      let phase = event.phase;
      if (split) {
        const parts = entry.parts || (entry.parts = {});
        parts[event.part] = { progress, phase };
        const heard = Object.values(parts);
        progress = heard.reduce((sum, p) => sum + p.progress, 0) / event.parts;
        const done = heard.length === event.parts && heard.every((p) => p.phase === "done");
        phase = done ? "done" : "encoding";
      } else {
        delete entry.parts;
      }
      entry.phase = EVENT_PHASE[phase] || entry.phase || "Running";
      entry.event_phase = phase;
      entry.progress = progress;
      entry.message = event.message || null;
      if (video.phase === "Transcoding") video.progress = overallProgress(renditions);
      if (!video.playback?.hls && ["encoding", "uploading", "done"].includes(event.phase)) {
        this.askForPlayback(video.id);
      }
      if (!split && event.phase === "done" && !video.images && !/^(audio|text-)/.test(event.rendition)) {
        this.askForImages(video.id);
      }
    }
    const item = this.items.get(video.id);
    if (item) this.patch(item, video);
    this.onChange(video);
  }

  announceFinal(video, event) {
    const name = `“${video.title || video.file_name}”`;
    if (event.phase === "Ready") announce(`${name} is ready to play.`);
    else announce(`${name} failed${event.message ? `: ${event.message}` : "."}`);
  }

  // The playback link appears once a rendition has started; read it once the events say so.
  askForPlayback(id) {
    const last = this.hlsAsked.get(id) || 0;
    if (Date.now() - last < HLS_REFETCH_MS) return;
    this.hlsAsked.set(id, Date.now());
    this.refetch(id);
  }

  // A video rendition is done, so the images are made or about to be: read the video until it
  // has them (after 1, 2, 4 and 8 s), or until it is final (that read brings them anyway).
  askForImages(id, tries = 0) {
    if (tries === 0 && this.imagesAsked.has(id)) return;
    this.imagesAsked.add(id);
    setTimeout(async () => {
      await this.refetch(id);
      const video = this.videos.get(id);
      if (!video || video.images || FINAL.has(video.phase)) return;
      if (tries + 1 < IMAGE_TRIES) this.askForImages(id, tries + 1);
    }, 1000 * 2 ** tries);
  }

  // GET the video again; when an event announced a final phase the row has not caught up with
  // yet, keep the announced phase and read again shortly (a few times, then trust the row).
  refetch(id, expected = null, tries = 0) {
    if (this.fetching.has(id) && !expected) return this.fetching.get(id);
    const job = (async () => {
      try {
        const fresh = await api.get(`v1/videos/${encodeURIComponent(id)}`);
        if (expected && fresh.phase !== expected && tries + 1 < REFETCH_TRIES) {
          const known = this.videos.get(id);
          this.upsert({ ...fresh, phase: expected, failure_reason: fresh.failure_reason
            || known?.failure_reason || null });
          setTimeout(() => this.refetch(id, expected, tries + 1), 500 * 2 ** tries);
        } else {
          this.upsert(fresh);
        }
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) this.remove(id);
      } finally {
        this.fetching.delete(id);
      }
    })();
    this.fetching.set(id, job);
    return job;
  }

  select(id) {
    this.selected = id;
    for (const [key, item] of this.items) item.root.classList.toggle("selected", key === id);
  }

  build(id) {
    const titleId = `title-${id}`;
    const title = el("h3", { class: "video-title", id: titleId });
    const badge = el("span", { class: "badge" });
    const meta = el("p", { class: "video-meta" });
    const renditions = el("ul", { class: "renditions", "aria-label": "Renditions" });
    // Why it failed in words; what the tools said under a disclosure, for whoever runs vtx.
    const failureText = el("p", { class: "failure-reason" });
    const detailText = el("code");
    const detail = el("details", { class: "failure-detail", hidden: true }, [
      el("summary", { text: "Technical detail" }),
      detailText,
    ]);
    const failure = el("div", { class: "failure error", hidden: true }, [failureText, detail]);
    // A thumbnail once the video has one; a placeholder of the same size until then (or for
    // good: audio has none).
    const thumb = el("div", { class: "thumb", "data-state": "none" }, [
      el("span", { class: "thumb-label", "aria-hidden": "true", text: "Audio" }),
    ]);
    const play = el("button", {
      type: "button",
      class: "play",
      "aria-describedby": titleId,
      text: "Play",
      onclick: () => this.onPlay(id),
    });
    const root = el("li", { class: "video", id: `video-${id}`, "data-id": id }, [
      thumb,
      el("div", { class: "video-body" }, [
        el("div", { class: "video-head" }, [title, badge]),
        meta,
        renditions,
        failure,
        el("div", { class: "video-actions" }, [play]),
      ]),
    ]);
    return {
      root, title, badge, meta, renditions, failure, failureText, detail, detailText, play,
      thumb, img: null, rows: new Map(),
    };
  }

  patch(item, video) {
    const phase = video.phase || null;
    const entries = Object.entries(video.renditions || {});
    const degraded = phase === "Ready" && entries.some(([, r]) => r.phase === "Failed");
    item.root.dataset.phase = phase || "";
    item.root.dataset.status = video.status || "";
    setText(item.title, video.title || video.file_name || video.id);
    const parts = [video.file_name, bytes(video.size), when(video.created_at)];
    setText(item.meta, parts.filter(Boolean).join(" · "));

    let label = phase || STATUS_WORDS[video.status] || video.status || "";
    if (phase === "Transcoding" || phase === "Publishing") label += ` ${percent(video.progress)}%`;
    if (degraded) label += " · degraded";
    setText(item.badge, label);
    item.badge.dataset.phase = phase || video.status || "";

    for (const [name, r] of entries) this.patchRendition(item, name, r);
    this.patchThumb(item, video, entries);

    const reason = video.failure_reason || (phase === "Failed" ? "the transcode failed" : "");
    setText(item.failureText, reason ? `Failed: ${reason}` : "");
    show(item.failure, Boolean(reason));
    setText(item.detailText, video.failure_detail || "");
    show(item.detail, Boolean(video.failure_detail));

    const playable = Boolean(video.playback?.hls || video.playback?.ipfs);
    // Offered (disabled) while a transcode may still make it playable; gone when none will.
    show(item.play, playable || (phase !== "Failed" && video.status !== "awaiting_upload"));
    item.play.disabled = !playable;
    item.play.title = playable ? "" : "Playable once the first segments are transcoded";
  }

  patchThumb(item, video, entries) {
    const url = video.images?.thumbnail || null;
    if (!url) {
      item.img?.remove();
      item.img = null;
      const audio = entries.length > 0 && entries.every(([, r]) => r.kind === "audio");
      item.thumb.dataset.state = audio ? "audio" : "none";
      return;
    }
    if (!item.img) {
      const img = el("img", {
        class: "thumb-img", width: THUMB_W, height: THUMB_H, loading: "lazy", decoding: "async",
        alt: "",
      });
      // A thumbnail that does not load leaves the placeholder, never a broken image.
      img.addEventListener("load", () => {
        if (item.img === img) item.thumb.dataset.state = "image";
      });
      img.addEventListener("error", () => {
        if (item.img === img) item.thumb.dataset.state = "broken";
      });
      item.img = img;
      item.thumb.append(img);
    }
    // A fresh signature of the same object would only load it again; a broken one is retried.
    const src = item.img.getAttribute("src");
    if (!sameObject(src, url) || (item.thumb.dataset.state === "broken" && src !== url)) {
      item.thumb.dataset.state = "loading";
      item.img.src = url;
    }
    item.img.alt = `Thumbnail of ${video.title || video.file_name || "the video"}`;
  }

  patchRendition(item, name, r) {
    let row = item.rows.get(name);
    if (!row) {
      const nameId = `r-${item.root.dataset.id}-${name}`;
      row = {
        root: el("li", { class: "rendition", "data-rendition": name }),
        name: el("span", { class: "r-name", id: nameId, text: name }),
        bar: el("progress", { max: "100", value: "0", "aria-labelledby": nameId }),
        state: el("span", { class: "r-state" }),
        message: el("p", { class: "r-message", hidden: true }),
      };
      row.root.append(row.name, row.bar, row.state, row.message);
      item.rows.set(name, row);
      item.renditions.append(row.root);
    }
    const value = r.phase === "Succeeded" ? 100 : percent(r.progress);
    row.root.dataset.phase = r.phase || "Pending";
    if (Number(row.bar.value) !== value) row.bar.value = value;
    const words = r.event_phase || PHASE_WORDS[r.phase] || (r.phase || "waiting").toLowerCase();
    setText(row.state, r.phase === "Succeeded" ? "done" : `${words} · ${value}%`);
    setText(row.message, r.message || "");
    show(row.message, Boolean(r.message));
  }
}
