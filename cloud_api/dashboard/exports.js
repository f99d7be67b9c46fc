// Exports: the CSV of each table the other pages show, from the same endpoints (?format=csv).

import { getBlob, getJson, hasEndpoint, storeInfo } from "./api.js";
import { el, errorMessage } from "./ui.js";

const TABLES = [
  { path: "/v1/stats/occupancy", label: "Occupancy per zone, now", period: false },
  { path: "/v1/stats/visits-per-hour", label: "Visits per hour, today against the last 4 weeks", period: false },
  { path: "/v1/stats/visitors", label: "Visitors and returning visitors", period: true },
  { path: "/v1/stats/capture", label: "Capture rate", period: true },
  { path: "/v1/stats/dwell", label: "Time in store (distribution)", period: true },
  { path: "/v1/stats/zones", label: "Zone heatmap", period: true },
  { path: "/v1/stats/peak-hours", label: "Peak hours", period: true },
];

// The engagement endpoint answers JSON only: its two tables are turned into CSV here.
const ENGAGEMENT_TABLES = [
  {
    id: "engagement-campaigns",
    label: "Engagement per campaign (funnel, revenue, uplift)",
    rows: (data) => data.campaigns.map(({ uplift, ...campaign }) => ({
      ...campaign,
      uplift_treated_rate: uplift.treated_rate,
      uplift_holdout_rate: uplift.holdout_rate,
      uplift_difference: uplift.difference,
      uplift_ci_low: uplift.ci_low,
      uplift_ci_high: uplift.ci_high,
    })),
  },
  {
    id: "engagement-segments",
    label: "Loyalty segments",
    rows: (data) => Object.entries(data.segments).map(([segment, shoppers]) => ({ segment, shoppers })),
  },
  {
    id: "engagement-segment-movement",
    label: "Loyalty segment movement (30 days)",
    rows: (data) => data.segment_movement,
  },
];

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function toCsv(rows) {
  if (!rows.length) return "";
  const columns = Object.keys(rows[0]);
  return [columns, ...rows.map((row) => columns.map((c) => row[c]))]
    .map((line) => line.map(csvCell).join(","))
    .join("\n") + "\n";
}

function save(blob, filename, status) {
  const link = el("a", { href: URL.createObjectURL(blob), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  status.replaceChildren(`Downloaded ${filename}.`);
}

async function download(path, params, status) {
  try {
    const { blob, filename } = await getBlob(path, { ...params, format: "csv" });
    save(blob, filename, status);
  } catch (error) {
    status.replaceChildren(errorMessage(error));
  }
}

async function downloadEngagement(table, storeId, status) {
  try {
    const data = await getJson("/v1/stats/engagement", { store_id: storeId });
    const blob = new Blob([toCsv(table.rows(data))], { type: "text/csv" });
    save(blob, `${table.id}-${storeId}.csv`, status);
  } catch (error) {
    status.replaceChildren(errorMessage(error));
  }
}

export async function renderExports(root, storeId) {
  const days = el("input", { type: "number", name: "days", min: "1", max: "366", value: "7" });
  const status = el("p", { class: "legend-note", role: "status", id: "export-status" });
  const { timeZone } = await storeInfo(storeId);
  const available = [];
  for (const entry of TABLES) {
    if (await hasEndpoint(entry.path)) available.push(entry);
  }
  const engagement = await hasEndpoint("/v1/stats/engagement");
  const params = (entry) => {
    const base = { store_id: storeId, tz: timeZone };
    if (!entry.period) return base;
    const from = new Date(Date.now() - (Number(days.value) - 1) * 86400000);
    const day = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(from);
    return { ...base, from: day };
  };
  root.replaceChildren(
    el("h2", {}, "Exports"),
    el("p", {}, "Each table of the dashboard as CSV, for a spreadsheet. The same files come from the API with ?format=csv."),
    el("label", {}, "Periods cover the last (days)", days),
    el("ul", { class: "exports" },
      available.map((entry) => el("li", {},
        el("button", { type: "button", "data-export": entry.path, onclick: () => download(entry.path, params(entry), status) },
          `Download CSV: ${entry.label}`))),
      engagement ? ENGAGEMENT_TABLES.map((table) => el("li", {},
        el("button", { type: "button", "data-export": table.id, onclick: () => downloadEngagement(table, storeId, status) },
          `Download CSV: ${table.label}`))) : []),
    status,
  );
}
