// The player: HLS through hls.js (or the browser's own HLS when it has no MSE), from storage
// (the API's signed playlists) or from the IPFS gateway, with a rendition switcher; the video's
// poster, and a scrub bar that previews the storyboard's tiles.
//
// hls.js errors are shown in words and kept on the section for tests and bug reports:
// data-fatal-error="<type>/<details>" once playback has stopped for good. data-storyboard says
// where the storyboard is: none, loading, ready or failed (then the console says why).

import Hls from "../vendor/hls.min.mjs";
import { apiUrl, authHeaders, sameObject } from "./api.js";
import { el, setText, show } from "./dom.js";
import { Scrub } from "./scrub.js";
import { loadStoryboard } from "./storyboard.js";

const NOT_READY_RETRY_MS = 3000;
const NOT_READY_TRIES = 60;
const HLS_TYPE = "application/vnd.apple.mpegurl";

function levelLabel(level) {
  const rate = level.bitrate ? ` · ${(level.bitrate / 1e6).toFixed(1)} Mb/s` : "";
  if (level.height) return `${level.height}p${rate}`;
  return `${level.name || "audio"}${rate}`;
}

// A track as the master names it: its NAME, and its LANGUAGE when that adds something.
function trackLabel(track, index, what) {
  const name = track.name || `${what} ${index + 1}`;
  return track.lang && track.lang !== name ? `${name} (${track.lang})` : name;
}

function audioLabel(track, index) {
  return trackLabel(track, index, "Audio");
}

function describe(data) {
  const code = data.response?.code;
  const where = data.url ? new URL(data.url).host : "the server";
  switch (data.details) {
    case Hls.ErrorDetails.MANIFEST_LOAD_ERROR:
    case Hls.ErrorDetails.LEVEL_LOAD_ERROR:
      return code
        ? `The playlist could not be loaded: ${where} answered ${code}.`
        : `The playlist could not be loaded from ${where}: the connection failed.`;
    case Hls.ErrorDetails.MANIFEST_LOAD_TIMEOUT:
    case Hls.ErrorDetails.LEVEL_LOAD_TIMEOUT:
      return `The playlist took too long to arrive from ${where}.`;
    case Hls.ErrorDetails.MANIFEST_PARSING_ERROR:
      return "The playlist is not one this player can read.";
    case Hls.ErrorDetails.FRAG_LOAD_ERROR:
    case Hls.ErrorDetails.FRAG_LOAD_TIMEOUT:
      return code
        ? `A segment could not be loaded: ${where} answered ${code}.`
        : `A segment could not be loaded from ${where}.`;
    case Hls.ErrorDetails.MANIFEST_INCOMPATIBLE_CODECS_ERROR:
      return "This browser cannot play the video's codecs.";
    case Hls.ErrorDetails.BUFFER_APPEND_ERROR:
    case Hls.ErrorDetails.BUFFER_ADD_CODEC_ERROR:
      return "The browser refused the video data (its decoder does not accept it).";
    default:
      return `Playback stopped (${data.type}: ${data.details}).`;
  }
}

const MEDIA_ERRORS = {
  1: "Playback was aborted.",
  2: "A network error stopped playback.",
  3: "The browser could not decode the video.",
  4: "The browser cannot play this video.",
};

export class Player {
  constructor() {
    this.root = document.getElementById("player");
    this.media = document.getElementById("video");
    this.title = document.getElementById("player-title");
    this.status = document.getElementById("player-status");
    this.error = document.getElementById("player-error");
    this.quality = document.getElementById("quality");
    this.audio = document.getElementById("audio-track");
    this.audioField = document.getElementById("audio-field");
    this.subtitles = document.getElementById("subtitle-track");
    this.subtitlesField = document.getElementById("subtitles-field");
    this.cid = document.getElementById("cid");
    this.links = document.getElementById("mp4-links");
    this.sources = [...this.root.querySelectorAll('input[name="source"]')];
    this.video = null;
    this.source = "s3";
    this.hls = null;
    this.retry = null;
    this.notReadyTries = 0;
    this.recovered = false;
    this.scrub = new Scrub(this.media);
    this.poster = null;
    this.storyboard = null;
    this.storyboardAbort = null;

    for (const radio of this.sources) {
      radio.addEventListener("change", () => {
        if (radio.checked) this.switchSource(radio.value);
      });
    }
    this.quality.addEventListener("change", () => {
      if (this.hls) this.hls.currentLevel = Number(this.quality.value);
    });
    this.audio.addEventListener("change", () => {
      if (this.hls) this.hls.audioTrack = Number(this.audio.value);
    });
    this.subtitles.addEventListener("change", () => {
      if (!this.hls) return;
      const index = Number(this.subtitles.value);
      this.hls.subtitleDisplay = index >= 0;
      this.hls.subtitleTrack = index;
    });
    this.media.addEventListener("playing", () => {
      this.setState("playing");
      this.say(this.playingText());
    });
    this.media.addEventListener("waiting", () => this.say("Buffering…"));
    this.media.addEventListener("ended", () => this.say("Ended."));
    this.media.addEventListener("error", () => {
      const err = this.media.error;
      if (!err) return;
      this.root.dataset.mediaError = String(err.code);
      this.fail(MEDIA_ERRORS[err.code] || `The browser stopped playback (${err.message}).`);
    });
  }

  get engine() {
    // hls.js whenever MSE is there, even where the browser plays HLS itself: one behaviour
    // everywhere, and the rendition switcher works.
    if (Hls.isSupported()) return "hls.js";
    if (this.media.canPlayType(HLS_TYPE)) return "native";
    return null;
  }

  open(video) {
    this.video = video;
    this.source = "s3";
    this.notReadyTries = 0;
    for (const radio of this.sources) radio.checked = radio.value === "s3";
    this.poster = null;
    this.media.removeAttribute("poster");
    this.storyboard = null;
    this.scrub.reset();
    this.loadStoryboard(null);
    this.update(video);
    this.load(0);
    this.root.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  // The chosen video changed (events, a refetch): refresh what is shown around the player.
  update(video) {
    if (!this.video || video.id !== this.video.id) return;
    const hadHls = Boolean(this.video.playback?.hls);
    this.video = video;
    setText(this.title, video.title || video.file_name || video.id);
    this.title.classList.remove("muted");
    const ipfs = this.sources.find((r) => r.value === "ipfs");
    ipfs.disabled = !video.playback?.ipfs;
    setText(this.cid, video.cid || "—");
    this.renderLinks(video);
    this.showImages(video.images || null);
    if (!hadHls && video.playback?.hls && this.source === "s3" && !this.hls) this.load(0);
  }

  renderLinks(video) {
    const links = Object.entries(video.renditions || {})
      .filter(([, r]) => r.mp4)
      .map(([name, r]) => el("li", {}, [el("a", { href: r.mp4, text: `${name} MP4` })]));
    const none = el("li", { class: "muted", text: "—" });
    this.links.replaceChildren(...(links.length ? links : [none]));
  }

  // The poster and the storyboard, once the video has them (a transcode makes them with its
  // first video rendition). Their URLs are signed anew on every read: the same object keeps the
  // address it was first shown with.
  showImages(images) {
    const poster = images?.poster || null;
    if (!sameObject(poster, this.poster)) {
      this.poster = poster;
      if (poster) this.media.poster = poster;
      else this.media.removeAttribute("poster");
    }
    const storyboard = images?.storyboard_vtt || null;
    if (!sameObject(storyboard, this.storyboard)) {
      this.storyboard = storyboard;
      this.loadStoryboard(storyboard);
    }
  }

  async loadStoryboard(url) {
    this.storyboardAbort?.abort();
    this.storyboardAbort = null;
    this.scrub.setStoryboard(null);
    if (!url) {
      this.root.dataset.storyboard = "none";
      return;
    }
    const abort = new AbortController();
    this.storyboardAbort = abort;
    this.root.dataset.storyboard = "loading";
    try {
      const cues = await loadStoryboard(url, { signal: abort.signal });
      if (abort.signal.aborted) return;
      if (!cues.length) throw new Error(`${url} has no cue with a tile`);
      this.scrub.setStoryboard(cues);
      this.root.dataset.storyboard = "ready";
    } catch (err) {
      if (abort.signal.aborted) return;
      // The preview is a nicety: without it the bar still seeks.
      console.warn(`No storyboard preview: ${err.message}`);
      this.root.dataset.storyboard = "failed";
    }
  }

  switchSource(source) {
    if (!this.video || source === this.source) return;
    this.source = source;
    this.load(this.media.currentTime || 0);
  }

  url() {
    const playback = this.video?.playback || {};
    return this.source === "ipfs" ? playback.ipfs : playback.hls;
  }

  setState(state) {
    this.root.dataset.state = state;
  }

  say(text) {
    setText(this.status, text);
  }

  fail(message, fatal) {
    if (fatal) this.root.dataset.fatalError = fatal;
    setText(this.error, message);
    show(this.error, true);
    this.setState("error");
    this.say("");
  }

  reset() {
    clearTimeout(this.retry);
    this.retry = null;
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    delete this.root.dataset.fatalError;
    delete this.root.dataset.mediaError;
    show(this.error, false);
    setText(this.error, "");
    this.recovered = false;
    this.quality.replaceChildren(el("option", { value: "-1", text: "Auto" }));
    this.quality.disabled = true;
    this.audio.replaceChildren();
    show(this.audioField, false);
    delete this.root.dataset.audioTrack;
    this.subtitles.replaceChildren();
    show(this.subtitlesField, false);
    delete this.root.dataset.subtitleTrack;
  }

  load(startAt) {
    this.reset();
    const url = this.url();
    this.root.dataset.source = this.source;
    if (!url) {
      this.setState("waiting");
      this.say("Playable once the first segments are transcoded.");
      return;
    }
    const engine = this.engine;
    this.root.dataset.engine = engine || "none";
    if (!engine) {
      this.fail("This browser can play neither HLS nor Media Source Extensions.", "unsupported");
      return;
    }
    this.setState("loading");
    const from = this.source === "ipfs" ? "the IPFS gateway" : "storage";
    this.say(`Loading from ${from}…`);
    if (engine === "native") {
      this.media.src = url;
      this.media.currentTime = startAt;
      this.start();
      return;
    }
    const hls = new Hls({
      startPosition: startAt,
      // Playlists come from the API; send the token when the API wants one for reads. Segment
      // URLs are signed storage URLs and must go out without it.
      xhrSetup: (xhr, target) => {
        const headers = authHeaders();
        if (headers.Authorization && target.startsWith(apiUrl("v1/"))) {
          xhr.open("GET", target, true);
          xhr.setRequestHeader("Authorization", headers.Authorization);
        }
      },
    });
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      this.notReadyTries = 0;
      this.fillLevels();
      this.start();
    });
    hls.on(Hls.Events.LEVELS_UPDATED, () => this.fillLevels());
    hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, () => this.fillAudioTracks());
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => this.fillSubtitleTracks());
    hls.on(Hls.Events.SUBTITLE_TRACK_SWITCH, (_event, data) => {
      this.subtitles.value = String(data.id);
      this.root.dataset.subtitleTrack = String(data.id);
    });
    hls.on(Hls.Events.AUDIO_TRACK_SWITCHED, (_event, data) => {
      this.audio.value = String(data.id);
      this.root.dataset.audioTrack = String(data.id);
      if (!this.media.paused) this.say(this.playingText());
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, () => {
      if (!this.media.paused) this.say(this.playingText());
    });
    hls.on(Hls.Events.ERROR, (_event, data) => this.onHlsError(hls, data));
    hls.loadSource(url);
    hls.attachMedia(this.media);
  }

  start() {
    this.media.play().catch(() => {
      if (this.root.dataset.state !== "error") this.say("Ready: press play to start.");
    });
  }

  fillLevels() {
    const hls = this.hls;
    if (!hls) return;
    const options = [el("option", { value: "-1", text: "Auto" })];
    hls.levels.forEach((level, index) => {
      options.push(el("option", { value: String(index), text: levelLabel(level) }));
    });
    this.quality.replaceChildren(...options);
    this.quality.value = String(hls.manualLevel ?? -1);
    this.quality.disabled = hls.levels.length < 2;
  }

  // A video with several audio tracks (the master's audio group): one choice per track, by
  // the name and language the source gave it.
  fillAudioTracks() {
    const hls = this.hls;
    if (!hls) return;
    const tracks = hls.audioTracks || [];
    this.audio.replaceChildren(
      ...tracks.map((track, index) =>
        el("option", { value: String(index), text: audioLabel(track, index) }),
      ),
    );
    this.audio.value = String(hls.audioTrack);
    show(this.audioField, tracks.length > 1);
  }

  // The master's subtitles: Off (the default: none is marked DEFAULT) or one track.
  fillSubtitleTracks() {
    const hls = this.hls;
    if (!hls) return;
    const tracks = hls.subtitleTracks || [];
    this.subtitles.replaceChildren(
      el("option", { value: "-1", text: "Off" }),
      ...tracks.map((track, index) =>
        el("option", { value: String(index), text: trackLabel(track, index, "Subtitles") }),
      ),
    );
    this.subtitles.value = String(hls.subtitleTrack);
    show(this.subtitlesField, tracks.length > 0);
  }

  playingText() {
    const where = this.source === "ipfs" ? "the IPFS gateway" : "storage";
    const hls = this.hls;
    const level = hls && hls.levels[hls.currentLevel];
    const quality = level ? ` · ${levelLabel(level)}${hls.autoLevelEnabled ? " (auto)" : ""}` : "";
    const tracks = hls?.audioTracks || [];
    const track = tracks.length > 1 ? tracks[hls.audioTrack] : null;
    const sound = track ? ` · ${audioLabel(track, hls.audioTrack)}` : "";
    return `Playing from ${where}${quality}${sound}`;
  }

  onHlsError(hls, data) {
    if (hls !== this.hls || !data.fatal) return; // hls.js recovers from the rest itself
    const code = data.response?.code;
    if (
      data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR &&
      code === 404 &&
      this.source === "s3" &&
      this.notReadyTries < NOT_READY_TRIES
    ) {
      // The transcode has started but no segment is in storage yet.
      this.notReadyTries += 1;
      this.setState("waiting");
      this.say("No segment is ready yet; trying again in a moment…");
      const at = this.media.currentTime || 0;
      this.hls.destroy();
      this.hls = null;
      this.retry = setTimeout(() => this.load(at), NOT_READY_RETRY_MS);
      return;
    }
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !this.recovered) {
      this.recovered = true;
      hls.recoverMediaError();
      return;
    }
    this.fail(describe(data), `${data.type}/${data.details}`);
  }
}
