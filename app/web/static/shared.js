// What the page's modes share: the controls, the status message, the options sent to the API and the
// words that describe a face.
"use strict";

// iBUG 300-W point groups, for colouring: [first index, last index, name].
export const REGIONS = [
  [0, 16, "jaw"],
  [17, 26, "brows"],
  [27, 35, "nose"],
  [36, 47, "eyes"],
  [48, 67, "mouth"],
];

export const byId = (id) => document.getElementById(id);

export const controls = {
  upsample: byId("upsample"),
  smoothing: byId("smoothing"),
  showPoints: byId("show-points"),
  showNumbers: byId("show-numbers"),
  showBoxes: byId("show-boxes"),
  apiKey: byId("api-key"),
  message: byId("message"),
};

export function regionOf(index) {
  const region = REGIONS.find(([first, last]) => index >= first && index <= last);
  return region ? region[2] : "other";
}

export function showMessage(kind, text, detail) {
  const message = controls.message;
  message.hidden = !text;
  message.dataset.kind = kind || "";
  message.textContent = text || "";
  if (detail) {
    const small = document.createElement("small");
    small.textContent = detail;
    message.append(document.createElement("br"), small);
  }
}

export function format(value, digits) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : String(value);
}

export function apiKey() {
  return controls.apiKey.value.trim();
}

// Query parameters of the landmark routes: none for the service's defaults (upsample auto, smoothing on).
export function queryOptions({ smoothing = false } = {}) {
  const query = new URLSearchParams();
  if (controls.upsample.value !== "auto") query.set("upsample", controls.upsample.value);
  if (smoothing && controls.smoothing && !controls.smoothing.checked) query.set("smoothing", "false");
  return query;
}

export function withQuery(path, query) {
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

// Pose and error estimate are optional: newer services add them to each face.
export function describeFace(face) {
  const lines = [];
  const box = face.box;
  lines.push(`score ${format(face.score, 3)}`);
  lines.push(`box ${box.left}, ${box.top} · ${box.width}×${box.height} px`);
  if (face.pose && typeof face.pose === "object") {
    const angles = ["yaw", "pitch", "roll"]
      .filter((name) => name in face.pose)
      .map((name) => `${name} ${format(face.pose[name], 1)}°`);
    if (angles.length) lines.push(`pose ${angles.join(" · ")}`);
  }
  if (face.error_estimate !== undefined && face.error_estimate !== null) {
    const estimate = face.error_estimate;
    const text =
      typeof estimate === "object"
        ? Object.entries(estimate).map(([key, value]) => `${key} ${format(value, 3)}`).join(" · ")
        : format(estimate, 3);
    lines.push(`error estimate ${text}`);
  }
  return lines;
}

// The API's error message for a failed answer, with its status, code and request id below it.
export function errorText(response, body) {
  const error = body && body.error;
  if (error && error.message) {
    const detail = [`HTTP ${response.status}`, error.code, error.request_id && `request ${error.request_id}`]
      .filter(Boolean)
      .join(" · ");
    return { text: error.message, detail };
  }
  return { text: `The service answered HTTP ${response.status} ${response.statusText}`.trim(), detail: "" };
}

export function keyHint(status) {
  return status === 401 || status === 403 ? " Enter a valid API key above." : "";
}

// On a phone the options fill the screen: bring a result that starts low on it into view.
export function bringIntoView(section) {
  if (section.getBoundingClientRect().top > window.innerHeight * 0.6) section.scrollIntoView({ block: "start" });
}

// The file name without its extension, for the names of downloads.
export function stem(name, fallback) {
  return (name || fallback).replace(/\.[^.]*$/, "");
}
