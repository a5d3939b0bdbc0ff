/*
 * burnscape web map: fire events, burned pixels and active fires for a time
 * range, with Plotly charts. Every figure comes from the OGC API of the server
 * that serves this page (plus its /map/api/bins route when the view holds more
 * features than the page draws one by one).
 */
(function () {
  "use strict";

  const settings = JSON.parse(document.getElementById("settings").textContent);
  const DAY_MS = 86400000;
  const COLLECTIONS = {
    events: "fire-events",
    progression: "daily-progression",
    pixels: "burned-pixels",
    fires: "active-fires",
  };
  // Sequential colour maps (plasma for dates, YlOrRd for confidence).
  const RAMPS = {
    date: ["#0d0887", "#5302a3", "#8b0aa5", "#b83289", "#db5c68", "#f48849",
      "#febd2a", "#f0f921"],
    confidence: ["#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a",
      "#e31a1c", "#bd0026", "#800026"],
  };
  const PIXEL_CELL_PX = 6;
  const FIRE_CELL_PX = 70;
  const number = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  const served = new Set(settings.collections);
  const binned = new Set(settings.binned);

  const state = {
    start: null,
    end: null,
    colour: "date",
    generation: 0,
    controller: null,
    extent: null,
    pixels: { mode: "none", matched: 0, note: "" },
    selected: null,
    openFromUrl: false,
  };

  // ---------------------------------------------------------------- dates

  function toDay(iso) {
    return Math.floor(Date.parse(iso.slice(0, 10) + "T00:00:00Z") / DAY_MS);
  }

  function toIso(day) {
    return new Date(Math.round(day) * DAY_MS).toISOString().slice(0, 10);
  }

  // ---------------------------------------------------------------- API

  // An API failure: the message says what failed; ``source`` names where.
  class ApiError extends Error {
    constructor(message, source) {
      super(message);
      this.source = source;
    }
  }

  function shortUrl(url) {
    return decodeURIComponent(url.replace(location.origin, ""));
  }

  function sourceOf(url) {
    const path = new URL(url, location.href).pathname;
    const match = path.match(/\/collections\/([^/]+)/) || path.match(/\/api\/bins\/([^/]+)/);
    return match ? match[1] : shortUrl(url);
  }

  async function getJson(url, signal) {
    let response;
    try {
      response = await fetch(url, { signal, headers: { Accept: "application/json" } });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(`cannot reach the API (${err.message})`, sourceOf(url));
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      if (err.name === "AbortError") throw err;
    }
    if (!response.ok) {
      const detail = (body && (body.description || body.detail)) || response.statusText;
      throw new ApiError(`the API answered ${response.status}: ${detail}`, sourceOf(url));
    }
    if (body === null) {
      throw new ApiError("the API answered with something other than JSON", sourceOf(url));
    }
    return body;
  }

  function itemsUrl(collection, params) {
    const query = new URLSearchParams({ f: "json", ...params });
    return `${settings.apiRoot}/collections/${collection}/items?${query}`;
  }

  async function countItems(collection, params, signal) {
    const url = itemsUrl(collection, { ...params, resulttype: "hits", limit: 1 });
    const body = await getJson(url, signal);
    return Number(body.numberMatched);
  }

  async function fetchAll(collection, params, signal, maxFeatures = Infinity) {
    const features = [];
    let offset = 0;
    while (features.length < maxFeatures) {
      const limit = Math.min(settings.pageSize, maxFeatures - features.length);
      const page = await getJson(itemsUrl(collection, { ...params, limit, offset }), signal);
      for (const feature of page.features) features.push(feature);
      const matched = page.numberMatched;
      if (page.features.length < limit || page.features.length === 0) break;
      if (matched !== undefined && features.length >= matched) break;
      offset += page.features.length;
    }
    return features;
  }

  // Grid of bins over the view: cells of about cellPx screen pixels.
  async function fetchBins(collection, params, signal, cellPx) {
    const size = map.getSize();
    const query = new URLSearchParams({
      bbox: params.bbox,
      datetime: params.datetime,
      nx: String(Math.max(1, Math.min(512, Math.round(size.x / cellPx)))),
      ny: String(Math.max(1, Math.min(512, Math.round(size.y / cellPx)))),
    });
    return getJson(`${settings.mapRoot}/api/bins/${collection}?${query}`, signal);
  }

  // ---------------------------------------------------------------- colours

  function hexToRgb(hex) {
    const value = parseInt(hex.slice(1), 16);
    return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
  }

  function rampColour(ramp, t) {
    const stops = RAMPS[ramp];
    const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    const a = hexToRgb(stops[i]);
    const b = hexToRgb(stops[i + 1]);
    const f = x - i;
    const mix = a.map((v, k) => Math.round(v + (b[k] - v) * f));
    return `rgb(${mix[0]},${mix[1]},${mix[2]})`;
  }

  function dateFraction(day) {
    const first = toDay(state.start);
    const span = Math.max(1, toDay(state.end) - first);
    return (day - first) / span;
  }

  function pixelColour(day, confidence) {
    return state.colour === "date"
      ? rampColour("date", dateFraction(day))
      : rampColour("confidence", confidence);
  }

  // ---------------------------------------------------------------- map

  const map = L.map("map", { minZoom: 2, maxZoom: 18 });
  map.createPane("basemap").style.zIndex = 150;
  map.createPane("pixels").style.zIndex = 410;
  map.createPane("events").style.zIndex = 420;
  const pixelRenderer = L.canvas({ pane: "pixels", padding: 0.2 });

  const eventsLayer = L.geoJSON(null, {
    pane: "events",
    style: eventStyle,
    onEachFeature: (feature, layer) => {
      layer.bindPopup(eventPopup(feature.properties, feature.id), { maxWidth: 360 });
      layer.on("click", () => selectEvent(feature));
    },
  });
  function eventStyle(feature) {
    const selected = eventId(feature) === state.selected;
    return {
      color: selected ? "#00bcd4" : "#1a1a1a",
      weight: selected ? 3 : 1.3,
      fillColor: "#1a1a1a",
      fillOpacity: 0.04,
    };
  }
  const pixelsLayer = L.layerGroup();
  const firesLayer = L.layerGroup();
  const clusters = L.markerClusterGroup({ chunkedLoading: true, maxClusterRadius: 50 });

  const baseLayers = {};
  const plain = L.layerGroup();
  baseLayers["Plain background (offline)"] = plain;
  const countries = L.geoJSON(null, {
    pane: "basemap",
    renderer: L.canvas({ pane: "basemap" }),
    interactive: false,
    style: { color: "#9a9a9a", weight: 0.7, fillColor: "#f6f4ee", fillOpacity: 1 },
    attribution: "Countries: Natural Earth 1:10m (world-atlas)",
  });
  baseLayers["Countries (offline)"] = countries;
  for (const item of settings.basemaps) {
    baseLayers[item.name] = L.tileLayer(item.url, {
      attribution: item.attribution,
      maxZoom: 19,
    });
  }
  const overlays = {
    "Fire events": eventsLayer,
    "Burned pixels": pixelsLayer,
    "Active fires": firesLayer,
  };
  L.control.layers(baseLayers, overlays, { collapsed: true }).addTo(map);
  L.control.scale({ imperial: false }).addTo(map);
  pixelsLayer.addTo(map);
  eventsLayer.addTo(map);
  firesLayer.addTo(map);

  function loadCountries() {
    const url = `${settings.mapRoot}/vendor/world-atlas/countries-10m.json`;
    return fetch(url)
      .then((response) => response.json())
      .then((topo) => {
        const world = topojson.feature(topo, topo.objects.countries);
        world.features.forEach(unwrapAntimeridian);
        countries.addData(world);
      })
      .catch((err) => console.warn("Country outlines unavailable:", err.message));
  }

  // Rings crossing the antimeridian (Russia, Fiji) jump by 360° in longitude,
  // which a flat map draws as lines across the world: make them continuous,
  // and close a ring around a pole (Antarctica) along the pole.
  function unwrapAntimeridian(feature) {
    const geometry = feature.geometry;
    if (!geometry) return;
    const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
      : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
    for (const polygon of polygons) {
      polygon.forEach((ring, k) => { polygon[k] = unwrapRing(ring); });
    }
  }

  function unwrapRing(ring) {
    let shift = 0;
    const out = [ring[0]];
    for (let k = 1; k < ring.length; k++) {
      const step = ring[k][0] - ring[k - 1][0];
      if (step > 180) shift -= 360;
      if (step < -180) shift += 360;
      out.push([ring[k][0] + shift, ring[k][1]]);
    }
    if (shift !== 0) {
      const pole = out[0][1] < 0 ? -90 : 90;
      out.push([out[out.length - 1][0], pole], [out[0][0], pole], out[0]);
    }
    return out;
  }

  function viewBbox() {
    const b = map.getBounds();
    const west = Math.max(-180, b.getWest());
    const east = Math.min(180, b.getEast());
    const south = Math.max(-90, b.getSouth());
    const north = Math.min(90, b.getNorth());
    return [west, south, east, north].map((v) => v.toFixed(5)).join(",");
  }

  // ---------------------------------------------------------------- legend

  const legend = L.control({ position: "bottomright" });
  legend.onAdd = () => {
    const div = L.DomUtil.create("div", "legend");
    div.id = "legend";
    return div;
  };
  legend.addTo(map);

  function updateLegend() {
    const div = document.getElementById("legend");
    const ramp = RAMPS[state.colour];
    const gradient = `linear-gradient(to right, ${ramp.join(", ")})`;
    let title, ticks;
    if (state.colour === "date") {
      const span = toDay(state.end) - toDay(state.start);
      const mid = toIso(toDay(state.start) + Math.floor(span / 2));
      title = "Burn date";
      ticks = span < 1 ? [state.start] : span < 2 ? [state.start, state.end]
        : [state.start, mid, state.end];
    } else {
      title = "Confidence";
      ticks = ["0", "0.5", "1"];
    }
    div.dataset.mode = state.colour;
    div.innerHTML =
      `<div class="title">${title}</div>` +
      `<div class="ramp" style="background:${gradient}"></div>` +
      `<div class="ticks">${ticks.map((t) => `<span>${t}</span>`).join("")}</div>` +
      (state.pixels.note ? `<div class="note">${state.pixels.note}</div>` : "");
  }

  // ---------------------------------------------------------------- layers

  function setCount(id, value, text) {
    const element = document.getElementById(id);
    element.dataset.value = value === null ? "" : String(value);
    element.textContent = text;
  }

  async function loadEvents(params, signal, generation) {
    if (!served.has(COLLECTIONS.events)) return setCount("count-events", null, "not served");
    const features = await fetchAll(COLLECTIONS.events, params, signal);
    if (generation !== state.generation) return;
    eventsLayer.clearLayers();
    eventsLayer.addData({ type: "FeatureCollection", features });
    const area = features.reduce((sum, f) => sum + Number(f.properties.area_ha || 0), 0);
    setCount("count-events", features.length, number.format(features.length));
    setCount("count-area", area, `${number.format(area)} ha`);
    if (state.openFromUrl) {
      // An event named in the page's URL (?event=...) opens once it is on the map.
      const layer = eventsLayer.getLayers().find((l) => eventId(l.feature) === state.selected);
      if (layer) {
        state.openFromUrl = false;
        layer.openPopup();
        selectEvent(layer.feature);
      }
    }
  }

  function eventId(feature) {
    return feature.id ?? feature.properties.event_id;
  }

  async function loadPixels(params, signal, generation) {
    if (!served.has(COLLECTIONS.pixels)) return setCount("count-pixels", null, "not served");
    const matched = await countItems(COLLECTIONS.pixels, params, signal);
    let layer;
    if (matched <= settings.pixelLimit || !binned.has(COLLECTIONS.pixels)) {
      // Without server bins (not a GeoPackage store) draw at most the limit.
      const features = await fetchAll(
        COLLECTIONS.pixels, params, signal, settings.pixelLimit);
      if (generation !== state.generation) return;
      layer = L.geoJSON({ type: "FeatureCollection", features }, {
        renderer: pixelRenderer,
        interactive: false,
        style: pixelStyle,
      });
      const note = features.length < matched
        ? `Showing the first ${number.format(features.length)} of ` +
          `${number.format(matched)} burned pixels: zoom in to see all.`
        : "";
      state.pixels = { mode: "features", matched, note };
    } else {
      const bins = await fetchBins(COLLECTIONS.pixels, params, signal, PIXEL_CELL_PX);
      if (generation !== state.generation) return;
      layer = binRectangles(bins);
      const cells = bins.cells.count.length;
      const size = bins.cell_size[0].toPrecision(2);
      state.pixels = {
        mode: "bins",
        matched,
        note: `${number.format(matched)} burned pixels in view, more than ` +
          `${number.format(settings.pixelLimit)}: shown as ${number.format(cells)} ` +
          `cells of ${size}° (colour: the cell's mean).`,
      };
    }
    pixelsLayer.clearLayers();
    pixelsLayer.addLayer(layer);
    setCount("count-pixels", matched,
      number.format(matched) + (state.pixels.mode === "bins" ? " (binned)" : ""));
    updateLegend();
  }

  function pixelStyle(feature) {
    const p = feature.properties;
    const colour = pixelColour(toDay(p.burn_date), Number(p.confidence));
    // A hairline of the fill colour closes the seams between adjacent pixels.
    return { color: colour, weight: 0.5, opacity: 1, fillColor: colour, fillOpacity: 1 };
  }

  function binRectangles(bins) {
    const [minx, miny] = bins.bbox;
    const [dx, dy] = bins.cell_size;
    const cells = bins.cells;
    const group = L.featureGroup();
    for (let k = 0; k < cells.count.length; k++) {
      const west = minx + cells.i[k] * dx;
      const south = miny + cells.j[k] * dy;
      const rectangle = L.rectangle([[south, west], [south + dy, west + dx]], {
        renderer: pixelRenderer,
        interactive: false,
        stroke: false,
        fillOpacity: 0.85,
      });
      rectangle.cell = { day: cells.day_mean[k], confidence: cells.confidence_mean[k] };
      rectangle.setStyle({ fillColor: pixelColour(rectangle.cell.day, rectangle.cell.confidence) });
      group.addLayer(rectangle);
    }
    return group;
  }

  function recolourPixels() {
    pixelsLayer.eachLayer((layer) => {
      if (state.pixels.mode === "features") {
        layer.setStyle(pixelStyle);
      } else {
        layer.eachLayer((cell) =>
          cell.setStyle({ fillColor: pixelColour(cell.cell.day, cell.cell.confidence) }));
      }
    });
    updateLegend();
  }

  async function loadFires(params, signal, generation) {
    if (!served.has(COLLECTIONS.fires)) return setCount("count-fires", null, "not served");
    const matched = await countItems(COLLECTIONS.fires, params, signal);
    let layer;
    let text = number.format(matched);
    if (matched <= settings.fireLimit || !binned.has(COLLECTIONS.fires)) {
      const features = await fetchAll(COLLECTIONS.fires, params, signal, settings.fireLimit);
      if (features.length < matched) text += ` (${number.format(features.length)} shown)`;
      if (generation !== state.generation) return;
      clusters.clearLayers();
      clusters.addLayers(features.filter((f) => f.geometry).map(fireMarker));
      layer = clusters;
    } else {
      const bins = await fetchBins(COLLECTIONS.fires, params, signal, FIRE_CELL_PX);
      if (generation !== state.generation) return;
      layer = fireBins(bins);
      text += " (binned)";
    }
    firesLayer.clearLayers();
    firesLayer.addLayer(layer);
    setCount("count-fires", matched, text);
  }

  function fireMarker(feature) {
    const [lon, lat] = feature.geometry.coordinates;
    const p = feature.properties;
    const marker = L.marker([lat, lon], {
      icon: L.divIcon({ className: "fire-dot", iconSize: [9, 9] }),
      title: `active fire ${p.acq_date || ""}`,
    });
    const rows = ["acq_date", "frp", "confidence", "satellite", "instrument", "daynight"]
      .filter((k) => p[k] !== undefined && p[k] !== null)
      .map((k) => `<tr><td>${k}</td><td>${escapeHtml(p[k])}</td></tr>`);
    marker.bindPopup(`<table>${rows.join("")}</table>`);
    return marker;
  }

  function fireBins(bins) {
    const group = L.featureGroup();
    const cells = bins.cells;
    for (let k = 0; k < cells.count.length; k++) {
      const count = cells.count[k];
      const size = count < 10 ? "small" : count < 100 ? "medium" : "large";
      const label = count >= 1000 ? `${(count / 1000).toFixed(1)}k` : String(count);
      const marker = L.marker([cells.lat[k], cells.lon[k]], {
        icon: L.divIcon({
          className: `marker-cluster marker-cluster-${size} fire-bin`,
          html: `<div><span>${label}</span></div>`,
          iconSize: [40, 40],
        }),
        title: `${count} active fires`,
      });
      marker.on("click", () => map.setView([cells.lat[k], cells.lon[k]], map.getZoom() + 2));
      group.addLayer(marker);
    }
    return group;
  }

  // ---------------------------------------------------------------- charts

  const PLOT_CONFIG = { displaylogo: false, responsive: true };

  function plotLayout(title, extra) {
    return {
      title: { text: title, font: { size: 13 } },
      margin: { l: 55, r: 55, t: 36, b: 40 },
      showlegend: false,
      bargap: 0.15,
      ...extra,
    };
  }

  async function loadDaily(params, signal, generation) {
    const chart = document.getElementById("chart-daily");
    if (!served.has(COLLECTIONS.progression)) {
      chart.textContent = "No daily progression is served.";
      return;
    }
    const features = await fetchAll(COLLECTIONS.progression, params, signal);
    if (generation !== state.generation) return;
    const perDay = new Map();
    for (const f of features) {
      const day = String(f.properties.date).slice(0, 10);
      perDay.set(day, (perDay.get(day) || 0) + Number(f.properties.area_ha || 0));
    }
    const days = [...perDay.keys()].sort();
    const areas = days.map((d) => perDay.get(d));
    let running = 0;
    const cumulative = areas.map((a) => (running += a));
    const total = running;
    chart.dataset.totalHa = String(total);
    const lastDay = toIso(toDay(state.end) + 1);
    Plotly.react(chart, [
      { type: "bar", name: "area per day", x: days, y: areas, marker: { color: "#e65100" },
        hovertemplate: "%{x}: %{y:.1f} ha<extra></extra>" },
      { type: "scatter", mode: "lines", name: "cumulative", line: { shape: "hv", color: "#333" },
        x: [state.start, ...days, lastDay], y: [0, ...cumulative, total], yaxis: "y2",
        hovertemplate: "%{x}: %{y:.1f} ha so far<extra></extra>" },
    ], plotLayout(`Area burned per day (total ${number.format(total)} ha)`, {
      xaxis: { type: "date", range: [state.start, lastDay] },
      yaxis: { title: { text: "ha per day" }, rangemode: "tozero" },
      yaxis2: { title: { text: "cumulative ha" }, overlaying: "y", side: "right",
        rangemode: "tozero", showgrid: false },
    }), PLOT_CONFIG);
  }

  async function selectEvent(feature) {
    const id = eventId(feature);
    state.selected = id;
    eventsLayer.setStyle(eventStyle);
    updateUrl();
    document.getElementById("event-title").textContent = `Selected event ${id}`;
    document.getElementById("event-hint").hidden = true;
    try {
      const [growth, pixels] = await Promise.all([
        fetchAll(COLLECTIONS.progression, { event_id: id, sortby: "date" }),
        fetchAll(COLLECTIONS.pixels,
          { event_id: id, skipGeometry: "true", properties: "confidence" }),
      ]);
      if (state.selected !== id) return;
      drawGrowth(growth, id);
      drawConfidence(pixels, id);
    } catch (err) {
      showError(describeFailures([err]));
    }
  }

  function drawGrowth(features, id) {
    const rows = features.map((f) => f.properties)
      .sort((a, b) => String(a.date).localeCompare(String(b.date)));
    const days = rows.map((r) => String(r.date).slice(0, 10));
    const chart = document.getElementById("chart-growth");
    chart.dataset.eventId = id;
    chart.dataset.finalHa = rows.length ? String(rows[rows.length - 1].cumulative_area_ha) : "0";
    Plotly.react(chart, [
      { type: "bar", name: "area that day", x: days, y: rows.map((r) => r.area_ha),
        marker: { color: "#fb8c00" }, hovertemplate: "%{x}: %{y:.1f} ha<extra></extra>" },
      { type: "scatter", mode: "lines+markers", name: "cumulative", x: days,
        y: rows.map((r) => r.cumulative_area_ha), line: { color: "#333" },
        hovertemplate: "%{x}: %{y:.1f} ha<extra></extra>" },
    ], plotLayout("Growth (area burned, ha)", { xaxis: { type: "date" },
      yaxis: { rangemode: "tozero" } }), PLOT_CONFIG);
  }

  function drawConfidence(features, id) {
    const values = features.map((f) => Number(f.properties.confidence));
    const chart = document.getElementById("chart-confidence");
    chart.dataset.eventId = id;
    chart.dataset.pixels = String(values.length);
    Plotly.react(chart, [
      { type: "histogram", x: values, xbins: { start: 0, end: 1.0001, size: 0.05 },
        marker: { color: "#8e24aa" }, hovertemplate: "%{x}: %{y} pixels<extra></extra>" },
    ], plotLayout(`Confidence of its ${number.format(values.length)} pixels`, {
      xaxis: { range: [0, 1], title: { text: "confidence" } },
      yaxis: { title: { text: "pixels" } },
    }), PLOT_CONFIG);
  }

  function eventPopup(p, id) {
    const rows = [
      ["Area", `${number.format(p.area_ha)} ha`],
      ["Pixels", number.format(p.pixel_count)],
      ["First burn date", p.first_burn_date],
      ["Last burn date", p.last_burn_date],
      ["Duration", `${p.duration_days} days`],
      ["Confidence mean", Number(p.confidence_mean).toFixed(2)],
      ["Confidence max", Number(p.confidence_max).toFixed(2)],
      ["Detector", p.detector],
      ["Run", p.run_id],
    ].filter(([, v]) => v !== undefined && v !== null);
    const link = p.geotiff
      ? `<a href="${settings.mapRoot}/files/${encodeURI(p.geotiff)}" download>GeoTIFF</a>`
      : "";
    return `<div class="event-popup"><strong>${escapeHtml(id)}</strong><table>` +
      rows.map(([k, v]) => `<tr><td>${k}</td><td>${escapeHtml(v)}</td></tr>`).join("") +
      `</table>${link}</div>`;
  }

  function escapeHtml(value) {
    return String(value).replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[c]);
  }

  // ---------------------------------------------------------------- refresh

  function setStatus(kind, text) {
    const status = document.getElementById("status");
    status.dataset.state = kind;
    status.dataset.generation = String(state.generation);
    status.textContent = text;
  }

  function showError(messages) {
    document.getElementById("error-text").textContent = messages.join("; ");
    document.getElementById("error").hidden = false;
  }

  function hideError() {
    document.getElementById("error").hidden = true;
  }

  async function refresh() {
    const generation = ++state.generation;
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    setStatus("loading", "Loading…");
    updateUrl();
    const params = { bbox: viewBbox(), datetime: `${state.start}/${state.end}` };
    const loaders = [loadEvents, loadPixels, loadFires, loadDaily];
    const results = await Promise.allSettled(
      loaders.map((load) => load(params, controller.signal, generation)));
    if (generation !== state.generation) return;
    const failed = results
      .filter((r) => r.status === "rejected" && r.reason?.name !== "AbortError")
      .map((r) => r.reason);
    if (failed.length) {
      clearOnError(results);
      showError(describeFailures(failed));
      setStatus("error", "API error");
    } else {
      hideError();
      setStatus("ready", `${state.start} to ${state.end}`);
    }
    updateLegend();
  }

  // One line per distinct problem, naming the collections it hit.
  function describeFailures(reasons) {
    const bySource = new Map();
    for (const reason of reasons) {
      const message = reason instanceof Error ? reason.message : String(reason);
      if (!bySource.has(message)) bySource.set(message, new Set());
      if (reason?.source) bySource.get(message).add(reason.source);
    }
    return [...bySource].map(([message, sources]) =>
      sources.size ? `${message} (${[...sources].join(", ")})` : message);
  }

  function clearOnError(results) {
    // A layer whose query failed must not keep showing another range's data.
    const ids = ["count-events", "count-pixels", "count-fires", null];
    const layers = [eventsLayer, pixelsLayer, firesLayer, null];
    results.forEach((result, k) => {
      if (result.status !== "rejected") return;
      if (layers[k]) layers[k].clearLayers();
      if (k === 1) state.pixels = { mode: "none", matched: 0, note: "" };
      if (ids[k]) setCount(ids[k], null, "error");
      if (k === 0) setCount("count-area", null, "error");
      if (k === 3) Plotly.purge(document.getElementById("chart-daily"));
    });
  }

  function updateUrl() {
    const query = new URLSearchParams(location.search);
    query.set("start", state.start);
    query.set("end", state.end);
    query.set("colour", state.colour);
    query.set("bbox", viewBbox());
    if (state.selected) query.set("event", state.selected);
    history.replaceState(null, "", `${location.pathname}?${query}`);
  }

  // ---------------------------------------------------------------- controls

  function setRange(start, end) {
    state.start = start;
    state.end = end;
    document.getElementById("start").value = start;
    document.getElementById("end").value = end;
  }

  function applyPreset(name) {
    const end = document.getElementById("end").value || state.end;
    const year = end.slice(0, 4);
    if (name === "week") setRange(toIso(toDay(end) - 6), end);
    if (name === "season") setRange(`${year}-06-01`, `${year}-09-30`);
    if (name === "year") setRange(`${year}-01-01`, `${year}-12-31`);
    if (name === "all" && state.extent) setRange(state.extent[0], state.extent[1]);
    refresh();
  }

  document.getElementById("range").addEventListener("submit", (event) => {
    event.preventDefault();
    setRange(document.getElementById("start").value, document.getElementById("end").value);
    refresh();
  });
  for (const button of document.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => applyPreset(button.dataset.preset));
  }
  for (const radio of document.querySelectorAll('input[name="colour"]')) {
    radio.addEventListener("change", () => {
      state.colour = radio.value;
      recolourPixels();
      updateUrl();
    });
  }
  document.getElementById("error-close").addEventListener("click", hideError);

  // ---------------------------------------------------------------- start

  function temporalExtent(collection) {
    const interval = collection?.extent?.temporal?.interval?.[0];
    if (!interval || !interval[0] || !interval[1]) return null;
    return [interval[0].slice(0, 10), interval[1].slice(0, 10)];
  }

  function spatialExtent(collection) {
    return collection?.extent?.spatial?.bbox?.[0] || null;
  }

  async function start() {
    const query = new URLSearchParams(location.search);
    state.colour = query.get("colour") === "confidence" ? "confidence" : "date";
    state.selected = query.get("event");
    state.openFromUrl = Boolean(state.selected);
    document.querySelector(`input[name="colour"][value="${state.colour}"]`).checked = true;
    // ?base=plain|countries|<name of a configured tile source>
    const keys = { plain: "Plain background (offline)", countries: "Countries (offline)" };
    const base = baseLayers[keys[query.get("base")] || query.get("base")] || countries;
    base.addTo(map);
    map.on("baselayerchange", (event) => {
      const key = Object.keys(keys).find((k) => keys[k] === event.name) || event.name;
      const params = new URLSearchParams(location.search);
      params.set("base", key);
      history.replaceState(null, "", `${location.pathname}?${params}`);
    });
    loadCountries();
    map.fitWorld();
    let described = [];
    try {
      described = (await getJson(`${settings.apiRoot}/collections?f=json`)).collections;
    } catch (err) {
      setRange(query.get("start") || toIso(Date.now() / DAY_MS - 6),
        query.get("end") || toIso(Date.now() / DAY_MS));
      updateLegend();
      showError(describeFailures([err]));
      setStatus("error", "API error");
      return;
    }
    const byId = Object.fromEntries(described.map((c) => [c.id, c]));
    const extents = Object.values(COLLECTIONS).map((id) => temporalExtent(byId[id]))
      .filter(Boolean);
    if (extents.length) {
      state.extent = [extents.map((e) => e[0]).sort()[0],
        extents.map((e) => e[1]).sort().reverse()[0]];
    }
    const main = temporalExtent(byId[COLLECTIONS.events]) || state.extent ||
      [toIso(Date.now() / DAY_MS - 6), toIso(Date.now() / DAY_MS)];
    setRange(query.get("start") || main[0], query.get("end") || main[1]);
    const box = (query.get("bbox") || "").split(",").map(Number);
    const bbox = box.length === 4 && box.every(Number.isFinite) ? box
      : spatialExtent(byId[COLLECTIONS.events]);
    if (bbox) map.fitBounds([[bbox[1], bbox[0]], [bbox[3], bbox[2]]], { animate: false });
    updateLegend();
    let timer = null;
    map.on("moveend", () => {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    });
    await refresh();
  }

  start();
})();
