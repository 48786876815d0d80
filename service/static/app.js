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
  node.append(meta);
  return node;
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

function render(result) {
  const model = result.model || {};
  $("model").textContent = `model: ${model.name ?? "?"} ${model.version ?? ""}`;
  $("sentences").replaceChildren(...(result.sentences || []).map(renderSentence));
  renderSummary(result.actors);
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
