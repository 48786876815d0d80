"use strict";
// Every piece of text from the input or the model goes into the DOM via textContent / createElement only.

const $ = (id) => document.getElementById(id);
const STANCES = ["support", "oppose", "neutral"];

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function fmt(value) {
  if (Array.isArray(value)) return String(value.length);
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(2);
  return value === undefined || value === null ? "" : String(value);
}

function pct(p) {
  return typeof p === "number" ? ` ${(p * 100).toFixed(0)}%` : "";
}

// "Name=alias1,alias2" per line; blank lines skipped.
function parseActors(raw) {
  const actors = [];
  for (const line of raw.split("\n")) {
    const eq = line.indexOf("=");
    const name = (eq < 0 ? line : line.slice(0, eq)).trim();
    if (!name) continue;
    const aliases = eq < 0 ? [] : line.slice(eq + 1).split(",").map((a) => a.trim()).filter(Boolean);
    actors.push({ name, aliases });
  }
  return actors;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").textContent = "";
  $("error").hidden = true;
}

function stanceClass(label) {
  return STANCES.includes(label) ? label : "neutral";
}

// Sentence text with each actor mention wrapped in a <mark class="mention {stance}">; overlapping mentions keep the first.
function renderSentenceText(sentence) {
  const text = String(sentence.text ?? "");
  const base = Number(sentence.start) || 0;
  const spans = [];
  for (const actor of sentence.actors || []) {
    for (const m of actor.mentions || []) {
      const start = m.start - base;
      const end = m.end - base;
      if (Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end <= text.length && start < end) {
        spans.push({ start, end, actor });
      }
    }
  }
  spans.sort((a, b) => a.start - b.start || b.end - a.end);
  const container = el("div", "text");
  let pos = 0;
  for (const span of spans) {
    if (span.start < pos) continue;
    if (span.start > pos) container.append(document.createTextNode(text.slice(pos, span.start)));
    const stance = span.actor.stance || {};
    const label = stanceClass(stance.label);
    const mark = el("mark", `mention ${label}`, text.slice(span.start, span.end));
    mark.dataset.actor = String(span.actor.actor ?? "");
    mark.dataset.stance = label;
    mark.title = `${span.actor.actor}: ${label}${pct(stance.scores && stance.scores[label])}`;
    container.append(mark);
    pos = span.end;
  }
  if (pos < text.length) container.append(document.createTextNode(text.slice(pos)));
  return container;
}

function renderSentence(sentence) {
  const node = el("div", "sentence");
  node.dataset.index = String(sentence.index ?? "");
  node.append(renderSentenceText(sentence));
  const meta = el("div", "meta");
  const sentiment = sentence.sentiment || {};
  const sLabel = String(sentiment.label ?? "");
  const badge = el("span", `badge sentiment ${sLabel}`, `sentiment: ${sLabel}${pct(sentiment.scores && sentiment.scores[sLabel])}`);
  meta.append(badge);
  for (const actor of sentence.actors || []) {
    if (!actor.mentioned) continue;
    const stance = actor.stance || {};
    const label = stanceClass(stance.label);
    const chip = el("span", `badge stance ${label}`, `${actor.actor}: ${label}${pct(stance.scores && stance.scores[label])}`);
    chip.dataset.actor = String(actor.actor ?? "");
    meta.append(chip);
  }
  renderSentenceRelations(sentence, meta);
  node.append(meta);
  return node;
}

function renderSentenceRelations(sentence, meta) {
  for (const r of sentence.relations || []) {
    const label = stanceClass(r.label);
    const chip = el("span", `badge relation ${label}`, `${r.holder} → ${r.target}: ${label}${pct(r.scores && r.scores[label])}`);
    chip.dataset.holder = String(r.holder ?? "");
    chip.dataset.target = String(r.target ?? "");
    meta.append(chip);
  }
}

function renderSummary(actors) {
  const body = $("summary").querySelector("tbody");
  body.replaceChildren();
  for (const a of actors || []) {
    const row = el("tr");
    row.dataset.actor = String(a.actor ?? "");
    row.append(el("td", "actor", a.actor), el("td", "type", a.type));
    for (const key of ["mentions", "support", "oppose", "neutral", "net"]) row.append(el("td", `num ${key}`, fmt(a[key])));
    row.append(el("td", `label ${stanceClass(a.label)}`, a.label));
    body.append(row);
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";
const GRAPH = { width: 560, height: 340, radius: 120, node: 16 };

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// Actors on a circle, one directed edge per non-neutral holder→target pair.
function renderRelationsGraph(relations, actors) {
  const names = [];
  const seen = new Set();
  const add = (name) => {
    const key = String(name ?? "");
    if (key && !seen.has(key)) {
      seen.add(key);
      names.push(key);
    }
  };
  for (const r of relations) {
    add(r.holder);
    add(r.target);
  }
  for (const a of actors || []) add(a.actor);

  const { width, height, radius, node: nodeR } = GRAPH;
  const cx = width / 2;
  const cy = height / 2;
  const root = svg("svg", {
    id: "relations-graph",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": "who supports or opposes whom",
  });
  const defs = svg("defs");
  for (const kind of ["support", "oppose"]) {
    const marker = svg("marker", {
      id: `arrow-${kind}`,
      viewBox: "0 0 10 10",
      refX: 10,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      markerUnits: "strokeWidth",
      orient: "auto",
    });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: `arrow ${kind}` }));
    defs.append(marker);
  }
  root.append(defs);

  const pos = new Map();
  names.forEach((name, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(names.length, 1);
    const r = names.length === 1 ? 0 : radius;
    pos.set(name, { x: cx + r * Math.cos(angle), y: cy + r * Math.sin(angle), angle });
  });

  const edges = svg("g", { class: "edges" });
  const drawn = new Set(relations.filter((r) => r.label === "support" || r.label === "oppose").map((r) => `${r.holder}\u0000${r.target}`));
  for (const r of relations) {
    if (r.label !== "support" && r.label !== "oppose") continue;
    const a = pos.get(String(r.holder));
    const b = pos.get(String(r.target));
    if (!a || !b || a === b) continue;
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const len = Math.hypot(dx, dy) || 1;
    const ux = dx / len;
    const uy = dy / len;
    // Shift sideways when the reverse pair is drawn too, so both arrows stay visible.
    const shift = drawn.has(`${r.target}\u0000${r.holder}`) ? 5 : 0;
    const ox = -uy * shift;
    const oy = ux * shift;
    const line = svg("line", {
      class: `edge ${r.label}`,
      x1: (a.x + ux * nodeR + ox).toFixed(1),
      y1: (a.y + uy * nodeR + oy).toFixed(1),
      x2: (b.x - ux * (nodeR + 2) + ox).toFixed(1),
      y2: (b.y - uy * (nodeR + 2) + oy).toFixed(1),
      "marker-end": `url(#arrow-${r.label})`,
      "data-holder": String(r.holder ?? ""),
      "data-target": String(r.target ?? ""),
    });
    line.append(svg("title", {}, `${r.holder} → ${r.target}: ${r.label} (net ${fmt(r.net)})`));
    edges.append(line);
  }
  root.append(edges);

  const nodes = svg("g", { class: "nodes" });
  for (const name of names) {
    const p = pos.get(name);
    const group = svg("g", { class: "node", "data-actor": name });
    group.append(svg("circle", { cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: nodeR }));
    const cos = Math.cos(p.angle);
    const sin = Math.sin(p.angle);
    const anchor = names.length === 1 || Math.abs(cos) < 0.3 ? "middle" : cos > 0 ? "start" : "end";
    const gap = nodeR + 6;
    const tx = names.length === 1 ? p.x : p.x + cos * gap;
    const ty = names.length === 1 ? p.y + gap + 8 : p.y + sin * gap + (sin > 0.3 ? 12 : sin < -0.3 ? -4 : 4);
    group.append(svg("text", { x: tx.toFixed(1), y: ty.toFixed(1), "text-anchor": anchor }, name));
    nodes.append(group);
  }
  root.append(nodes);
  return root;
}

function renderRelationsTable(relations) {
  const body = $("relations-table").querySelector("tbody");
  body.replaceChildren();
  for (const r of relations) {
    const label = stanceClass(r.label);
    const row = el("tr");
    row.dataset.holder = String(r.holder ?? "");
    row.dataset.target = String(r.target ?? "");
    const sentences = Array.isArray(r.sentences) ? r.sentences : [];
    const cell = el("td", "sentences", sentences.map((i) => `#${Number(i) + 1}`).join(", "));
    cell.dataset.sentences = sentences.join(",");
    row.append(
      el("td", "holder", r.holder),
      el("td", "target", r.target),
      el("td", `label ${label}`, r.label),
      el("td", "num net", fmt(r.net)),
      cell,
    );
    body.append(row);
  }
}

function renderRelations(result) {
  const section = $("relations-section");
  if (!Array.isArray(result.relations)) {
    section.hidden = true;
    $("relations-graph-box").replaceChildren();
    $("relations-table").querySelector("tbody").replaceChildren();
    return;
  }
  const relations = result.relations.filter((r) => r && typeof r === "object");
  $("relations-graph-box").replaceChildren(renderRelationsGraph(relations, result.actors));
  renderRelationsTable(relations);
  $("relations-empty").hidden = relations.length > 0;
  $("relations-table").hidden = relations.length === 0;
  section.hidden = false;
}

function render(result) {
  const model = result.model || {};
  $("model").textContent = `model: ${model.name ?? "?"} ${model.version ?? ""}`;
  $("sentences").replaceChildren(...(result.sentences || []).map(renderSentence));
  renderSummary(result.actors);
  renderRelations(result);
  $("results").hidden = false;
}

async function classify(event) {
  event.preventDefault();
  clearError();
  $("results").hidden = true;
  const button = $("classify");
  button.disabled = true;
  $("status").textContent = "classifying…";
  const payload = { text: $("text").value, actors: parseActors($("actors").value), detect_actors: $("detect").checked };
  if ($("relations").checked) payload.relations = true;
  try {
    let response;
    try {
      response = await fetch("/classify", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(payload),
      });
    } catch (err) {
      showError(`Network error: could not reach the service (${err && err.message ? err.message : err}).`);
      return;
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error : response.statusText || "request failed";
      const kind = body && body.error_type ? ` [${body.error_type}]` : "";
      showError(`Error ${response.status}${kind}: ${message}`);
      return;
    }
    if (!body) {
      showError(`Error ${response.status}: the response was not valid JSON`);
      return;
    }
    render(body);
  } finally {
    button.disabled = false;
    $("status").textContent = "";
  }
}

document.addEventListener("DOMContentLoaded", () => $("form").addEventListener("submit", classify));
