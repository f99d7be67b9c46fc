// Engagement: offer funnel per campaign, entry-to-notification time, revenue, uplift, segments.

import { getJson, hasEndpoint } from "./api.js";
import { PALETTE, chartBox, duration, el, empty, errorMessage, percent, table } from "./ui.js";

const FUNNEL = ["eligible", "sent", "delivered", "opened", "redeemed"];

function funnelChart(canvas, campaigns) {
  return new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: FUNNEL,
      datasets: campaigns.map((c, i) => ({
        label: c.name || c.campaign_id,
        data: FUNNEL.map((step) => c[step] ?? 0),
        backgroundColor: PALETTE[i % PALETTE.length],
      })),
    },
    options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true } } },
  });
}

function uplift(u) {
  if (!u) return "–";
  const points = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)} pt`);
  return `${points(u.difference)} (95 % CI ${points(u.ci_low)} to ${points(u.ci_high)}); ` +
    `treated ${percent(u.treated_rate)}, holdout ${percent(u.holdout_rate)}`;
}

function segmentsTable(segments) {
  const rows = Object.entries(segments || {}).map(([segment, value]) => ({
    segment,
    value: typeof value === "object" && value !== null
      ? Object.entries(value).map(([k, v]) => `${k}: ${v}`).join(", ")
      : value,
  }));
  if (!rows.length) return empty("No loyalty segments yet.", "Segments appear once shoppers have visits and redemptions.");
  return table([{ key: "segment", label: "Segment" }, { key: "value", label: "Shoppers", num: true }], rows);
}

function movementTable(moves) {
  const rows = (moves || []).filter((m) => m.from_segment !== m.to_segment);
  if (!rows.length) return empty("No shopper changed segment in this period.", "Movement shows once shoppers come back more often, or lapse.");
  return table([
    { key: "from_segment", label: "From" },
    { key: "to_segment", label: "To" },
    { key: "shoppers", label: "Shoppers", num: true },
  ], rows);
}

export async function renderEngagement(root, storeId, signal) {
  root.replaceChildren(el("h2", {}, "Engagement"));
  if (!(await hasEndpoint("/v1/stats/engagement"))) {
    root.append(empty("Engagement statistics are not available on this server.",
      "They come with the campaigns module: upgrade the cloud API, create a campaign, and its funnel shows here."));
    return;
  }
  try {
    const data = await getJson("/v1/stats/engagement", { store_id: storeId });
    if (signal.aborted) return;
    const campaigns = data.campaigns || [];
    if (!campaigns.length) {
      root.append(empty("No campaign has run in this store yet.",
        "Create a campaign for this store; its offer funnel, revenue and uplift appear here."));
    } else {
      const chart = chartBox("Offer funnel per campaign");
      root.append(el("h3", {}, "Offer funnel"), chart.box);
      const instance = funnelChart(chart.canvas, campaigns);
      signal.addEventListener("abort", () => instance.destroy());
      root.append(table([
        { key: "name", label: "Campaign", format: (v, row) => v || row.campaign_id },
        ...FUNNEL.map((step) => ({ key: step, label: step, num: true })),
        { key: "held_out", label: "Held out", num: true },
        { key: "revenue", label: "Revenue", num: true },
        { key: "entry_to_notification_p50_s", label: "Entry → offer (median)", num: true, format: duration },
        { key: "uplift", label: "Uplift vs holdout", format: uplift },
      ], campaigns));
    }
    root.append(el("h3", {}, "Loyalty segments"), segmentsTable(data.segments));
    root.append(el("h3", {}, "Segment movement over the last 30 days"), movementTable(data.segment_movement));
  } catch (error) {
    if (!signal.aborted) root.append(errorMessage(error));
  }
}
