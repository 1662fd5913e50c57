// The polyvec dashboard: plain JavaScript over the server's JSON API (no framework, nothing
// fetched from the internet). Collections, their schema and indexes, an item browser, a search
// page (text through the field's model, or "more like this item") and the calibration plot.
"use strict";

const PAGE = 20;
const state = { name: null, info: null, offset: 0, textField: null };
const $ = (id) => document.getElementById(id);

function key() { return sessionStorage.getItem("polyvec-key"); }
function auth() { return key() ? { Authorization: "Bearer " + key() } : {}; }

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json", ...auth() };
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json().catch(() => null);
  if (resp.status === 401) $("key-form").hidden = false;
  if (!resp.ok) {
    const err = new Error(data && data.message ? data.error + ": " + data.message : "HTTP " + resp.status);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function say(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function loadCollections() {
  try {
    const { collections } = await api("GET", "v1/collections");
    const list = $("collections");
    list.replaceChildren(...collections.map((name) => el("li", {},
      el("button", { type: "button", "data-name": name, onclick: () => openCollection(name) }, name))));
    if (!collections.length) say("No collections yet.");
    const wanted = new URLSearchParams(location.hash.slice(1)).get("c");
    if (wanted && collections.includes(wanted)) openCollection(wanted);
  } catch (e) { say(e.message, true); }
}

async function openCollection(name) {
  try {
    say("Loading " + name + "…");
    const info = await api("GET", "v1/collections/" + encodeURIComponent(name));
    Object.assign(state, { name, info, offset: 0 });
    history.replaceState(null, "", "#c=" + encodeURIComponent(name));
    for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-current", String(b.dataset.name === name));
    renderOverview(info);
    await renderItems();
    say("");
    $("coll-name").focus();
  } catch (e) { say(e.message, true); }
}

function renderOverview(info) {
  $("overview").hidden = $("search").hidden = $("items").hidden = false;
  $("coll-name").textContent = info.name;
  $("coll-name").setAttribute("tabindex", "-1");
  const facts = [["items", info.count], ["segments", info.segments.length], ["growing rows", info.growing_rows],
    ["bytes on disk", info.bytes_on_disk], ["indexed payload paths", info.schema.indexed.join(", ") || "none"]];
  $("facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const rows = Object.entries(info.schema.vectors).map(([field, spec]) => {
    const model = info.models[field];
    const index = info.indexes[field];
    return el("tr", {}, el("td", {}, field), el("td", {}, spec.kind), el("td", {}, spec.dim ?? "—"),
      el("td", {}, spec.metric ?? (spec.kind === "bm25" ? "BM25" : "dot")), el("td", {}, spec.dtype ?? "—"), el("td", {}, model ? model.name : "none"), el("td", {}, index ? index.spec : "exact"));
  });
  $("fields").tBodies[0].replaceChildren(...rows);
  state.textField = Object.keys(info.models)[0] || null;
  $("q").disabled = !state.textField;
  $("q").placeholder = state.textField ? "embedded by " + info.models[state.textField].name : "no model recorded: use More like this";
  renderCalibration(info.indexes);
}

function renderCalibration(indexes) {
  const box = $("calibration");
  box.replaceChildren();
  for (const [field, idx] of Object.entries(indexes)) {
    const cal = idx.calibration;
    if (!cal || !cal.recalls) continue;
    box.append(el("h3", {}, `Recall calibration: ${field} (${idx.spec})`));
    const us = cal.seconds_per_query.map((s) => s * 1e6);
    const W = 420, H = 220, P = 40;
    const xmax = Math.max(...us) * 1.15, ymin = Math.min(0.8, ...cal.recall_lower_bounds);
    const x = (v) => P + (v / xmax) * (W - 2 * P), y = (r) => H - P - ((r - ymin) / (1 - ymin)) * (H - 2 * P);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `Recall against cost per query for field ${field}; the table below holds the same numbers`);
    const add = (tag, attrs, text) => {
      const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text !== undefined) n.textContent = text;
      svg.append(n);
    };
    add("line", { x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#999" });
    add("line", { x1: P, y1: P, x2: P, y2: H - P, stroke: "#999" });
    add("text", { x: W / 2, y: H - 8, "text-anchor": "middle" }, "µs per query");
    add("text", { x: 4, y: P - 10 }, "recall@" + cal.k);
    add("text", { x: P - 4, y: y(1) + 4, "text-anchor": "end" }, "1.0");
    add("text", { x: P - 4, y: y(ymin) + 4, "text-anchor": "end" }, ymin.toFixed(2));
    cal.recalls.forEach((r, i) => {
      add("line", { x1: x(us[i]), y1: y(cal.recall_lower_bounds[i]), x2: x(us[i]), y2: y(r), stroke: "#0b5cad" });
      add("circle", { cx: x(us[i]), cy: y(r), r: 4, fill: "#0b5cad" });
      add("text", { x: x(us[i]) + 6, y: y(r) - 6 }, `target ${cal.targets[i]}`);
    });
    box.append(svg);
    const head = el("tr", {}, ...["target", "setting", "recall", "lower bound", "µs / query"].map((h) => el("th", { scope: "col" }, h)));
    const body = cal.targets.map((t, i) => el("tr", {}, el("td", {}, t),
      el("td", {}, Object.entries(cal.params[i]).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v}`).join(", ")),
      el("td", {}, cal.recalls[i].toFixed(3)), el("td", {}, cal.recall_lower_bounds[i].toFixed(3)), el("td", {}, us[i].toFixed(1))));
    box.append(el("table", { "aria-label": "calibration of " + field }, el("thead", {}, head), el("tbody", {}, ...body)));
  }
}

async function renderItems() {
  const path = `v1/collections/${encodeURIComponent(state.name)}`;
  const slice = (await api("GET", `${path}/ids?offset=${state.offset}&limit=${PAGE}`)).ids;
  const got = slice.length ? (await api("POST", `${path}/get`, { ids: slice })).items : [];
  const total = state.info.count;
  $("page").textContent = total ? `${state.offset + 1}–${state.offset + slice.length} of ${total}` : "empty";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + PAGE >= total;
  $("item-list").replaceChildren(...got.filter(Boolean).map((item) => el("li", {},
    el("span", { class: "hit-id" }, String(item.id)), " ",
    el("button", { type: "button", onclick: () => moreLike(item) }, "More like this"),
    el("pre", { class: "payload" }, JSON.stringify(item.payload, null, 1)))));
}

function readFilter() {
  const text = $("filter").value.trim();
  if (!text) return null;
  try { return JSON.parse(text); } catch (e) { throw new Error("Filter: not JSON (" + e.message + ")"); }
}

async function showResults(res) {
  const ids = res.ids.filter((i) => i !== null);
  const items = ids.length ? (await api("POST", `v1/collections/${encodeURIComponent(state.name)}/get`, { ids })).items : [];
  const payloads = new Map(items.filter(Boolean).map((it) => [JSON.stringify(it.id), it.payload]));
  $("results").replaceChildren(...ids.map((id, i) => el("li", { class: "hit" },
    el("span", { class: "hit-id" }, String(id)), " ", el("span", { class: "score" }, "score " + res.scores[i].toFixed(4)),
    el("pre", { class: "payload" }, JSON.stringify(payloads.get(JSON.stringify(id)) || {}, null, 1)))));
  say(`${ids.length} results (${res.info.strategy}${res.info.selected !== null && res.info.selected !== undefined ? ", " + res.info.selected + " selected by the filter" : ""}).`);
}

async function search(ev) {
  ev.preventDefault();
  try {
    const q = $("q").value.trim();
    if (!q) { say("Type a query, or pick an item's More like this.", true); return; }
    say("Searching…");
    const res = await api("POST", `v1/collections/${encodeURIComponent(state.name)}/search_text`,
      { query: q, k: Number($("k").value) || 10, field: state.textField, filter: readFilter() });
    await showResults(res);
  } catch (e) { say(e.message, true); }
}

async function moreLike(item) {
  try {
    const [field, vec] = Object.entries(item.vectors)[0];
    say("Searching like " + item.id + "…");
    const res = await api("POST", `v1/collections/${encodeURIComponent(state.name)}/search`,
      { query: vec, k: Number($("k").value) || 10, field, filter: readFilter() });
    await showResults(res);
    $("results").focus();
  } catch (e) { say(e.message, true); }
}

async function loadReports() {
  try {
    const { reports } = await api("GET", "v1/reports");
    if (!reports.length) return;
    const items = [];
    for (const r of reports) {
      const url = "v1/reports/" + encodeURIComponent(r.name);
      if (r.type === "image/png") {
        // fetched with the key (an <img src> cannot send it), shown from a blob
        const blob = await (await fetch(url, { headers: auth() })).blob();
        items.push(el("figure", {}, el("img", { src: URL.createObjectURL(blob), alt: "report plot " + r.name }),
          el("figcaption", {}, r.name)));
      } else if (r.type.startsWith("text/markdown")) {
        const text = await (await fetch(url, { headers: auth() })).text();
        items.push(el("h3", {}, r.name), el("pre", { class: "payload" }, text));
      }
    }
    $("report-list").replaceChildren(...items);
    $("reports").hidden = false;
  } catch (e) { say(e.message, true); }
}

$("search-form").addEventListener("submit", search);
$("results").setAttribute("tabindex", "-1");
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); renderItems(); });
$("next").addEventListener("click", () => { state.offset += PAGE; renderItems(); });
$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("polyvec-key", $("api-key").value.trim());
  $("key-form").hidden = true;
  loadCollections();
  loadReports();
});
loadCollections();
loadReports();
