// Uploads straight to storage: announce to the API, PUT the bytes to the presigned URL (or the
// parts of a multipart upload, several at a time), complete. A multipart upload survives a
// dropped connection (it resumes by itself a few times) and a reload (its id is remembered;
// choosing the same file again sends only the parts storage does not hold).

import { api, ApiError, token } from "./api.js";
import { announce, el, setText, show } from "./dom.js";
import { bytes, duration, rate, when } from "./format.js";

const PARALLEL_PARTS = 4;
const AUTO_RESUMES = [1000, 3000]; // waits before resuming by itself after a drop
const PENDING_KEY = "vtx.unfinished-uploads";
const SPEED_WINDOW_MS = 6000;
// Where an API error's field is shown.
const FIELD_INPUT = {
  file_name: "drop",
  filename: "drop",
  size: "drop",
  fileSize: "drop",
  content_type: "drop",
  contentType: "drop",
  parts: "drop",
  title: "title",
  description: "description",
  token: "token",
};

export class UploadError extends Error {
  constructor(message, { retryable = false, cancelled = false } = {}) {
    super(message);
    this.name = "UploadError";
    this.retryable = retryable;
    this.cancelled = cancelled;
  }
}

// Unfinished multipart uploads of this browser, by video id.
export const unfinished = {
  all() {
    try {
      const list = JSON.parse(localStorage.getItem(PENDING_KEY) || "[]");
      return Array.isArray(list) ? list.filter((e) => e && typeof e.id === "string") : [];
    } catch {
      return [];
    }
  },
  save(entry) {
    const list = this.all().filter((e) => e.id !== entry.id);
    list.push(entry);
    localStorage.setItem(PENDING_KEY, JSON.stringify(list));
  },
  forget(id) {
    localStorage.setItem(PENDING_KEY, JSON.stringify(this.all().filter((e) => e.id !== id)));
  },
};

function storageError(xhr) {
  let detail = "";
  const doc = xhr.responseXML
    || (xhr.responseText && new DOMParser().parseFromString(xhr.responseText, "application/xml"));
  const code = doc?.querySelector?.("Code")?.textContent;
  const message = doc?.querySelector?.("Message")?.textContent;
  if (code) detail = `: ${code}${message ? ` (${message})` : ""}`;
  // 403 is what an expired presigned URL gets; fresh URLs from the API fix it.
  const retryable = xhr.status >= 500 || xhr.status === 403 || xhr.status === 408;
  return new UploadError(`Storage refused the upload with ${xhr.status}${detail}.`, { retryable });
}

// PUT a blob with XMLHttpRequest (fetch has no upload progress); resolves to the ETag header.
export function putBlob(url, blob, headers, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const onAbort = () => xhr.abort();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(headers || {})) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      signal?.removeEventListener("abort", onAbort);
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.getResponseHeader("ETag"));
      else reject(storageError(xhr));
    };
    xhr.onerror = () => {
      signal?.removeEventListener("abort", onAbort);
      reject(new UploadError("The connection to storage dropped.", { retryable: true }));
    };
    xhr.onabort = () => reject(new UploadError("The upload was cancelled.", { cancelled: true }));
    if (signal?.aborted) {
      reject(new UploadError("The upload was cancelled.", { cancelled: true }));
      return;
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    xhr.send(blob);
  });
}

// Bytes sent, speed over the last few seconds, and time left.
class Meter {
  constructor(total) {
    this.total = total;
    this.base = 0;
    this.live = new Map();
    this.samples = [];
    this.began = performance.now();
  }

  holds(bytesInStorage) {
    this.base = bytesInStorage;
    this.live.clear();
    this.samples = [];
  }

  progress(key, loaded) {
    this.live.set(key, loaded);
    this.sample();
  }

  finish(key, size) {
    this.live.delete(key);
    this.base += size;
    this.sample();
  }

  get sent() {
    let sum = this.base;
    for (const loaded of this.live.values()) sum += loaded;
    return Math.min(sum, this.total);
  }

  sample() {
    const now = performance.now();
    this.samples.push({ t: now, sent: this.sent });
    while (this.samples.length > 2 && now - this.samples[0].t > SPEED_WINDOW_MS) {
      this.samples.shift();
    }
  }

  speed() {
    if (this.samples.length < 2) return null;
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    const span = (last.t - first.t) / 1000;
    return span >= 0.5 ? Math.max(0, (last.sent - first.sent) / span) : null;
  }
}

function sameFile(entry, file) {
  return file.name === entry.file_name && file.size === entry.size;
}

function wait(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new UploadError("The upload was cancelled.", { cancelled: true }));
    }, { once: true });
  });
}

export class Uploader {
  constructor({ list }) {
    this.list = list;
    this.file = null;
    this.job = null; // {id, file, multipart, controller}
    this.failed = null; // {id, file} of the last upload that stopped, for Retry
    this.resumeTarget = null;
    const $ = (id) => document.getElementById(id);
    this.form = $("upload-form");
    this.drop = $("drop");
    this.input = $("file");
    this.chosen = $("chosen");
    this.title = $("title");
    this.description = $("description");
    this.submit = $("upload-submit");
    this.cancel = $("upload-cancel");
    this.retry = $("upload-retry");
    this.box = $("upload-progress");
    this.bar = $("upload-bar");
    this.status = $("upload-status");
    this.error = $("upload-error");
    this.unfinishedBox = $("unfinished");
    this.unfinishedList = $("unfinished-list");
    this.resumeInput = $("resume-file");

    this.drop.addEventListener("click", () => this.input.click());
    this.input.addEventListener("change", () => {
      if (this.input.files.length) this.choose(this.input.files[0]);
    });
    for (const type of ["dragenter", "dragover"]) {
      this.drop.addEventListener(type, (event) => {
        event.preventDefault();
        this.drop.classList.add("over");
      });
    }
    this.drop.addEventListener("dragleave", () => this.drop.classList.remove("over"));
    this.drop.addEventListener("drop", (event) => {
      event.preventDefault();
      this.drop.classList.remove("over");
      const file = event.dataTransfer?.files?.[0];
      if (file) this.choose(file);
    });
    // A file dropped beside the zone must not make the browser leave the page.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
    this.cancel.addEventListener("click", () => this.job?.controller.abort());
    this.retry.addEventListener("click", () => {
      if (this.failed) this.resume(this.failed.id, this.failed.file);
    });
    this.resumeInput.addEventListener("change", () => {
      const file = this.resumeInput.files[0];
      const entry = this.resumeTarget;
      this.resumeInput.value = "";
      if (file && entry) this.resumeChosen(entry, file);
    });
  }

  choose(file) {
    this.file = file;
    setText(this.chosen, `${file.name} · ${bytes(file.size)}`);
    this.clearErrors();
  }

  clearErrors() {
    show(this.error, false);
    setText(this.error, "");
    for (const node of document.querySelectorAll('[aria-invalid="true"]')) {
      node.removeAttribute("aria-invalid");
    }
  }

  showError(err, { field } = {}) {
    const message = err instanceof Error ? err.message : String(err);
    setText(this.error, message);
    show(this.error, true);
    const target = document.getElementById(FIELD_INPUT[field ?? err.field] || "");
    if (target) {
      target.setAttribute("aria-invalid", "true");
      target.setAttribute("aria-errormessage", "upload-error");
      target.focus();
    }
  }

  busy(running) {
    this.submit.disabled = running;
    show(this.cancel, running);
    if (running) show(this.retry, false);
    for (const button of this.unfinishedList.querySelectorAll("button.resume")) {
      button.disabled = running;
    }
  }

  async start() {
    if (this.job) return;
    this.clearErrors();
    if (!token.get()) {
      this.showError("Uploads need the API token: enter it at the top of the page.", {
        field: "token",
      });
      return;
    }
    const file = this.file;
    if (!file) {
      this.showError("Choose a video file first.", { field: "file_name" });
      return;
    }
    const body = {
      file_name: file.name,
      size: file.size,
      title: this.title.value.trim(),
      description: this.description.value,
    };
    // Without a type from the browser, the API guesses it from the name.
    if (file.type) body.content_type = file.type;
    this.begin(null, file);
    try {
      const created = await api.post("v1/videos", body);
      const { upload, ...video } = created;
      this.job.id = created.id;
      this.list.upsert(video);
      if (upload.method === "multipart") {
        unfinished.save({
          id: created.id,
          file_name: file.name,
          size: file.size,
          title: video.title,
          started: new Date().toISOString(),
        });
        this.renderUnfinished();
      }
      this.form.reset();
      this.file = null;
      setText(this.chosen, "No file chosen");
      await this.transfer(created.id, file, upload);
    } catch (err) {
      this.stopped(err);
    } finally {
      this.end();
    }
  }

  async resume(id, file) {
    if (this.job) return;
    this.clearErrors();
    this.begin(id, file);
    try {
      await this.transfer(id, file, null);
    } catch (err) {
      this.stopped(err);
    } finally {
      this.end();
    }
  }

  resumeChosen(entry, file) {
    this.clearErrors();
    if (!sameFile(entry, file)) {
      this.showError(
        `That is not the same file: the unfinished upload is “${entry.file_name}” of `
          + `${bytes(entry.size)}, and “${file.name}” has ${bytes(file.size)}.`,
      );
      return;
    }
    this.resume(entry.id, file);
  }

  begin(id, file) {
    this.job = { id, file, controller: new AbortController(), meter: new Meter(file.size) };
    this.failed = null;
    this.busy(true);
    show(this.box, true);
    this.bar.value = 0;
    setText(this.status, `Starting the upload of ${file.name}…`);
    announce(`Uploading ${file.name}.`);
  }

  end() {
    this.job = null;
    this.busy(false);
    this.renderUnfinished();
  }

  stopped(err) {
    const job = this.job;
    if (err instanceof UploadError && err.cancelled) {
      setText(this.status, "Cancelled.");
      if (job?.id && !job.multipart) api.delete(`v1/videos/${job.id}`).catch(() => {});
      if (job?.id && !job.multipart) this.list.remove(job.id);
      if (job?.multipart) this.showError("Upload cancelled. It can be resumed below.");
      return;
    }
    if (err instanceof ApiError && (err.code === "upload_gone" || err.code === "not_found")) {
      if (job?.id) unfinished.forget(job.id);
    } else if (job?.id) {
      this.failed = { id: job.id, file: job.file };
      show(this.retry, true);
    }
    setText(this.status, job ? this.progressText(job.meter) : "");
    this.showError(err);
  }

  // Send the bytes and complete. `upload` is the API's answer; null asks it afresh (fresh URLs
  // and, for multipart, the parts storage already holds).
  async transfer(id, file, upload) {
    const job = this.job;
    const { meter, controller } = job;
    let plan = upload;
    let parts = null;
    for (let attempt = 0; ; attempt += 1) {
      try {
        if (!plan) {
          const state = await api.get(`v1/videos/${id}/upload`);
          if (!state.upload) {
            // Storage has it all and the API knows: an earlier attempt completed.
            unfinished.forget(id);
            this.done(file, await api.get(`v1/videos/${id}`));
            return;
          }
          plan = state.upload;
        }
        job.multipart = plan.method === "multipart";
        parts = job.multipart
          ? await this.sendParts(file, plan, meter, controller.signal)
          : await this.sendWhole(file, plan, meter, controller.signal);
        break;
      } catch (err) {
        const transient = err instanceof UploadError ? err.retryable
          : err instanceof ApiError && err.transient;
        if (!transient || attempt >= AUTO_RESUMES.length) throw err;
        const delay = AUTO_RESUMES[attempt];
        const note = `${err.message} Resuming in ${Math.round(delay / 1000)} s…`;
        setText(this.status, note);
        announce(note);
        await wait(delay, controller.signal);
        plan = null;
      }
    }
    setText(this.status, "All bytes sent; starting the transcode…");
    const video = await api.post(`v1/videos/${id}/complete`, parts ? { parts } : {});
    unfinished.forget(id);
    this.done(file, video);
  }

  done(file, video) {
    this.list.upsert(video);
    this.bar.value = 100;
    const took = (performance.now() - this.job.meter.began) / 1000;
    setText(this.status, `Uploaded ${file.name} (${bytes(file.size)}) in ${duration(took)}.`
      + " The transcode starts shortly.");
    announce(`${file.name} is uploaded.`);
  }

  async sendWhole(file, plan, meter, signal) {
    meter.holds(0);
    this.showProgress(meter);
    await putBlob(plan.url, file, plan.headers, (loaded) => {
      meter.progress(1, loaded);
      this.showProgress(meter);
    }, signal);
    meter.finish(1, file.size);
    this.showProgress(meter);
    return null;
  }

  async sendParts(file, plan, meter, signal) {
    const etags = new Map(plan.uploaded.map((p) => [p.number, p.etag]));
    meter.holds(plan.uploaded.reduce((sum, p) => sum + p.size, 0));
    this.showProgress(meter);
    const queue = [...plan.parts];
    let failure = null;
    const worker = async () => {
      while (queue.length && !failure) {
        const part = queue.shift();
        const start = (part.number - 1) * plan.part_size;
        try {
          const etag = await putBlob(part.url, file.slice(start, start + part.size), {}, (n) => {
            meter.progress(part.number, n);
            this.showProgress(meter);
          }, signal);
          if (!etag) {
            throw new UploadError(
              "Storage did not let the page read the part's ETag header: its CORS settings "
                + "must expose ETag.",
            );
          }
          etags.set(part.number, etag);
          meter.finish(part.number, part.size);
        } catch (err) {
          meter.progress(part.number, 0);
          failure ||= err;
        }
        this.showProgress(meter);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_PARTS, queue.length) }, worker));
    if (failure) throw failure;
    return [...etags.entries()].sort((a, b) => a[0] - b[0]).map(([number, etag]) => ({
      number,
      etag,
    }));
  }

  progressText(meter) {
    const sent = meter.sent;
    const pct = meter.total ? Math.floor((sent / meter.total) * 100) : 100;
    const parts = [`${bytes(sent)} of ${bytes(meter.total)} (${pct}%)`];
    const speed = meter.speed();
    if (speed !== null) {
      parts.push(rate(speed));
      if (speed > 0 && sent < meter.total) {
        parts.push(`about ${duration((meter.total - sent) / speed)} left`);
      }
    }
    return parts.join(" · ");
  }

  showProgress(meter) {
    const pct = meter.total ? Math.floor((meter.sent / meter.total) * 100) : 100;
    if (Number(this.bar.value) !== pct) this.bar.value = pct;
    setText(this.status, this.progressText(meter));
  }

  // Unfinished multipart uploads remembered by this browser, each with what storage holds.
  renderUnfinished() {
    const entries = unfinished.all();
    show(this.unfinishedBox, entries.length > 0);
    const running = this.job?.id;
    this.unfinishedList.replaceChildren(
      ...entries.map((entry) => this.unfinishedItem(entry, entry.id === running)),
    );
  }

  unfinishedItem(entry, running) {
    const state = el("span", { class: "muted" });
    const resume = el("button", {
      type: "button",
      class: "resume",
      text: "Resume…",
      "aria-label": `Resume ${entry.file_name}: choose the same file`,
      disabled: running || Boolean(this.job),
      onclick: () => {
        this.resumeTarget = entry;
        this.resumeInput.accept = entry.file_name.includes(".")
          ? `.${entry.file_name.split(".").pop()}` : "";
        this.resumeInput.click();
      },
    });
    const discard = el("button", {
      type: "button",
      class: "quiet",
      text: "Discard",
      "aria-label": `Discard the unfinished upload of ${entry.file_name}`,
      disabled: running,
      onclick: () => {
        unfinished.forget(entry.id);
        api.delete(`v1/videos/${entry.id}`).catch(() => {});
        this.list.remove(entry.id);
        this.renderUnfinished();
      },
    });
    const item = el("li", { "data-id": entry.id }, [
      el("span", { class: "what" }, [
        el("strong", { text: entry.file_name }),
        ` · ${bytes(entry.size)}`,
        entry.started ? ` · started ${when(entry.started)} · ` : " · ",
        state,
      ]),
      resume,
      discard,
    ]);
    if (running) {
      setText(state, "uploading now");
    } else if (token.get()) {
      setText(state, "checking…");
      this.describeUnfinished(entry, state, resume);
    } else {
      setText(state, "enter the API token to resume");
      resume.disabled = true;
    }
    return item;
  }

  async describeUnfinished(entry, state, resume) {
    try {
      const answer = await api.get(`v1/videos/${entry.id}/upload`);
      if (!answer.upload) {
        unfinished.forget(entry.id);
        setText(state, "finished");
        resume.disabled = true;
        return;
      }
      const held = answer.upload.uploaded?.length ?? 0;
      setText(state, `${held} of ${answer.upload.part_count} parts in storage`);
    } catch (err) {
      setText(state, err.message);
      if (err instanceof ApiError && (err.code === "upload_gone" || err.status === 404)) {
        resume.disabled = true;
      }
    }
  }
}
