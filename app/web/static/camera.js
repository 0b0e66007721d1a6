// Camera mode: webcam frames go as JPEG over WebSocket /landmarks/stream, at most MAX_IN_FLIGHT unanswered
// at a time (the next one leaves when an answer comes), so the delay stays bounded; each answer's points
// and track ids are drawn over the live picture.
"use strict";

import { drawFaces, fitCanvas, clearCanvas, listTrackedFaces, markFaces } from "./overlay.js";
import { apiKey, bringIntoView, byId, format, queryOptions, showMessage, withQuery } from "./shared.js";

const MAX_IN_FLIGHT = 2;
const SEND_WIDTH = 640;
const JPEG_QUALITY = 0.8;
// An answer that never comes must not stall the stream: a frame unanswered this long is given up on.
const GIVE_UP_MS = 10_000;
// Characters a WebSocket subprotocol may have (an HTTP token); another key goes in the query instead.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CLOSE_REASONS = {
  1000: "the service ended the stream",
  1001: "the service went away",
  1006: "the connection was refused or lost",
  1008: "the API key was refused",
  1009: "a frame was too large",
  1011: "the service failed",
  1012: "the service restarted; start the camera again",
  1013: "the service is busy or shutting down; try again shortly",
};

const ui = {
  start: byId("camera-start"),
  stop: byId("camera-stop"),
  result: byId("camera-result"),
  stage: byId("camera-stage"),
  video: byId("camera-video"),
  overlay: byId("camera-overlay"),
  stats: byId("camera-stats"),
  faces: byId("camera-faces"),
};

// The running session: its camera stream, socket and counters. Null when the camera is off.
let session = null;

function setState(value) {
  ui.result.dataset.state = value;
  ui.start.disabled = value === "starting" || value === "live";
}

function socketUrl() {
  const query = queryOptions({ smoothing: true });
  const key = apiKey();
  const protocols = [];
  // A browser cannot set a header on a WebSocket: the key goes as a subprotocol (kept out of URLs and
  // logs) or, when it has characters a subprotocol cannot carry, in the query.
  if (key && TOKEN.test(key)) protocols.push("landmarks", `api-key.${key}`);
  else if (key) query.set("api_key", key);
  const url = new URL(withQuery("landmarks/stream", query), window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return { url: url.href, protocols };
}

function cameraError(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The camera was not allowed. Allow this page to use the camera (the icon in the address bar) and try again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found.";
    case "NotReadableError":
    case "AbortError":
      return "The camera could not be started: another application may be using it.";
    default:
      return `The camera could not be started: ${error && error.message ? error.message : error}`;
  }
}

function updateStats(run) {
  const now = performance.now();
  run.answerTimes = run.answerTimes.filter((time) => now - time <= 2000);
  const span = run.answerTimes.length > 1 ? (now - run.answerTimes[0]) / 1000 : 0;
  const fps = span > 0 ? (run.answerTimes.length - 1) / span : 0;
  const parts = [`${format(fps, 1)} fps`, `latency ${run.latency === null ? "–" : Math.round(run.latency)} ms`];
  parts.push(`${run.faces} ${run.faces === 1 ? "face" : "faces"}`, `${run.sent} sent`);
  if (run.dropped) parts.push(`${run.dropped} dropped`);
  if (run.errors) parts.push(`${run.errors} undecodable`);
  ui.stats.textContent = parts.join(" · ");
  Object.assign(ui.result.dataset, {
    sent: String(run.sent),
    answers: String(run.answers),
    dropped: String(run.dropped),
    maxInFlight: String(run.maxInFlight),
    latency: run.latency === null ? "" : String(Math.round(run.latency)),
  });
}

// Sends the camera's newest frame if fewer than MAX_IN_FLIGHT are unanswered and the camera has a frame
// that was not sent yet.
function pump(run) {
  if (run !== session || run.socket.readyState !== WebSocket.OPEN || run.encoding) return;
  const now = performance.now();
  for (const [index, sentAt] of run.inFlight) if (now - sentAt > GIVE_UP_MS) run.inFlight.delete(index);
  if (run.inFlight.size >= MAX_IN_FLIGHT || run.presented === run.lastSent) return;
  const video = ui.video;
  if (!video.videoWidth) return;
  const width = Math.min(SEND_WIDTH, video.videoWidth);
  const height = Math.round((video.videoHeight * width) / video.videoWidth);
  fitCanvas(run.capture, width, height);
  run.capture.getContext("2d").drawImage(video, 0, 0, width, height);
  run.lastSent = run.presented;
  run.encoding = true;
  run.capture.toBlob(
    (blob) => {
      run.encoding = false;
      if (run !== session || !blob || run.socket.readyState !== WebSocket.OPEN) return;
      const index = run.sent++;
      run.inFlight.set(index, performance.now());
      run.sizes.set(index, [width, height]);
      run.maxInFlight = Math.max(run.maxInFlight, run.inFlight.size);
      run.socket.send(blob);
      pump(run);
    },
    "image/jpeg",
    JPEG_QUALITY,
  );
}

function onAnswer(run, event) {
  if (run !== session) return;
  let answer;
  try {
    answer = JSON.parse(event.data);
  } catch {
    return;
  }
  const sentAt = run.inFlight.get(answer.frame);
  const size = run.sizes.get(answer.frame);
  run.inFlight.delete(answer.frame);
  run.sizes.delete(answer.frame);
  run.answers++;
  if (answer.dropped) {
    run.dropped++;
  } else if (answer.error) {
    run.errors++;
  } else if (Array.isArray(answer.faces)) {
    const now = performance.now();
    if (sentAt !== undefined) run.latency = now - sentAt;
    run.answerTimes.push(now);
    run.faces = answer.faces.length;
    if (size) fitCanvas(ui.overlay, size[0], size[1]);
    drawFaces(ui.overlay, answer.faces);
    markFaces(ui.stage, answer.faces);
    ui.stage.dataset.frame = String(answer.frame);
    // The list is rebuilt a few times a second, not for every frame.
    if (now - run.listedAt > 250) {
      run.listedAt = now;
      listTrackedFaces(ui.faces, answer.faces);
    }
  }
  updateStats(run);
  pump(run);
}

function onClose(run, event) {
  if (run !== session || run.stopping) return;
  release(run);
  const why = CLOSE_REASONS[event.code] || "the stream closed";
  const reason = event.reason ? `: ${event.reason}` : "";
  const hint = event.code === 1008 ? " Enter a valid API key above." : "";
  showMessage("error", `The live stream closed (code ${event.code}${reason}): ${why}.${hint}`);
  ui.result.dataset.closeCode = String(event.code);
  setState("closed");
}

// Stops the camera's tracks and the socket of ``run``.
function release(run) {
  run.stopping = true;
  for (const track of run.stream ? run.stream.getTracks() : []) track.stop();
  if (run.socket && run.socket.readyState <= WebSocket.OPEN) run.socket.close(1000, "stopped");
  ui.video.srcObject = null;
  clearCanvas(ui.overlay);
}

export function stopCamera({ hide = false } = {}) {
  const run = session;
  if (run) {
    release(run);
    session = null;
    setState("stopped");
    markFaces(ui.stage, []);
  }
  if (hide) ui.result.hidden = true;
}

function followCamera(run) {
  const video = ui.video;
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    const onFrame = (_now, metadata) => {
      if (run !== session) return;
      run.presented = metadata.presentedFrames;
      pump(run);
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  } else {
    const onTick = () => {
      if (run !== session) return;
      run.presented++;
      pump(run);
      requestAnimationFrame(onTick);
    };
    requestAnimationFrame(onTick);
  }
}

export async function startCamera() {
  stopCamera();
  const run = {
    stream: null,
    socket: null,
    capture: document.createElement("canvas"),
    stopping: false,
    encoding: false,
    presented: 0,
    lastSent: -1,
    sent: 0,
    answers: 0,
    dropped: 0,
    errors: 0,
    faces: 0,
    latency: null,
    maxInFlight: 0,
    inFlight: new Map(),
    sizes: new Map(),
    answerTimes: [],
    listedAt: 0,
  };
  session = run;
  delete ui.result.dataset.closeCode;
  ui.faces.replaceChildren();
  ui.stats.textContent = "";
  markFaces(ui.stage, []);
  updateStats(run);
  setState("starting");
  ui.result.hidden = false;
  bringIntoView(ui.result);
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showMessage("error", "The camera needs a secure page: open this page over https or on localhost.");
    session = null;
    setState("error");
    return;
  }
  showMessage("busy", "Asking for the camera…");
  try {
    run.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
  } catch (error) {
    if (run !== session) return;
    session = null;
    showMessage("error", cameraError(error));
    setState("error");
    return;
  }
  if (run !== session) {
    for (const track of run.stream.getTracks()) track.stop();
    return;
  }
  ui.video.srcObject = run.stream;
  try {
    await ui.video.play();
  } catch {
    // Muted inline video may always play; a refusal leaves the first frame, which is still sent.
  }
  const { url, protocols } = socketUrl();
  showMessage("busy", "Connecting to the service…");
  try {
    run.socket = new WebSocket(url, protocols);
  } catch (error) {
    release(run);
    session = null;
    showMessage("error", `The live stream could not be opened: ${error.message}`);
    setState("error");
    return;
  }
  run.socket.addEventListener("open", () => {
    if (run !== session) return;
    showMessage("", "");
    setState("live");
    followCamera(run);
    pump(run);
  });
  run.socket.addEventListener("message", (event) => onAnswer(run, event));
  run.socket.addEventListener("close", (event) => onClose(run, event));
}

ui.stop.addEventListener("click", () => {
  stopCamera();
  showMessage("", "The camera is off.");
});
