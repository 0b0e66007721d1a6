// Video file mode: the file goes to POST /landmarks/video, whose NDJSON answer is read line by line as the
// service writes it; the video plays with the points of the processed frame nearest its current time.
"use strict";

import { clearCanvas, drawFaces, fitCanvas, listTrackedFaces, markFaces } from "./overlay.js";
import {
  apiKey,
  bringIntoView,
  byId,
  errorText,
  format,
  keyHint,
  queryOptions,
  showMessage,
  stem,
  withQuery,
} from "./shared.js";

const VIDEO_EXTENSIONS = /\.(mp4|m4v|mov|avi|wmv|asf|webm|mkv|mpe?g|ogv|3gp|flv)$/i;

const ui = {
  result: byId("video-result"),
  stage: byId("video-stage"),
  video: byId("video"),
  overlay: byId("video-overlay"),
  scrub: byId("video-scrub"),
  progress: byId("video-progress"),
  progressText: byId("video-progress-text"),
  summary: byId("video-summary"),
  download: byId("video-download"),
  time: byId("video-time"),
  faces: byId("video-faces"),
};

// One video at a time; a new file (or another mode) aborts the request, which stops the service's work.
let current = null;

export function isVideoFile(file) {
  return (file.type || "").startsWith("video/") || VIDEO_EXTENSIONS.test(file.name || "");
}

function formatName(file) {
  const extension = /\.([^.]+)$/.exec(file.name || "");
  if (extension) return extension[1].toUpperCase();
  return (file.type || "this video").replace(/^video\/(x-)?/, "").toUpperCase();
}

function setState(value) {
  ui.result.dataset.state = value;
}

export function stopVideo() {
  if (!current) return;
  current.request.abort();
  current.stopped = true;
  ui.video.pause();
  ui.video.removeAttribute("src");
  ui.video.load();
  URL.revokeObjectURL(current.videoUrl);
  if (current.jsonlUrl) URL.revokeObjectURL(current.jsonlUrl);
  current = null;
  ui.result.hidden = true;
}

// Lines of an NDJSON body, as they arrive.
async function* ndjsonLines(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    pending += decoder.decode(value, { stream: !done });
    const lines = pending.split("\n");
    pending = done ? "" : lines.pop();
    for (const line of lines) if (line.trim()) yield line;
    if (done) return;
  }
}

// The processed frame nearest ``time``, or null when none is within one processed step of it (the
// service has not got there yet).
function frameAt(run, time) {
  const frames = run.frames;
  if (!frames.length) return null;
  let low = 0;
  let high = frames.length - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (frames[middle].time < time) low = middle + 1;
    else high = middle;
  }
  let best = frames[low];
  if (low > 0 && Math.abs(frames[low - 1].time - time) <= Math.abs(best.time - time)) best = frames[low - 1];
  const fps = run.header && run.header.video.fps > 0 ? run.header.video.fps : 30;
  const step = frames.length > 1 ? frames[1].time - frames[0].time : 1 / fps;
  // Half a step past the frame, plus the frame's own duration: the last frame stays drawn to the end.
  return Math.abs(best.time - time) <= 1.5 * Math.max(step, 1 / fps) ? best : null;
}

function show(run, frame) {
  const index = frame ? frame.frame : -1;
  if (run.shown === index) return;
  run.shown = index;
  const faces = frame ? frame.faces : [];
  drawFaces(ui.overlay, faces);
  ui.stage.dataset.frame = frame ? String(frame.frame) : "";
  ui.stage.dataset.time = frame ? String(frame.time) : "";
  markFaces(ui.stage, faces);
  ui.time.textContent = frame ? `frame ${frame.frame} · ${format(frame.time, 2)} s` : "no processed frame here yet";
  listTrackedFaces(ui.faces, faces);
}

function redraw(run) {
  if (run !== current || !run.header) return;
  if (run.playable === false) {
    // No picture: the slider picks the frame; it follows the newest frame until the user moves it.
    const last = run.frames.length - 1;
    ui.scrub.max = String(Math.max(last, 0));
    if (!run.scrubbed) ui.scrub.value = String(last);
    show(run, run.frames[Number(ui.scrub.value)] || null);
  } else {
    show(run, frameAt(run, ui.video.currentTime));
  }
}

const FRAME_CALLBACKS = "requestVideoFrameCallback" in HTMLVideoElement.prototype;

// The overlay follows each frame the video presents; browsers without requestVideoFrameCallback use
// timeupdate and animation frames while playing (the listeners at the end of this file).
function followPlayback(run) {
  if (!FRAME_CALLBACKS) return;
  const onFrame = (_now, metadata) => {
    if (run !== current) return;
    show(run, frameAt(run, metadata.mediaTime));
    ui.video.requestVideoFrameCallback(onFrame);
  };
  ui.video.requestVideoFrameCallback(onFrame);
}

function cannotPlayText(run) {
  const count = run.frames.length;
  const frames = `${count} ${count === 1 ? "frame" : "frames"}`;
  const soFar = run.done ? "" : " so far";
  return `This browser cannot play ${run.format}; landmarks were computed for ${frames}${soFar}.`;
}

// The can't-play message, unless the answer has ended in an error: that one stays (the video element's
// own error may come after it).
function sayCannotPlay(run) {
  if (run.finished && (run.failed || !run.done)) return;
  showMessage("cannot-play", cannotPlayText(run));
}

function updateProgress(run) {
  if (run !== current) return;
  const total = run.header ? run.header.video.frames : 0;
  const last = run.frames.length ? run.frames[run.frames.length - 1].frame + 1 : 0;
  if (run.done) {
    ui.progress.max = Math.max(last, 1);
    ui.progress.value = Math.max(last, 1);
  } else if (total > 0) {
    ui.progress.max = total;
    ui.progress.value = Math.min(last, total);
  } else {
    ui.progress.removeAttribute("value"); // indeterminate: the container gives no frame count
  }
  const of = total > 0 ? ` / ${run.done ? last : total}` : "";
  ui.progressText.textContent = `${last}${of} frames${run.done ? "" : "…"} · ${run.frames.length} processed`;
  ui.result.dataset.processed = String(run.frames.length);
  if (run.playable === false) sayCannotPlay(run);
}

function summarize(run) {
  const parts = [];
  if (run.header) {
    const { width, height, fps } = run.header.video;
    parts.push(`${width}×${height} px`, `${format(fps, 2)} fps`);
    if (run.header.model) parts.push(`model ${run.header.model.name} ${run.header.model.version}`);
  }
  if (run.summary) {
    const { tracks, detector_runs: detectorRuns, seconds } = run.summary;
    parts.push(`${tracks} ${tracks === 1 ? "track" : "tracks"}`, `detector on ${detectorRuns} frames`);
    parts.push(`${format(seconds, 1)} s`);
  }
  ui.summary.textContent = parts.join(" · ");
}

function offerDownload(run) {
  if (run.jsonlUrl) URL.revokeObjectURL(run.jsonlUrl);
  const body = run.lines.map((line) => `${line}\n`).join("");
  run.jsonlUrl = URL.createObjectURL(new Blob([body], { type: "application/x-ndjson" }));
  ui.download.href = run.jsonlUrl;
  ui.download.download = `${stem(run.file.name, "video")}.landmarks.jsonl`;
  ui.download.removeAttribute("aria-disabled");
}

function take(run, line) {
  const item = JSON.parse(line);
  run.lines.push(line);
  if (item.video) {
    run.header = item;
    fitCanvas(ui.overlay, item.video.width, item.video.height);
    clearCanvas(ui.overlay);
    summarize(run);
  } else if (Array.isArray(item.faces)) {
    run.frames.push(item);
  } else if (item.summary) {
    run.summary = item.summary;
    run.done = true;
    summarize(run);
  } else if (item.error) {
    run.failed = item.error;
  }
}

async function analyze(run, response) {
  let scheduled = false;
  // Many lines can come in one chunk: the page is updated once per animation frame, not per line.
  const refresh = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      updateProgress(run);
      redraw(run);
    });
  };
  for await (const line of ndjsonLines(response)) {
    if (run !== current) return;
    take(run, line);
    refresh();
  }
  if (run !== current) return;
  run.finished = true;
  updateProgress(run);
  redraw(run);
  offerDownload(run);
  if (run.failed) {
    const detail = [run.failed.code, run.failed.request_id && `request ${run.failed.request_id}`];
    showMessage(
      "error",
      `The service stopped after ${run.frames.length} frames: ${run.failed.message}`,
      detail.filter(Boolean).join(" · "),
    );
    setState("error");
  } else if (!run.done) {
    showMessage("error", `The answer ended after ${run.frames.length} frames, without its summary.`);
    setState("error");
  } else {
    setState("done");
    if (run.playable !== false) showMessage("", "");
  }
}

export async function showVideo(file) {
  stopVideo();
  const run = {
    file,
    format: formatName(file),
    request: new AbortController(),
    videoUrl: URL.createObjectURL(file),
    header: null,
    summary: null,
    frames: [],
    lines: [],
    done: false,
    finished: false,
    failed: null,
    playable: null,
    scrubbed: false,
    shown: null,
    jsonlUrl: null,
  };
  current = run;
  setState("sending");
  ui.result.dataset.playable = "";
  ui.stage.classList.remove("no-video");
  ui.scrub.hidden = true;
  ui.scrub.value = "0";
  ui.summary.textContent = "";
  ui.time.textContent = "";
  ui.faces.replaceChildren();
  ui.progress.value = 0;
  ui.progress.max = 1;
  ui.progressText.textContent = "";
  ui.download.setAttribute("href", "#");
  ui.download.setAttribute("aria-disabled", "true");
  ui.stage.dataset.frame = "";
  markFaces(ui.stage, []);
  clearCanvas(ui.overlay);
  ui.video.src = run.videoUrl;
  ui.result.hidden = false;
  bringIntoView(ui.result);
  followPlayback(run);

  const headers = { Accept: "application/x-ndjson" };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  const form = new FormData();
  form.append("video", file, file.name || "video");
  showMessage("busy", `Sending ${file.name || "the video"}…`);
  try {
    const url = withQuery("landmarks/video", queryOptions({ smoothing: true }));
    const response = await fetch(url, { method: "POST", body: form, headers, signal: run.request.signal });
    if (run !== current) return;
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      const { text, detail } = errorText(response, body);
      showMessage("error", text + keyHint(response.status), detail);
      setState("error");
      ui.result.hidden = true;
      ui.video.removeAttribute("src"); // its own error (no video at all) must not replace the API's
      ui.video.load();
      return;
    }
    setState("streaming");
    if (run.playable !== false) showMessage("busy", `Finding and following faces in ${file.name || "the video"}…`);
    await analyze(run, response);
  } catch (error) {
    if (error.name === "AbortError" || run !== current) return;
    run.finished = true;
    run.failed = run.failed || { message: error.message };
    showMessage("error", `The service could not be reached: ${error.message}`);
    setState("error");
  }
}

// After a change of the Show toggles.
export function redrawVideo() {
  if (!current) return;
  current.shown = null;
  redraw(current);
}

function cannotPlay(run) {
  run.playable = false;
  ui.result.dataset.playable = "no";
  ui.stage.classList.add("no-video");
  ui.scrub.hidden = false;
  sayCannotPlay(run);
  redraw(run);
}

ui.video.addEventListener("loadedmetadata", () => {
  if (!current) return;
  // A container the browser reads but whose video codec it lacks (H.264 in a Chromium built without
  // it) loads with no picture: that is no playable video either.
  if (!ui.video.videoWidth) {
    cannotPlay(current);
    return;
  }
  current.playable = true;
  ui.result.dataset.playable = "yes";
  redraw(current);
});
ui.video.addEventListener("seeked", () => current && redraw(current));
if (!FRAME_CALLBACKS) {
  const onTick = () => {
    if (!current || ui.video.paused) return;
    redraw(current);
    requestAnimationFrame(onTick);
  };
  ui.video.addEventListener("play", () => requestAnimationFrame(onTick));
  ui.video.addEventListener("timeupdate", () => current && redraw(current));
}
// AVI and WMV in Chromium, for instance: the results are still computed, shown and offered.
ui.video.addEventListener("error", () => {
  if (current && ui.video.getAttribute("src")) cannotPlay(current);
});
ui.scrub.addEventListener("input", () => {
  if (!current) return;
  current.scrubbed = true;
  redraw(current);
});
ui.download.addEventListener("click", (event) => {
  if (ui.download.getAttribute("aria-disabled") === "true") event.preventDefault();
});
