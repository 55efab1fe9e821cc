// Vigil live page: tiles from /api/streams, live labels/events/status from /api/events
// (SSE read with fetch so a bearer token can be sent), snapshots about once a second, and
// text search over stored windows (/api/search; CLIP/X-CLIP services).
"use strict";

const state = {
  token: sessionStorage.getItem("vigil-token") || "",
  tiles: new Map(),      // name -> {el, spark: [scores], snapUrl, snapBusy}
  searchUrls: [],        // object URLs of the shown search thumbnails
  maxEvents: 50,
  sparkLen: 60,
};

const $ = (sel, root = document) => root.querySelector(sel);

function headers(extra = {}) {
  const h = Object.assign({}, extra);
  if (state.token) h["Authorization"] = "Bearer " + state.token;
  return h;
}

async function api(path, opts = {}) {
  const resp = await fetch(path, Object.assign({}, opts, { headers: headers(opts.headers || {}) }));
  if (resp.status === 401) {
    $("#token-form").hidden = false;
    throw new Error("a token is needed");
  }
  return resp;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function tileFor(s) {
  let t = state.tiles.get(s.name);
  if (t) return t;
  const root = el("div", "tile");
  root.dataset.stream = s.name;
  const head = el("div", "head");
  head.append(el("span", "name", s.name), el("span", "badge status", s.status));
  const rm = el("button", "remove", "✕");
  rm.title = "remove " + s.name;
  rm.addEventListener("click", () => removeStream(s.name));
  head.append(rm);
  const img = el("img");
  img.alt = "latest frame of " + s.name;
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${state.sparkLen - 1} 1`);
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS(svgNS, "polyline");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(line);
  root.append(head, img, el("ul", "labels"), svg, el("div", "stats"), el("div", "uri", s.uri));
  $("#tiles").append(root);
  t = { el: root, spark: [], snapUrl: null, snapBusy: false };
  state.tiles.set(s.name, t);
  $("#empty").hidden = true;
  return t;
}

function renderTop(t, top) {
  const ul = $(".labels", t.el);
  ul.replaceChildren(...top.slice(0, 3).map((x) => {
    const li = el("li");
    const bar = el("span", "bar");
    bar.style.width = Math.round(x.score * 100) + "%";
    li.append(el("span", "label", x.label), el("span", "score", x.score.toFixed(2)), bar);
    return li;
  }));
}

function renderSpark(t) {
  const pts = t.spark.map((v, i) => `${i},${(1 - v).toFixed(3)}`).join(" ");
  $(".spark polyline", t.el).setAttribute("points", pts);
}

function renderStream(s) {
  const t = tileFor(s);
  const badge = $(".status", t.el);
  badge.textContent = s.status;
  badge.className = "badge status " + s.status;
  $(".stats", t.el).textContent = `${s.frames} frames · ${s.dropped} dropped · ${s.reconnects} reconnects` + (s.reason ? ` · ${s.reason}` : "");
  $(".uri", t.el).textContent = s.uri;
  if (s.top && s.top.length && !$(".labels li", t.el)) renderTop(t, s.top);
}

function dropTile(name) {
  const t = state.tiles.get(name);
  if (!t) return;
  if (t.snapUrl) URL.revokeObjectURL(t.snapUrl);
  t.el.remove();
  state.tiles.delete(name);
  $("#empty").hidden = state.tiles.size > 0;
}

async function refreshStreams() {
  try {
    const resp = await api("/api/streams");
    if (!resp.ok) return;
    const streams = await resp.json();
    const seen = new Set();
    for (const s of streams) { seen.add(s.name); renderStream(s); }
    for (const name of [...state.tiles.keys()]) if (!seen.has(name)) dropTile(name);
  } catch (e) { /* shown by the token form or the live badge */ }
}

async function refreshSnapshots() {
  for (const [name, t] of state.tiles) {
    if (t.snapBusy) continue;
    t.snapBusy = true;
    api(`/api/streams/${encodeURIComponent(name)}/snapshot.jpg`)
      .then(async (resp) => {
        if (!resp.ok) return;
        const url = URL.createObjectURL(await resp.blob());
        if (t.snapUrl) URL.revokeObjectURL(t.snapUrl);
        t.snapUrl = url;
        $("img", t.el).src = url;
      })
      .catch(() => {})
      .finally(() => { t.snapBusy = false; });
  }
}

function addEventItem(ev, prepend = true) {
  const li = el("li");
  const what = el("span", "kind-" + ev.event, `${ev.event === "start" ? "▶" : "■"} ${ev.stream}: ${ev.label}`);
  const when = el("time", "", `${ev.ts} · score ${Number(ev.score).toFixed(2)}` + (ev.reason ? ` · ${ev.reason}` : ""));
  li.append(what, when);
  const list = $("#events");
  if (prepend) list.prepend(li); else list.append(li);
  while (list.children.length > state.maxEvents) list.lastChild.remove();
}

function onRecord(kind, data) {
  let rec;
  try { rec = JSON.parse(data); } catch { return; }
  if (kind === "label") {
    const t = state.tiles.get(rec.stream);
    if (!t) return;
    renderTop(t, rec.top || []);
    t.spark.push(rec.top && rec.top.length ? rec.top[0].score : 0);
    if (t.spark.length > state.sparkLen) t.spark.shift();
    renderSpark(t);
  } else if (kind === "start" || kind === "end") {
    addEventItem(rec);
  } else if (kind === "status") {
    if (rec.status === "removed") dropTile(rec.stream);
    else refreshStreams();
  }
}

// Minimal SSE reader over fetch (EventSource cannot send Authorization).
async function follow() {
  const live = $("#live");
  let lastId = null;
  for (;;) {
    try {
      const h = lastId ? { "Last-Event-ID": lastId } : {};
      const resp = await api("/api/events", { headers: h });
      if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
      live.textContent = "live"; live.className = "badge on";
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let kind = "message", data = [], id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) kind = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            else if (line.startsWith("id:")) id = line.slice(3).trim();
          }
          if (id) lastId = id;
          if (data.length) onRecord(kind, data.join("\n"));
        }
      }
    } catch (e) { /* reconnect below */ }
    live.textContent = "offline"; live.className = "badge off";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function loadHistory() {
  try {
    const resp = await api("/api/events/history?limit=" + state.maxEvents);
    if (!resp.ok) return;
    for (const ev of await resp.json()) addEventItem(ev, false);
  } catch (e) {}
}

async function addStream(ev) {
  ev.preventDefault();
  const err = $("#add-error");
  err.textContent = "";
  const body = { name: $("#add-name").value.trim(), uri: $("#add-uri").value.trim() };
  const fps = $("#add-fps").value.trim();
  if (fps) body.fps = fps === "native" ? "native" : Number(fps);
  try {
    const resp = await api("/api/streams", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const out = await resp.json();
    if (!resp.ok) { err.textContent = `${out.error} — ${out.hint}`; return; }
    renderStream(out);
    $("#add-form").reset();
  } catch (e) { err.textContent = String(e.message || e); }
}

async function search(ev) {
  ev.preventDefault();
  const err = $("#search-error");
  const list = $("#search-results");
  err.textContent = "";
  for (const u of state.searchUrls) URL.revokeObjectURL(u);
  state.searchUrls = [];
  list.replaceChildren();
  const q = $("#search-q").value.trim();
  try {
    const resp = await api("/api/search?top=10&q=" + encodeURIComponent(q));
    const out = await resp.json();
    if (!resp.ok) { err.textContent = `${out.error} — ${out.hint}`; return; }
    if (!out.results.length) { err.textContent = `nothing stored matches (${out.searched} windows searched)`; return; }
    for (const h of out.results) {
      const li = el("li");
      const img = el("img");
      img.alt = `${h.stream} ${h.start}`;
      li.append(img, el("span", "label", `${h.stream} · ${h.score.toFixed(3)}`), el("time", "", `${h.start} → ${h.end}`));
      list.append(li);
      if (h.snapshot) {
        api(h.snapshot).then(async (r) => {
          if (!r.ok) return;
          const url = URL.createObjectURL(await r.blob());
          state.searchUrls.push(url);
          img.src = url;
        }).catch(() => {});
      }
    }
  } catch (e) { err.textContent = String(e.message || e); }
}

async function removeStream(name) {
  if (!confirm(`Remove camera ${name}?`)) return;
  const resp = await api(`/api/streams/${encodeURIComponent(name)}`, { method: "DELETE" });
  if (resp.status === 204 || resp.status === 404) dropTile(name);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#add-form").addEventListener("submit", addStream);
  $("#search-form").addEventListener("submit", search);
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("#token").value.trim();
    sessionStorage.setItem("vigil-token", state.token);
    $("#token-form").hidden = true;
    refreshStreams(); loadHistory();
  });
  refreshStreams();
  loadHistory();
  follow();
  setInterval(refreshStreams, 2000);
  setInterval(refreshSnapshots, 1000);
});
