// The basemap under the grids (WANGGE_BASEMAP; docs/BASEMAP.md): XYZ raster tiles or a
// style's layers, inserted below "districts-fill", with their attribution. None is set by
// default, and then this panel adds nothing and the page fetches nothing from outside.
//
// GCJ-02 tiles (AutoNavi, Tencent) are moved onto our WGS-84 data, never the other way:
// each tile the map asks for is composed from the provider's tiles shifted by the GCJ-02
// offset at the tile's centre, read from the server's table (GET map/gcj02-offsets.json,
// sampled from the project's own conversion, geodata/crs.py), so grids, check-ins, walks and clicks
// keep the coordinates the API speaks.
import { AttributionControl, addProtocol } from "../vendor/maplibre-gl/maplibre-gl.mjs";

const TILE = 256;
const BELOW = "districts-fill";
const PROTOCOL = "wangge-gcj02";

function lonToX(lon) { return (lon + 180) / 360; }
function latToY(lat) {
  const sin = Math.sin((lat * Math.PI) / 180);
  return 0.5 - Math.log((1 + sin) / (1 - sin)) / (4 * Math.PI);
}
function yToLat(y) { return (Math.atan(Math.sinh(Math.PI * (1 - 2 * y))) * 180) / Math.PI; }

// The table's offset at a point, bilinear between its nodes; clamped at its edges.
function offsetAt(table, lon, lat) {
  const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
  const fx = clamp((lon - table.west) / table.step, table.columns - 1.000001);
  const fy = clamp((lat - table.south) / table.step, table.rows - 1.000001);
  const i = Math.min(Math.floor(fx), table.columns - 2);
  const j = Math.min(Math.floor(fy), table.rows - 2);
  const tx = fx - i;
  const ty = fy - j;
  const lerp = (v) => (v[j][i] * (1 - tx) + v[j][i + 1] * tx) * (1 - ty)
    + (v[j + 1][i] * (1 - tx) + v[j + 1][i + 1] * tx) * ty;
  return table.columns < 2 || table.rows < 2 ? [table.dlon[0][0], table.dlat[0][0]] : [lerp(table.dlon), lerp(table.dlat)];
}

function tileUrl(templates, scheme, z, x, y) {
  const template = templates[(x + y) % templates.length];
  const row = scheme === "tms" ? 2 ** z - 1 - y : y;
  return template.replace("{z}", z).replace("{x}", x).replace("{y}", row);
}

async function fetchImage(url, signal) {
  const response = await fetch(url, { signal, credentials: "omit", referrerPolicy: "no-referrer" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return createImageBitmap(await response.blob());
}

// wangge-gcj02://base/{z}/{x}/{y}: the WGS-84 tile, drawn from the provider's GCJ-02 tiles.
// Within a tile the offset changes by under a pixel, so one shift per tile is enough.
function gcj02Protocol(layers, scheme, table) {
  return async (params, abortController) => {
    const [layer, z, x, y] = params.url.slice(PROTOCOL.length + 3).split("/");
    const [zoom, column, row] = [Number(z), Number(x), Number(y)];
    const n = 2 ** zoom;
    const lon = ((column + 0.5) / n) * 360 - 180;
    const lat = yToLat((row + 0.5) / n);
    const [dlon, dlat] = offsetAt(table, lon, lat);
    // Where this tile's top-left corner lies in the provider's pixels at this zoom.
    const left = (column + lonToX(lon + dlon) * n - lonToX(lon) * n) * TILE;
    const top = (row + latToY(lat + dlat) * n - latToY(lat) * n) * TILE;
    const canvas = new OffscreenCanvas(TILE, TILE);
    const context = canvas.getContext("2d");
    const first = [Math.floor(left / TILE), Math.floor(top / TILE)];
    const draws = [];
    for (const tx of [first[0], first[0] + 1]) {
      for (const ty of [first[1], first[1] + 1]) {
        const dx = tx * TILE - left;
        const dy = ty * TILE - top;
        if (ty < 0 || ty >= n || dx >= TILE || dy >= TILE) continue;
        const url = tileUrl(layers[layer], scheme, zoom, ((tx % n) + n) % n, ty);
        draws.push(fetchImage(url, abortController.signal).then((image) => context.drawImage(image, dx, dy)));
      }
    }
    const results = await Promise.allSettled(draws);
    if (!results.some((r) => r.status === "fulfilled")) throw new Error(`no provider tile for ${params.url}`);
    const blob = await canvas.convertToBlob({ type: "image/png" });
    return { data: await blob.arrayBuffer() };
  };
}

// The offsets over the city (the districts' bounds, a margin around them).
async function offsetTable(map) {
  let bounds;
  try {
    bounds = (await (await fetch("tiles/districts.json")).json()).bounds;
  } catch (error) {
    const view = map.getBounds();
    bounds = [view.getWest(), view.getSouth(), view.getEast(), view.getNorth()];
  }
  const margin = 0.5;
  const box = [Math.max(bounds[0] - margin, -180), Math.max(bounds[1] - margin, -90),
    Math.min(bounds[2] + margin, 180), Math.min(bounds[3] + margin, 90)];
  const response = await fetch(`map/gcj02-offsets.json?bbox=${box.map((v) => v.toFixed(4)).join(",")}`);
  if (!response.ok) throw new Error(`GCJ-02 offsets: HTTP ${response.status}`);
  return response.json();
}

function addRaster(map, id, tiles, basemap, below) {
  map.addSource(id, {
    type: "raster", tiles, tileSize: TILE, maxzoom: basemap.max_zoom,
    scheme: basemap.crs === "gcj02" ? "xyz" : basemap.scheme, attribution: basemap.attribution,
  });
  map.addLayer({ id, type: "raster", source: id }, below);
}

async function addRasterBasemap(map, basemap, below) {
  let tiles = basemap.tiles;
  let labels = basemap.label_tiles;
  if (basemap.crs === "gcj02") {
    const table = await offsetTable(map);
    addProtocol(PROTOCOL, gcj02Protocol({ base: basemap.tiles, labels: basemap.label_tiles }, basemap.scheme, table));
    tiles = [`${PROTOCOL}://base/{z}/{x}/{y}`];
    labels = labels.length ? [`${PROTOCOL}://labels/{z}/{x}/{y}`] : [];
  }
  addRaster(map, "basemap", tiles, basemap, below);
  if (labels.length) addRaster(map, "basemap-labels", labels, basemap, below);
}

// A style document's sources and layers, renamed "basemap:…", all below our layers.
async function addStyleBasemap(map, basemap, below) {
  const response = await fetch(basemap.style_url, { credentials: "omit" });
  if (!response.ok) throw new Error(`basemap style: HTTP ${response.status}`);
  const style = await response.json();
  const absolute = (url) => (url ? new URL(url, basemap.style_url).href : url);
  if (style.glyphs) map.setGlyphs(absolute(style.glyphs));
  if (typeof style.sprite === "string") map.setSprite(absolute(style.sprite));
  for (const [id, source] of Object.entries(style.sources || {})) {
    const copy = { ...source };
    if (copy.url) copy.url = absolute(copy.url);
    if (copy.tiles) copy.tiles = copy.tiles.map(absolute);
    if (!copy.attribution && basemap.attribution) copy.attribution = basemap.attribution;
    map.addSource(`basemap:${id}`, copy);
  }
  for (const layer of style.layers || []) {
    const copy = { ...layer, id: `basemap:${layer.id}` };
    if (layer.source) copy.source = `basemap:${layer.source}`;
    map.addLayer(copy, below);
  }
}

export async function install(context) {
  const { map } = context;
  const { basemap } = await context.getJson("map/config.json");
  document.body.dataset.basemap = basemap ? basemap.name : "none";
  if (!basemap) return;
  const below = map.getLayer(BELOW) ? BELOW : undefined;
  // Count the basemap's tiles as they arrive (a hook for the browser test).
  let loaded = 0;
  map.on("sourcedata", (event) => {
    if (event.tile && event.sourceId.startsWith("basemap")) {
      loaded += 1;
      document.body.dataset.basemapTiles = String(loaded);
    }
  });
  if (basemap.kind === "style") await addStyleBasemap(map, basemap, below);
  else await addRasterBasemap(map, basemap, below);
  // The page's grey wash of the districts would hide the basemap: keep a hint of it.
  if (below) map.setPaintProperty(BELOW, "fill-opacity", ["interpolate", ["linear"], ["zoom"], 9, 0.3, 12, 0.05]);
  map.addControl(new AttributionControl({ compact: false }), "bottom-right");
  const ids = map.getStyle().layers.map((layer) => layer.id);
  document.body.dataset.basemapBelow = ids[ids.findLastIndex((id) => id.startsWith("basemap")) + 1] || "";
}
