// Small DOM helpers shared by the pages.

// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function empty(title, advice) {
  return el("div", { class: "empty", role: "status" }, el("strong", {}, title), el("p", {}, advice));
}

export function card(label, value, note) {
  return el("div", { class: "card" },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, value),
    note ? el("div", { class: "note" }, note) : null);
}

// columns: [{key, label, num, format}]
export function table(columns, rows, caption) {
  return el("table", {},
    caption ? el("caption", {}, caption) : null,
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    el("tbody", {}, rows.map((row) => el("tr", {}, columns.map((c) => {
      const value = c.format ? c.format(row[c.key], row) : row[c.key];
      return el("td", { class: c.num ? "num" : null }, value ?? "–");
    })))));
}

export function percent(value) {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)} %`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "never";
}

export function chartBox(label) {
  const canvas = el("canvas", { role: "img", "aria-label": label });
  return { box: el("div", { class: "chart-box" }, canvas), canvas };
}

export function errorMessage(error) {
  return el("p", { class: "error", role: "alert" }, `Could not load: ${error.message}`);
}
