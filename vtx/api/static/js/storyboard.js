// Storyboards: the WebVTT file whose cues each name a tile of a sprite sheet
// (`<sheet URL>#xywh=x,y,w,h`) for a span of the video, read into plain objects.

import { apiUrl, authHeaders } from "./api.js";

// hh:mm:ss.mmm or mm:ss.mmm (hours may have more than two digits).
const TIMESTAMP = /^(?:(\d+):)?([0-5]\d):([0-5]\d)\.(\d{3})$/;
// A media fragment's spatial part, in pixels (the unit may be named; percent is not used).
const XYWH = /^xywh=(?:pixel:)?(\d+),(\d+),(\d+),(\d+)$/;

export function parseTimestamp(text) {
  const m = TIMESTAMP.exec(text);
  if (!m) return null;
  const [, h, mm, ss, ms] = m;
  return Number(h || 0) * 3600 + Number(mm) * 60 + Number(ss) + Number(ms) / 1000;
}

// The cues of a storyboard VTT, by start time: {start, end, url, x, y, w, h}, `url` being the
// sheet's address without its fragment, resolved against `base`. Cues without a readable time
// range or a pixel tile are left out; a text that is not WebVTT is an error.
export function parseStoryboard(text, base = document.baseURI) {
  const lines = text.replace(/^\uFEFF/, "").split(/\r\n|\r|\n/);
  if (!/^WEBVTT(?:[ \t].*)?$/.test(lines[0] || "")) throw new Error("not a WebVTT file");
  const cues = [];
  let i = 1;
  while (i < lines.length) {
    // A block: lines up to the next blank one.
    const block = [];
    while (i < lines.length && lines[i].trim() === "") i += 1;
    while (i < lines.length && lines[i].trim() !== "") block.push(lines[i++]);
    const timing = block.findIndex((line) => line.includes("-->"));
    if (timing < 0 || timing > 1) continue; // NOTE, STYLE, REGION, or no cue
    const [from, rest = ""] = block[timing].split("-->");
    const start = parseTimestamp(from.trim());
    const end = parseTimestamp(rest.trim().split(/[ \t]+/)[0]);
    const payload = block.slice(timing + 1).join("").trim();
    if (start === null || end === null || end <= start || !payload) continue;
    const hash = payload.indexOf("#");
    const tile = hash < 0 ? null : XYWH.exec(payload.slice(hash + 1));
    if (!tile) continue;
    const [x, y, w, h] = tile.slice(1).map(Number);
    if (!w || !h) continue;
    // An absolute address is kept as written (a signature must not be re-encoded).
    const address = payload.slice(0, hash);
    let url = address;
    if (!/^[a-z][a-z0-9+.-]*:/i.test(address)) {
      try {
        url = new URL(address, base).href;
      } catch {
        continue;
      }
    }
    cues.push({ start, end, url, x, y, w, h });
  }
  return cues.sort((a, b) => a.start - b.start);
}

// The cue shown at `time` (start ≤ time < end; the last cue also at its end), or null.
export function cueAt(cues, time) {
  let lo = 0;
  let hi = cues.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const cue = cues[mid];
    if (time < cue.start) hi = mid - 1;
    else if (time >= cue.end) lo = mid + 1;
    else return cue;
  }
  const last = cues[cues.length - 1];
  return last && time === last.end ? last : null;
}

// Fetch and read a storyboard. It is an API URL: it gets the token as the API's playlists do
// (only the API's own addresses do; the sheets are signed storage URLs and need none).
export async function loadStoryboard(url, { signal } = {}) {
  const headers = url.startsWith(apiUrl("v1/")) ? authHeaders() : {};
  const response = await fetch(url, { headers: { Accept: "text/vtt", ...headers }, signal });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return parseStoryboard(await response.text(), response.url || url);
}
