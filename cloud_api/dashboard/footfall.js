// Footfall: visits per hour against the last 4 weeks, visitors, capture, dwell, zones, peaks.

import { getJson, hasEndpoint, storeInfo } from "./api.js";
import { PALETTE, card, chartBox, duration, el, empty, errorMessage, percent, table } from "./ui.js";

const WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

function isoDay(date, timeZone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(date);
}

function hourChart(canvas, rows) {
  return new window.Chart(canvas, {
    data: {
      labels: rows.map((r) => `${String(r.hour).padStart(2, "0")}:00`),
      datasets: [
        { type: "bar", label: "Today", data: rows.map((r) => r.today), backgroundColor: PALETTE[0] },
        { type: "line", label: "Same weekday, 4-week average", data: rows.map((r) => r.average_4_weeks),
          borderColor: PALETTE[5], backgroundColor: PALETTE[5], borderDash: [6, 4], pointRadius: 2 },
      ],
    },
    options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true, title: { display: true, text: "visits" } } } },
  });
}

function dwellChart(canvas, buckets) {
  const label = (b) => (b.to_s === null ? `≥ ${duration(b.from_s)}` : `${duration(b.from_s)}–${duration(b.to_s)}`);
  return new window.Chart(canvas, {
    type: "bar",
    data: { labels: buckets.map(label), datasets: [{ label: "Visits", data: buckets.map((b) => b.visits), backgroundColor: PALETTE[2] }] },
    options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true } } },
  });
}

function heatmap(zones) {
  if (!zones.rows.length) {
    return empty("No zone stays in this period.",
      `Zone stays count from ${zones.rules.min_zone_stay_s} s; pick a longer period, or check the gateways on the Now page.`);
  }
  const hours = [...new Set(zones.rows.map((r) => r.hour))].sort((a, b) => a - b);
  const cells = new Map(zones.rows.map((r) => [`${r.zone_id}/${r.hour}`, r]));
  const most = Math.max(...zones.rows.map((r) => r.stays));
  return el("table", { class: "heat", "aria-label": "Zone stays per hour" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Zone"), hours.map((h) => el("th", { scope: "col", class: "num" }, `${h}h`)))),
    el("tbody", {}, zones.zones.map((zone) => el("tr", {}, el("th", { scope: "row" }, zone), hours.map((hour) => {
      const cell = cells.get(`${zone}/${hour}`);
      const stays = cell ? cell.stays : 0;
      const level = stays / most;
      return el("td", {
        class: "cell num",
        title: cell ? `${stays} stays, ${duration(cell.dwell_s)} in total` : "no stays",
        style: `background:hsl(25, 85%, ${95 - Math.round(level * 55)}%);color:${level > 0.6 ? "#fff" : "#1a1a1a"}`,
      }, stays);
    })))));
}

export async function renderFootfall(root, storeId, signal) {
  const { timeZone } = await storeInfo(storeId);
  const today = isoDay(new Date(), timeZone);
  const weekAgo = isoDay(new Date(Date.now() - 6 * 86400000), timeZone);
  const from = el("input", { type: "date", name: "from", value: weekAgo });
  const to = el("input", { type: "date", name: "to", value: today });
  const body = el("div");
  const controls = el("form", { class: "controls", onsubmit: (event) => { event.preventDefault(); load(); } },
    el("label", {}, "From", from), el("label", {}, "To", to), el("button", { type: "submit" }, "Show"));
  root.replaceChildren(el("h2", {}, "Footfall"), controls, body);
  const charts = [];
  signal.addEventListener("abort", () => charts.forEach((chart) => chart.destroy()));

  async function load() {
    charts.splice(0).forEach((chart) => chart.destroy());
    const period = { store_id: storeId, from: from.value, to: to.value, tz: timeZone };
    try {
      const withCapture = await hasEndpoint("/v1/stats/capture");
      const [hourly, visitors, dwell, zones, peaks, capture] = await Promise.all([
        getJson("/v1/stats/visits-per-hour", { store_id: storeId, date: to.value, tz: timeZone }),
        getJson("/v1/stats/visitors", period),
        getJson("/v1/stats/dwell", period),
        getJson("/v1/stats/zones", period),
        getJson("/v1/stats/peak-hours", period),
        withCapture ? getJson("/v1/stats/capture", period) : null,
      ]);
      if (signal.aborted) return;
      const rules = visitors.rules;
      const parts = [
        el("p", { class: "legend-note" },
          `Stays shorter than ${rules.min_store_stay_s} s in the store (${rules.min_zone_stay_s} s in a zone) are not counted as visits.`),
        el("div", { class: "cards" },
          card("Visits", visitors.visits, `${visitors.start} to ${visitors.end}`),
          card("Unique visitors", visitors.unique_visitors, `${visitors.identified_visitors} identified, ${visitors.anonymous_visitors} anonymous`),
          card("Returning visitors", percent(visitors.returning_rate_identified),
            `of identified visitors; all visitors: ${percent(visitors.returning_rate_lower)} to ${percent(visitors.returning_rate_upper)}`),
          capture ? card("Capture rate", percent(capture.capture_rate), `${capture.entered} came in, ${capture.passed_by} passed by`) : null,
          card("Median visit", duration(dwell.median_s), `90 % under ${duration(dwell.p90_s)}`)),
        el("p", { class: "legend-note", id: "returning-method" }, visitors.method),
      ];
      parts.push(el("h3", {}, `Visits per hour on ${hourly.date}`));
      if (!visitors.visits && !hourly.total_today && hourly.rows.every((r) => r.average_4_weeks === 0)) {
        parts.push(empty("No visits recorded yet.",
          "Visits appear once a gateway reports shoppers: check the Now page, or see docs/raspberry-pi.md to set one up."));
      } else {
        const hours = chartBox("Visits per hour today against the same weekday of the last 4 weeks");
        parts.push(hours.box);
        charts.push(hourChart(hours.canvas, hourly.rows));
      }
      parts.push(el("h3", {}, "Time in store"));
      if (dwell.buckets.every((b) => b.visits === 0)) {
        parts.push(empty("No visits in this period.", "Choose a longer period above."));
      } else {
        const dwellBox = chartBox("Number of visits by time spent in the store");
        parts.push(dwellBox.box);
        charts.push(dwellChart(dwellBox.canvas, dwell.buckets));
      }
      parts.push(el("h3", {}, "Zone heatmap"), heatmap(zones));
      parts.push(el("h3", {}, "Peak hours"));
      parts.push(peaks.rows.length
        ? table([
          { key: "weekday", label: "Day", format: (d) => WEEKDAYS[d] },
          { key: "hour", label: "Hour", format: (h) => `${String(h).padStart(2, "0")}:00` },
          { key: "average", label: "Visits per day", num: true },
          { key: "visits", label: "Visits in period", num: true },
        ], peaks.rows.slice(0, 10))
        : empty("No peak hours yet.", "They appear with the first visits of the period."));
      body.replaceChildren(...parts);
    } catch (error) {
      if (!signal.aborted) body.replaceChildren(errorMessage(error));
    }
  }

  await load();
}
