// The scrub bar under the video: a range input that seeks (by pointer, drag or keyboard), the
// time under the pointer, and, when the video has a storyboard, the tile of that moment.
//
// The preview keeps the time it shows in data-time (seconds), which the browser tests read.

import { setText, show } from "./dom.js";
import { clock } from "./format.js";
import { cueAt } from "./storyboard.js";

// The range's thumb is this wide (style.css): its centre travels from half of it to the bar's
// width less half of it, so that is the span that maps onto the video's duration.
const THUMB_PX = 14;
const KEY_STEP_S = 5;
const KEY_PREVIEW_MS = 1500;

function cssUrl(url) {
  return `url("${url.replace(/["\\\n\r]/g, (c) => encodeURIComponent(c))}")`;
}

export class Scrub {
  constructor(media) {
    this.media = media;
    this.root = document.getElementById("scrub");
    this.bar = document.getElementById("scrub-bar");
    this.clock = document.getElementById("scrub-clock");
    this.preview = document.getElementById("scrub-preview");
    this.tile = document.getElementById("scrub-tile");
    this.time = document.getElementById("scrub-time");
    this.cues = [];
    this.dragging = false;
    this.hovering = false;
    this.keyTimer = null;

    for (const name of ["loadedmetadata", "durationchange", "emptied"]) {
      media.addEventListener(name, () => this.sync());
    }
    media.addEventListener("timeupdate", () => this.follow());
    media.addEventListener("seeked", () => this.follow());

    const bar = this.bar;
    bar.addEventListener("input", () => {
      this.seek(Number(bar.value));
      if (!this.hovering && !this.dragging) this.previewValue();
    });
    bar.addEventListener("pointermove", (event) => {
      this.hovering = true;
      this.showAt(this.timeAt(event.clientX));
    });
    bar.addEventListener("pointerleave", () => {
      this.hovering = false;
      if (!this.dragging) this.hide();
    });
    bar.addEventListener("pointerdown", (event) => {
      if (bar.disabled) return;
      this.dragging = true;
      // Keep the pointer's moves coming while it drags past the bar's ends.
      bar.setPointerCapture?.(event.pointerId);
    });
    const release = () => {
      if (!this.dragging) return;
      this.dragging = false;
      this.follow();
      if (!this.hovering) this.hide();
    };
    bar.addEventListener("pointerup", release);
    bar.addEventListener("pointercancel", release);
    bar.addEventListener("lostpointercapture", release);
    bar.addEventListener("keydown", (event) => this.onKey(event));
    bar.addEventListener("blur", () => {
      if (!this.hovering) this.hide();
    });
  }

  // The video's length as far as it is known: the media element's, or where the storyboard
  // ends while the element has none yet (or a growing one it calls infinite).
  duration() {
    const d = this.media.duration;
    if (Number.isFinite(d) && d > 0) return d;
    const seekable = this.media.seekable;
    if (seekable.length && seekable.end(seekable.length - 1) > 0) {
      return seekable.end(seekable.length - 1);
    }
    return this.cues.length ? this.cues[this.cues.length - 1].end : 0;
  }

  // A video was opened: nothing known about it yet.
  reset() {
    this.cues = [];
    this.dragging = false;
    this.hide();
    this.bar.value = "0";
    show(this.root, true);
    this.sync();
  }

  setStoryboard(cues) {
    this.cues = cues || [];
    this.sync();
    if (!this.preview.hidden) this.showAt(Number(this.preview.dataset.time || 0));
  }

  sync() {
    const max = this.duration();
    this.bar.max = String(max);
    this.bar.disabled = !(max > 0);
    this.follow();
  }

  // The bar and the clock follow playback, except while the bar is dragged.
  follow() {
    const max = this.duration();
    const now = Math.min(this.media.currentTime || 0, max);
    if (!this.dragging) this.bar.value = String(now);
    const at = this.dragging ? Number(this.bar.value) : now;
    setText(this.clock, `${clock(at)} / ${clock(max)}`);
    this.bar.setAttribute("aria-valuetext", `${clock(at)} of ${clock(max)}`);
  }

  seek(time) {
    if (this.media.readyState > 0) this.media.currentTime = time;
    this.follow();
  }

  timeAt(clientX) {
    const rect = this.bar.getBoundingClientRect();
    const travel = rect.width - THUMB_PX;
    if (travel <= 0) return 0;
    const share = (clientX - rect.left - THUMB_PX / 2) / travel;
    return Math.max(0, Math.min(1, share)) * this.duration();
  }

  // Where `time` is on the bar, in pixels from the scrub area's left edge.
  offsetOf(time) {
    const bar = this.bar.getBoundingClientRect();
    const root = this.root.getBoundingClientRect();
    const max = this.duration();
    const share = max > 0 ? time / max : 0;
    return bar.left - root.left + THUMB_PX / 2 + share * (bar.width - THUMB_PX);
  }

  showAt(time) {
    if (!(this.duration() > 0)) {
      this.hide();
      return;
    }
    const cue = cueAt(this.cues, time);
    if (cue) {
      this.tile.style.backgroundImage = cssUrl(cue.url);
      this.tile.style.backgroundPosition = `${-cue.x}px ${-cue.y}px`;
      this.tile.style.width = `${cue.w}px`;
      this.tile.style.height = `${cue.h}px`;
    }
    show(this.tile, Boolean(cue));
    setText(this.time, clock(time));
    this.preview.dataset.time = String(time);
    show(this.preview, true);
    const width = this.preview.offsetWidth;
    const room = this.root.clientWidth - width;
    const left = Math.max(0, Math.min(room, this.offsetOf(time) - width / 2));
    this.preview.style.left = `${left}px`;
  }

  hide() {
    clearTimeout(this.keyTimer);
    show(this.preview, false);
  }

  // The keyboard's position previewed for a moment.
  previewValue() {
    this.showAt(Number(this.bar.value));
    clearTimeout(this.keyTimer);
    this.keyTimer = setTimeout(() => {
      if (!this.hovering && !this.dragging) this.hide();
    }, KEY_PREVIEW_MS);
  }

  // Arrows step 5 s and Page Up/Down a tenth (a range with step="any" would step a hundredth).
  onKey(event) {
    const max = this.duration();
    const steps = {
      ArrowLeft: -KEY_STEP_S,
      ArrowDown: -KEY_STEP_S,
      ArrowRight: KEY_STEP_S,
      ArrowUp: KEY_STEP_S,
      PageDown: -max / 10,
      PageUp: max / 10,
    };
    if (!(event.key in steps) || this.bar.disabled) return;
    event.preventDefault();
    const time = Math.max(0, Math.min(max, Number(this.bar.value) + steps[event.key]));
    this.bar.value = String(time);
    this.seek(time);
    this.previewValue();
  }
}
