// The page's entry script: the photo mode (POST /landmarks, drawn as SVG) and the choice of mode: a photo,
// a video file (video.js) or the camera (camera.js).
"use strict";

import { startCamera, stopCamera } from "./camera.js";
import {
  apiKey,
  bringIntoView,
  byId,
  controls,
  describeFace,
  errorText,
  format,
  keyHint,
  queryOptions,
  regionOf,
  showMessage,
  stem,
  withQuery,
} from "./shared.js";
import { isVideoFile, redrawVideo, showVideo, stopVideo } from "./video.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const API_KEY_STORAGE = "face-landmarks.api-key";

const ui = {
  ...controls,
  drop: byId("drop"),
  file: byId("file"),
  cameraStart: byId("camera-start"),
  result: byId("result"),
  stage: byId("stage"),
  photo: byId("photo"),
  overlay: byId("overlay"),
  summary: byId("summary"),
  faces: byId("faces"),
  facesTitle: byId("faces-title"),
  download: byId("download"),
};

const state = { file: null, photoUrl: null, jsonUrl: null, request: null };

function svg(name, attributes) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, String(value));
  return element;
}

function clearResult() {
  ui.result.hidden = true;
  ui.overlay.replaceChildren();
  ui.faces.replaceChildren();
  ui.summary.textContent = "";
  ui.photo.removeAttribute("src");
  if (state.jsonUrl) URL.revokeObjectURL(state.jsonUrl);
  state.jsonUrl = null;
  ui.download.setAttribute("href", "#");
  ui.download.setAttribute("aria-disabled", "true");
}

function applyToggles() {
  ui.overlay.classList.toggle("hide-points", !ui.showPoints.checked);
  ui.overlay.classList.toggle("hide-numbers", !ui.showNumbers.checked);
  ui.overlay.classList.toggle("hide-boxes", !ui.showBoxes.checked);
}

function drawFace(face, index, scale) {
  const box = face.box;
  const size = Math.max(box.width, box.height);
  // Marks grow with the face but stay visible on small faces in large photos.
  const radius = Math.max(size / 90, scale * 1.6);
  const fontSize = Math.max(size / 26, scale * 7);
  const group = svg("g", { class: "face", "data-index": index });
  const title = svg("title");
  title.textContent = `Face ${index + 1}, score ${format(face.score, 3)}`;
  group.append(title);
  group.append(svg("rect", { class: "box", x: box.left, y: box.top, width: box.width, height: box.height }));
  const tag = svg("text", { class: "tag", x: box.left, y: box.top - fontSize * 0.3, "font-size": fontSize * 1.4 });
  tag.textContent = String(index + 1);
  group.append(tag);
  const points = svg("g", { class: "points" });
  const numbers = svg("g", { class: "numbers", "font-size": fontSize, "stroke-width": fontSize / 5 });
  face.landmarks.forEach(([x, y], pointIndex) => {
    points.append(svg("circle", { class: `point ${regionOf(pointIndex)}`, cx: x, cy: y, r: radius }));
    const number = svg("text", { class: "number", x: x + radius * 1.2, y: y - radius * 1.2 });
    number.textContent = String(pointIndex);
    numbers.append(number);
  });
  group.append(points, numbers);
  return group;
}

function listFace(face, index) {
  const item = document.createElement("li");
  item.className = "face-item";
  item.dataset.index = String(index);
  item.tabIndex = 0;
  const heading = document.createElement("strong");
  heading.textContent = `Face ${index + 1}`;
  item.append(heading);
  for (const line of describeFace(face)) {
    const row = document.createElement("span");
    row.textContent = line;
    item.append(row);
  }
  const highlight = (on) => {
    const group = ui.overlay.querySelector(`.face[data-index="${index}"]`);
    if (group) group.classList.toggle("active", on);
    ui.overlay.classList.toggle("has-active", on);
  };
  item.addEventListener("mouseenter", () => highlight(true));
  item.addEventListener("mouseleave", () => highlight(false));
  item.addEventListener("focus", () => highlight(true));
  item.addEventListener("blur", () => highlight(false));
  return item;
}

function summarize(body, upsampleAsked, milliseconds) {
  const count = body.faces.length;
  const parts = [
    `${body.image.width}×${body.image.height} px`,
    `${count} ${count === 1 ? "face" : "faces"}`,
  ];
  const used = body.detection && body.detection.upsample;
  if (used !== undefined && used !== null) {
    parts.push(`upsample ${used}${upsampleAsked === "auto" ? " (auto)" : ""}`);
  } else {
    parts.push(`upsample ${upsampleAsked === "auto" ? "service default" : upsampleAsked}`);
  }
  if (body.model) parts.push(`model ${body.model.name} ${body.model.version}`);
  parts.push(`${Math.round(milliseconds)} ms`);
  return parts.join(" · ");
}

function showResult(body, upsampleAsked, milliseconds) {
  const { width, height } = body.image;
  ui.overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
  ui.photo.width = width;
  ui.photo.height = height;
  ui.photo.src = state.photoUrl;
  const scale = Math.max(width, height) / 1000;
  ui.overlay.replaceChildren(...body.faces.map((face, index) => drawFace(face, index, scale)));
  ui.faces.replaceChildren(...body.faces.map(listFace));
  ui.facesTitle.textContent = body.faces.length ? `Faces (${body.faces.length})` : "No face";
  ui.summary.textContent = summarize(body, upsampleAsked, milliseconds);
  const name = stem(state.file.name, "photo");
  state.jsonUrl = URL.createObjectURL(
    new Blob([JSON.stringify(body, null, 2)], { type: "application/json" }),
  );
  ui.download.href = state.jsonUrl;
  ui.download.download = `${name}.landmarks.json`;
  ui.download.removeAttribute("aria-disabled");
  applyToggles();
  ui.result.hidden = false;
  bringIntoView(ui.result);
}

async function analyze() {
  const file = state.file;
  if (!file) return;
  if (state.request) state.request.abort();
  const request = new AbortController();
  state.request = request;
  clearResult();
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(file);

  const upsample = ui.upsample.value;
  const url = withQuery("landmarks", queryOptions());
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  const form = new FormData();
  form.append("image", file, file.name || "pasted-image");

  showMessage("busy", `Finding faces in ${file.name || "the pasted image"}…`);
  document.body.setAttribute("aria-busy", "true");
  const started = performance.now();
  try {
    const response = await fetch(url, { method: "POST", body: form, headers, signal: request.signal });
    const text = await response.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    if (state.request !== request) return;
    if (!response.ok || !body || !Array.isArray(body.faces)) {
      const { text: message, detail } = errorText(response, body);
      showMessage("error", message + keyHint(response.status), detail);
      return;
    }
    showResult(body, upsample, performance.now() - started);
    if (body.faces.length === 0) {
      const hint = upsample === "2" ? "" : " Small faces may need a higher upsample.";
      showMessage("no-face", `No face found in this photo.${hint}`);
    } else {
      showMessage("", "");
    }
  } catch (error) {
    if (error.name === "AbortError") return;
    showMessage("error", `The service could not be reached: ${error.message}`);
  } finally {
    if (state.request === request) {
      state.request = null;
      document.body.removeAttribute("aria-busy");
    }
  }
}

// One mode at a time: starting one stops the others (the camera, a video's request, a photo's request).
function leavePhoto() {
  if (state.request) state.request.abort();
  state.request = null;
  state.file = null;
  document.body.removeAttribute("aria-busy");
  clearResult();
}

function useFiles(files) {
  const file = files && files[0];
  if (!file) {
    showMessage("error", "That was no file: drop or paste a photo or a video file.");
    return;
  }
  stopCamera({ hide: true });
  if (isVideoFile(file)) {
    leavePhoto();
    showVideo(file);
  } else {
    stopVideo();
    state.file = file;
    analyze();
  }
}

ui.cameraStart.addEventListener("click", () => {
  leavePhoto();
  stopVideo();
  startCamera();
});

ui.file.addEventListener("change", () => {
  useFiles(ui.file.files);
  ui.file.value = ""; // choosing the same file again sends it again
});

// Dropping anywhere on the page: a file dropped beside the zone must not open it in the tab.
window.addEventListener("dragover", (event) => {
  event.preventDefault();
  ui.drop.classList.add("dragging");
});
window.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) ui.drop.classList.remove("dragging");
});
window.addEventListener("drop", (event) => {
  event.preventDefault();
  ui.drop.classList.remove("dragging");
  useFiles(event.dataTransfer && event.dataTransfer.files);
});

document.addEventListener("paste", (event) => {
  const files = event.clipboardData && event.clipboardData.files;
  if (!files || files.length === 0) return; // plain text, e.g. into the API key field
  event.preventDefault();
  useFiles(files);
});

ui.upsample.addEventListener("change", analyze);
for (const toggle of [ui.showPoints, ui.showNumbers, ui.showBoxes]) {
  toggle.addEventListener("change", () => {
    applyToggles();
    redrawVideo();
  });
}

ui.download.addEventListener("click", (event) => {
  if (!state.jsonUrl) event.preventDefault();
});

// The key lives in sessionStorage only: it is gone when the tab closes.
ui.apiKey.value = sessionStorage.getItem(API_KEY_STORAGE) || "";
ui.apiKey.addEventListener("input", () => {
  const key = ui.apiKey.value.trim();
  if (key) sessionStorage.setItem(API_KEY_STORAGE, key);
  else sessionStorage.removeItem(API_KEY_STORAGE);
});

applyToggles();
clearResult();
