// A small map drawn as SVG: the worker's grid, where the worker is, the line walked, and a
// pin to drag. No map library and no basemap: a worker's grid is a few hundred metres
// across, and the app's first load on a slow phone network must stay small (MapLibre alone
// is some 440 KB gzipped). Coordinates are WGS84; drawn in a local equirectangular frame
// (metres), exact enough at this scale.

const SVG = "http://www.w3.org/2000/svg";
const EARTH_M_PER_DEG = 111_320;
const PAD = 0.08; // of the view, around what is fitted

function element(name, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

export function metresBetween(a, b) {
  const lat = ((a[1] + b[1]) / 2) * Math.PI / 180;
  const dx = (b[0] - a[0]) * EARTH_M_PER_DEG * Math.cos(lat);
  const dy = (b[1] - a[1]) * EARTH_M_PER_DEG;
  return Math.hypot(dx, dy);
}

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}

/** Whether a point is inside a GeoJSON (Multi)Polygon (even-odd over every ring). */
export function contains(geometry, point) {
  let inside = false;
  for (const ring of rings(geometry)) {
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i];
      const [xj, yj] = ring[j];
      if ((yi > point[1]) !== (yj > point[1])
          && point[0] < ((xj - xi) * (point[1] - yi)) / (yj - yi) + xi) inside = !inside;
    }
  }
  return inside;
}

export class SmallMap {
  constructor(svg) {
    this.svg = svg;
    this.origin = null; // [lon, lat] of the frame's centre
    this.grids = [];
    this.position = null;
    this.accuracy = 0;
    this.track = [];
    this.pin = null;
    this.onPinMove = null;
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    this.layers = {
      grids: element("g", {}, svg),
      track: element("polyline", { class: "track", points: "" }, svg),
      accuracy: element("circle", { class: "accuracy", r: 0, visibility: "hidden" }, svg),
      me: element("circle", { class: "me", r: 7, visibility: "hidden" }, svg),
      pin: element("path", { class: "pin", visibility: "hidden" }, svg),
      scale: element("g", {}, svg),
    };
    this._dragging = false;
    svg.addEventListener("pointerdown", (event) => this._drag(event));
  }

  project([lon, lat]) {
    const [lon0, lat0] = this.origin;
    return [
      (lon - lon0) * EARTH_M_PER_DEG * Math.cos(lat0 * Math.PI / 180),
      -(lat - lat0) * EARTH_M_PER_DEG,
    ];
  }

  unproject([x, y]) {
    const [lon0, lat0] = this.origin;
    return [lon0 + x / (EARTH_M_PER_DEG * Math.cos(lat0 * Math.PI / 180)), lat0 - y / EARTH_M_PER_DEG];
  }

  setGrids(geometries) {
    this.grids = geometries;
    const all = geometries.flatMap((g) => rings(g).flat());
    if (all.length === 0) return;
    const lons = all.map((p) => p[0]);
    const lats = all.map((p) => p[1]);
    this.origin = [(Math.min(...lons) + Math.max(...lons)) / 2, (Math.min(...lats) + Math.max(...lats)) / 2];
    this.layers.grids.replaceChildren();
    for (const geometry of geometries) {
      const d = rings(geometry).map((ring) => "M" + ring.map((p) => this.project(p).map((v) => v.toFixed(1)).join(",")).join("L") + "Z").join("");
      element("path", { class: "grid", d, "fill-rule": "evenodd" }, this.layers.grids);
    }
    this.fit();
  }

  /** Fit the grids, and the worker when near them (within 2 km), in view. */
  fit() {
    if (!this.origin) return;
    const points = this.grids.flatMap((g) => rings(g).flat()).map((p) => this.project(p));
    if (this.position) {
      const me = this.project(this.position);
      if (Math.hypot(...me) < 2000) points.push(me);
    }
    if (this.pin) points.push(this.project(this.pin));
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const width = Math.max(Math.max(...xs) - Math.min(...xs), 60);
    const height = Math.max(Math.max(...ys) - Math.min(...ys), 60);
    const pad = Math.max(width, height) * PAD;
    this.view = [Math.min(...xs) - pad, Math.min(...ys) - pad, width + 2 * pad, height + 2 * pad];
    this.svg.setAttribute("viewBox", this.view.map((v) => v.toFixed(1)).join(" "));
    this._drawScale();
    this._drawPosition();
    this._drawPin();
  }

  _unit() {
    // Metres per screen pixel, so that symbols keep their size whatever the zoom.
    const box = this.svg.getBoundingClientRect();
    if (!this.view || box.width === 0) return 1;
    return Math.max(this.view[2] / box.width, this.view[3] / box.height);
  }

  _drawScale() {
    const [x0, y0, w, h] = this.view;
    const nice = [10, 20, 50, 100, 200, 500, 1000, 2000].find((m) => m >= w / 5) || 5000;
    const u = this._unit();
    const x = x0 + 12 * u;
    const y = y0 + h - 12 * u;
    this.layers.scale.replaceChildren();
    element("line", { class: "scale", x1: x, y1: y, x2: x + nice, y2: y }, this.layers.scale);
    const label = element("text", { x, y: y - 5 * u, "font-size": 12 * u }, this.layers.scale);
    label.textContent = nice >= 1000 ? `${nice / 1000} km` : `${nice} m`;
  }

  setPosition(lonLat, accuracy) {
    this.position = lonLat;
    this.accuracy = accuracy || 0;
    this._drawPosition();
  }

  _drawPosition() {
    if (!this.origin || !this.position) return;
    const [x, y] = this.project(this.position);
    const u = this._unit();
    this.layers.me.setAttribute("cx", x);
    this.layers.me.setAttribute("cy", y);
    this.layers.me.setAttribute("r", 7 * u);
    this.layers.me.setAttribute("visibility", "visible");
    this.layers.accuracy.setAttribute("cx", x);
    this.layers.accuracy.setAttribute("cy", y);
    this.layers.accuracy.setAttribute("r", this.accuracy);
    this.layers.accuracy.setAttribute("visibility", this.accuracy > 0 ? "visible" : "hidden");
  }

  setTrack(lonLats) {
    this.track = lonLats;
    if (!this.origin) return;
    this.layers.track.setAttribute("points", lonLats.map((p) => this.project(p).map((v) => v.toFixed(1)).join(",")).join(" "));
  }

  setPin(lonLat, onMove) {
    this.pin = lonLat;
    this.onPinMove = onMove;
    this._drawPin();
  }

  _drawPin() {
    if (!this.origin || !this.pin) return;
    const [x, y] = this.project(this.pin);
    const u = this._unit() * 1.6;
    // A drop-shaped marker whose tip is the point.
    const d = `M${x},${y} c${-6 * u},${-8 * u} ${-9 * u},${-12 * u} ${-9 * u},${-16 * u} a${9 * u},${9 * u} 0 1 1 ${18 * u},0 c0,${4 * u} ${-3 * u},${8 * u} ${-9 * u},${16 * u}z`;
    this.layers.pin.setAttribute("d", d);
    this.layers.pin.setAttribute("visibility", "visible");
  }

  _toMap(event) {
    const point = this.svg.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    const local = point.matrixTransform(this.svg.getScreenCTM().inverse());
    return this.unproject([local.x, local.y]);
  }

  _drag(event) {
    if (!this.pin || !this.onPinMove) return;
    event.preventDefault();
    this.svg.setPointerCapture(event.pointerId);
    const move = (e) => {
      this.pin = this._toMap(e);
      this._drawPin();
    };
    const up = (e) => {
      move(e);
      this.svg.removeEventListener("pointermove", move);
      this.svg.removeEventListener("pointerup", up);
      this.onPinMove(this.pin);
    };
    move(event);
    this.svg.addEventListener("pointermove", move);
    this.svg.addEventListener("pointerup", up);
  }
}
