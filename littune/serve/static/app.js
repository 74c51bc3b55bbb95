// littune's page: two tabs over the JSON API (/api/classify, /api/search). No framework, no build step.
"use strict";
const $ = (id) => document.getElementById(id);
let chosen = null; // the File to classify
// A server started with --token: open http://HOST:PORT/#token=TOKEN (a fragment never reaches the
// server or its logs). The token is kept for this tab only and sent as a bearer header.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  sessionStorage.setItem("littune-token", fromHash);
  history.replaceState(null, "", location.pathname + location.search);
}
const token = sessionStorage.getItem("littune-token");
const auth = token ? { Authorization: `Bearer ${token}` } : {};

function showError(id, message) {
  const box = $(id);
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(url, options = {}) {
  const res = await fetch(url, { ...options, headers: { ...auth, ...(options.headers || {}) } });
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
  return body;
}

// ---- tabs -------------------------------------------------------------------------------------
document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => {
  document.querySelectorAll(".tab").forEach((t) => {
    const on = t === tab;
    t.classList.toggle("active", on);
    t.setAttribute("aria-selected", String(on));
    $(t.dataset.panel).hidden = !on;
  });
}));

// ---- classification ---------------------------------------------------------------------------
function choose(file) {
  if (!file) return;
  chosen = file;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("drop-hint").hidden = true;
  $("classify").disabled = false;
  showError("classify-error", "");
}

$("file").addEventListener("change", (e) => choose(e.target.files[0]));
const drop = $("drop");
["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => choose(e.dataTransfer.files[0]));

function renderBars(ranked) {
  const list = $("bars");
  list.replaceChildren(...ranked.map(({ label, probability }) => {
    const li = document.createElement("li");
    li.className = "bar";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    name.title = label;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${(100 * probability).toFixed(1)}%`;
    track.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(100 * probability).toFixed(1)}%`;
    li.append(name, track, pct);
    return li;
  }));
}

$("classify").addEventListener("click", async () => {
  if (!chosen) return;
  const form = new FormData();
  form.append("image", chosen);
  form.append("labels", $("labels").value);
  $("classify").disabled = true;
  showError("classify-error", "");
  try {
    const out = await api("/api/classify", { method: "POST", body: form });
    renderBars(out.ranked);
    const kind = out.probabilities === "sigmoid" ? "sigmoid, per label" : "softmax over the labels";
    $("classify-time").textContent = `top: ${out.label} · ${kind} · ${out.ms} ms`;
  } catch (err) {
    $("bars").replaceChildren();
    showError("classify-error", err.message);
  } finally {
    $("classify").disabled = false;
  }
});

// ---- search -----------------------------------------------------------------------------------
function renderGrid(results) {
  $("grid").replaceChildren(...results.map((r) => {
    const fig = document.createElement("figure");
    fig.className = "thumb";
    const img = document.createElement("img");
    if (token) { // an <img> cannot send a header: fetch the thumbnail and show it from memory
      fetch(r.thumbnail, { headers: auth }).then((t) => t.blob()).then((b) => { img.src = URL.createObjectURL(b); });
    } else {
      img.src = r.thumbnail;
    }
    img.alt = r.key;
    const cap = document.createElement("figcaption");
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = r.key;
    key.title = r.key;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = r.score.toFixed(3);
    cap.append(key, score);
    fig.append(img, cap);
    return fig;
  }));
}

$("search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  showError("search-error", "");
  const params = new URLSearchParams({ q: $("query").value, k: $("k").value });
  try {
    const out = await api(`/api/search?${params}`);
    renderGrid(out.results);
    $("search-time").textContent = `${out.results.length} of ${out.n_images} images · ${out.ms} ms`;
  } catch (err) {
    $("grid").replaceChildren();
    showError("search-error", err.message);
  }
});

// ---- what is loaded ---------------------------------------------------------------------------
api("/api/info").then((info) => {
  $("model-info").textContent = `${info.image_tower} + ${info.text_tower}` +
    (info.index === null ? " · no index (start with --index to search)" : ` · index of ${info.index} images`);
}).catch(() => {});
