// Faces drawn on a <canvas> laid over a playing video or the camera: the photo mode's colours, sizes and
// toggles, with each face labelled by its track id. A canvas, not SVG: it is redrawn for every frame.
"use strict";

import { controls, describeFace, REGIONS } from "./shared.js";

function colours() {
  const style = getComputedStyle(document.documentElement);
  const read = (name) => style.getPropertyValue(`--${name}`).trim();
  return { box: read("box"), regions: REGIONS.map(([first, last, name]) => [first, last, read(name)]) };
}

// Sizes the canvas to the frame's pixels, so that the API's coordinates draw as they are.
export function fitCanvas(canvas, width, height) {
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
}

export function clearCanvas(canvas) {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

export function drawFaces(canvas, faces) {
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const palette = colours();
  const scale = Math.max(canvas.width, canvas.height) / 1000;
  for (const face of faces) {
    const box = face.box;
    const size = Math.max(box.width, box.height);
    // As in the photo mode: marks grow with the face but stay visible on small faces.
    const radius = Math.max(size / 90, scale * 1.6);
    const fontSize = Math.max(size / 26, scale * 7);
    if (controls.showBoxes.checked) {
      context.strokeStyle = palette.box;
      context.lineWidth = Math.max(2, scale * 2);
      context.strokeRect(box.left, box.top, box.width, box.height);
      context.fillStyle = palette.box;
      context.font = `700 ${fontSize * 1.4}px system-ui, sans-serif`;
      context.textBaseline = "bottom";
      const label = face.track_id === undefined ? "" : `#${face.track_id}`;
      context.fillText(label, box.left, box.top - fontSize * 0.3);
    }
    if (controls.showPoints.checked) {
      context.lineWidth = Math.max(0.5, scale * 0.5);
      context.strokeStyle = "#000000";
      for (const [first, last, colour] of palette.regions) {
        context.fillStyle = colour;
        for (let index = first; index <= last && index < face.landmarks.length; index++) {
          const [x, y] = face.landmarks[index];
          context.beginPath();
          context.arc(x, y, radius, 0, 2 * Math.PI);
          context.fill();
          context.stroke();
        }
      }
    }
    if (controls.showNumbers.checked) {
      context.font = `${fontSize}px ui-monospace, monospace`;
      context.textBaseline = "alphabetic";
      context.lineWidth = fontSize / 5;
      context.strokeStyle = "#000000";
      context.fillStyle = "#ffffff";
      face.landmarks.forEach(([x, y], index) => {
        context.strokeText(String(index), x + radius * 1.2, y - radius * 1.2);
        context.fillText(String(index), x + radius * 1.2, y - radius * 1.2);
      });
    }
  }
}

// The faces of one frame as list items, each headed by its track id.
export function listTrackedFaces(list, faces) {
  list.replaceChildren(
    ...faces.map((face) => {
      const item = document.createElement("li");
      item.className = "face-item";
      item.dataset.trackId = String(face.track_id);
      const heading = document.createElement("strong");
      heading.textContent = `Track #${face.track_id}`;
      item.append(heading);
      for (const line of describeFace(face)) {
        const row = document.createElement("span");
        row.textContent = line;
        item.append(row);
      }
      return item;
    }),
  );
}

// What the tests and assistive tools read: how many faces the shown frame has, and their track ids.
export function markFaces(element, faces) {
  element.dataset.faces = String(faces.length);
  element.dataset.trackIds = faces.map((face) => face.track_id).join(",");
}
