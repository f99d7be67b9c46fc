// Now: live occupancy per zone on the floor plan, gateway and beacon health; refreshed in place.

import { getJson, storeInfo } from "./api.js";
import { el, empty, errorMessage, table, when } from "./ui.js";

const REFRESH_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

// Zone polygons from the stores API; null when the store has none, and zones become tiles.
async function floorPlan(storeId) {
  const zones = (await storeInfo(storeId)).zones
    .map((zone) => ({ id: zone.zone_id, polygon: zone.polygon }))
    .filter((zone) => Array.isArray(zone.polygon) && zone.polygon.length >= 3);
  return zones.length ? zones : null;
}

// Light to dark blue with the count: lightness, not hue, carries the number.
function shade(count, most) {
  const level = most ? count / most : 0;
  const lightness = 94 - Math.round(level * 58);
  return `hsl(207, 70%, ${lightness}%)`;
}

function drawPlan(zones, counts) {
  const points = zones.flatMap((zone) => zone.polygon);
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const most = Math.max(1, ...Object.values(counts));
  // Floor coordinates have y up; the screen has y down.
  const plan = svg("svg", {
    class: "floorplan",
    viewBox: `${minX - 0.2} ${-maxY - 0.2} ${maxX - minX + 0.4} ${maxY - minY + 0.4}`,
    role: "img",
    "aria-label": "Floor plan with the number of people in each zone",
  });
  for (const zone of zones) {
    const count = counts[zone.id] ?? 0;
    const group = svg("g", { "data-zone": zone.id });
    group.append(svg("polygon", {
      points: zone.polygon.map(([x, y]) => `${x},${-y}`).join(" "),
      fill: shade(count, most),
      stroke: "#102a43",
      "stroke-width": "0.05",
    }));
    const cx = zone.polygon.reduce((sum, p) => sum + p[0], 0) / zone.polygon.length;
    const cy = zone.polygon.reduce((sum, p) => sum + p[1], 0) / zone.polygon.length;
    const ink = count / most > 0.5 ? "#ffffff" : "#1a1a1a";
    // The count large, the zone's name small above it, so that narrow zones still fit.
    const label = svg("text", { x: cx, y: -cy, "text-anchor": "middle", fill: ink, "aria-label": `${zone.id}: ${count}` });
    const name = svg("tspan", { x: cx, dy: "-0.2", class: "zone-name" });
    name.textContent = zone.id;
    const number = svg("tspan", { x: cx, dy: "0.75", class: "zone-count", "data-count": zone.id });
    number.textContent = count;
    label.append(name, number);
    group.append(label);
    plan.append(group);
  }
  return plan;
}

function drawTiles(counts) {
  const most = Math.max(1, ...Object.values(counts));
  return el("div", { class: "tiles" }, Object.entries(counts).map(([zone, count]) => el("div", {
    class: "tile", "data-zone": zone, style: `background:${shade(count, most)};color:${count / most > 0.5 ? "#fff" : "#1a1a1a"}`,
  }, el("div", {}, zone), el("div", { class: "value", "data-count": zone }, count))));
}

function healthTables(health) {
  const parts = [el("h3", {}, "Gateways")];
  if (!health.gateways.length) {
    parts.push(empty("No gateway has reported yet.",
      "Set up a gateway for this store: see docs/raspberry-pi.md. It appears here with its first status message."));
  } else {
    parts.push(table([
      { key: "gateway_id", label: "Gateway" },
      { key: "online", label: "State", format: (online, row) => el("span", { class: online ? "status-ok" : "status-bad" }, online ? "online" : `${row.state} (silent)`) },
      { key: "last_report", label: "Last report", format: when },
      { key: "adverts_per_s", label: "Adverts/s", num: true, format: (v) => (v ?? 0).toFixed(1) },
      { key: "outbox_depth", label: "Queued", num: true },
      { key: "cpu_temp_c", label: "CPU °C", num: true },
      { key: "config_error", label: "Config", format: (v) => (v ? el("span", { class: "status-bad" }, v) : "ok") },
    ], health.gateways));
  }
  parts.push(el("h3", {}, "Beacons"));
  if (!health.beacons.length) {
    parts.push(empty("No beacon report yet.",
      "List the store's beacons in the gateway settings (store_beacons); each gateway reports their health and battery."));
  } else {
    parts.push(table([
      { key: "beacon_id", label: "Beacon" },
      { key: "gateway_id", label: "Heard by" },
      { key: "missing", label: "State", format: (missing) => el("span", { class: missing ? "status-bad" : "status-ok" }, missing ? "missing" : "ok") },
      { key: "battery_mv", label: "Battery", num: true, format: (mv, row) => mv === null ? "no telemetry"
        : el("span", { class: row.battery_low ? "status-warn" : "status-ok" }, `${(mv / 1000).toFixed(2)} V${row.battery_low ? " (low)" : ""}`) },
      { key: "last_seen", label: "Last seen", format: when },
    ], health.beacons));
  }
  return parts;
}

export async function renderNow(root, storeId, signal) {
  const zones = await floorPlan(storeId);
  const live = el("div", { id: "live" });
  const updated = el("p", { class: "legend-note", id: "updated" });
  root.replaceChildren(el("h2", {}, "Now"), live, updated);

  async function refresh() {
    try {
      const [occupancy, health] = await Promise.all([
        getJson("/v1/stats/occupancy", { store_id: storeId }),
        getJson("/v1/stats/health", { store_id: storeId }),
      ]);
      if (signal.aborted) return;
      const counts = Object.fromEntries(occupancy.zones.map((z) => [z.zone_id, z.present]));
      for (const zone of zones || []) counts[zone.id] ??= 0;
      const parts = [
        el("div", { class: "cards" }, el("div", { class: "card" },
          el("div", { class: "label" }, "In the store now"),
          el("div", { class: "value", id: "in-store" }, occupancy.in_store))),
        el("h3", {}, "Zones"),
      ];
      if (zones) parts.push(drawPlan(zones, counts));
      else if (Object.keys(counts).length) parts.push(drawTiles(counts));
      else parts.push(empty("No zone has seen anyone yet.",
        "Zones appear once a gateway reports presence; define floor-plan polygons for them in the store's settings."));
      parts.push(...healthTables(health));
      live.replaceChildren(...parts);
      updated.textContent = `Updated ${new Date(occupancy.at).toLocaleTimeString()}, every ${REFRESH_MS / 1000} s.`;
    } catch (error) {
      if (!signal.aborted) live.replaceChildren(errorMessage(error));
    }
  }

  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
