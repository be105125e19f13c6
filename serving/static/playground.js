// The tango-rt playground: one page over the server's own API (POST /v1/audio/generate, GET /v1/models), no
// framework and no build step. Everything it sends is a request the API documents; the request is shown on every
// clip so it can be copied into a script. Clips live in this browser's IndexedDB until deleted.
"use strict";

const KEY_STORE = "tango-rt-key";       // sessionStorage: the key lasts as long as the tab
const WINDOW_S = 10.24;                  // one UNet pass; longer text clips are streamed window by window
const MIN_SPAN_S = 0.05;                 // a drag shorter than this is a click (seek), not a span
const WAV_HEADER = 44;                   // the stream's header: RIFF, fmt, data with the exact final length

const $ = (selector, root = document) => root.querySelector(selector);
const page = {
  form: $("#generate"), prompt: $("#prompt"), go: $("#go"), preset: $("#preset"), duration: $("#duration"),
  seed: $("#seed"), samples: $("#samples"), loop: $("#loop"), upload: $("#upload"), status: $("#status"),
  error: $("#error"), results: $("#results"), model: $("#model"), keyDialog: $("#key-dialog"),
  keyInput: $("#key-input"), template: $("#card-template"),
};
let busy = false;

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { "X-API-Key": key, ...extra } : extra;
}

async function failure(response) {
  let code = "http_" + response.status, message = response.statusText || "request failed";
  try {
    const body = await response.json();
    const detail = body.error || body.detail || body;
    code = detail.code || code;
    message = detail.message || (typeof detail === "string" ? detail : JSON.stringify(detail));
  } catch (_) { /* not JSON: keep the status line */ }
  return new ApiError(response.status, code, message);
}

async function call(path, init = {}) {
  const response = await fetch(path, { ...init, headers: headers(init.headers) });
  if (!response.ok) {
    const err = await failure(response);
    if (response.status === 401) askKey();
    throw err;
  }
  return response;
}

function generate(request) {
  return call("/v1/audio/generate", {
    method: "POST", body: JSON.stringify(request),
    headers: { "Content-Type": "application/json", Accept: request.stream ? "audio/wav" : "application/json" },
  });
}

// ---------------------------------------------------------------- status, errors, the key

function say(text) { page.status.textContent = text; }

function showError(err) {
  page.error.hidden = false;
  page.error.textContent = err instanceof ApiError ? `${err.status} ${err.code}: ${err.message}` : String(err);
}

function clearError() { page.error.hidden = true; page.error.textContent = ""; }

function askKey() {
  page.keyInput.value = "";
  if (!page.keyDialog.open) page.keyDialog.showModal();
}

$("#key-form").addEventListener("submit", () => {
  sessionStorage.setItem(KEY_STORE, page.keyInput.value.trim());
  clearError();
  loadModel();
});
$("#change-key").addEventListener("click", askKey);

// A long job shows how long it has run; the server's own timings arrive with the answer.
async function working(label, job) {
  busy = true;
  page.go.disabled = true;
  clearError();
  const started = performance.now();
  const tick = setInterval(() => say(`${label}… ${((performance.now() - started) / 1000).toFixed(1)} s`), 100);
  try {
    const result = await job((text) => say(`${label}… ${text}`));
    say(`${label}: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return result;
  } catch (err) {
    say("");
    showError(err);
    return null;
  } finally {
    clearInterval(tick);
    busy = false;
    page.go.disabled = false;
  }
}

// ---------------------------------------------------------------- the model and its presets

async function loadModel() {
  try {
    const info = (await (await call("/v1/models")).json()).data[0];  // the one model this server runs
    page.model.textContent = `${info.id} · ${info.backend} on ${info.device}`;
    page.samples.max = info.limits.max_samples;
    page.duration.max = info.limits.max_duration_s;
    const chosen = page.preset.value;
    page.preset.replaceChildren(new Option(info.preset ? `server default (${info.preset})` : "original", ""));
    for (const name of Object.keys(info.presets)) page.preset.add(new Option(name, name));
    page.preset.value = chosen;
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------- audio: bytes, samples, pictures

function base64ToBytes(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function bytesToBase64(bytes) {
  let raw = "";
  for (let i = 0; i < bytes.length; i += 0x8000) raw += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(raw);
}

async function decode(bytes) {
  const context = new OfflineAudioContext(1, 1, 16000);
  const buffer = await context.decodeAudioData(bytes.slice().buffer);
  return { samples: buffer.getChannelData(0), rate: buffer.sampleRate };
}

function drawWave(canvas, samples, spans, seconds) {
  const width = canvas.width = canvas.clientWidth * devicePixelRatio || 600;
  const height = canvas.height;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, width, height);
  g.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--span");
  for (const [start, end] of spans) g.fillRect(start / seconds * width, 0, (end - start) / seconds * width, height);
  g.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--wave");
  const per = samples.length / width;
  for (let x = 0; x < width; x++) {
    let low = 0, high = 0;
    for (let i = Math.floor(x * per); i < Math.floor((x + 1) * per); i++) {
      low = Math.min(low, samples[i]); high = Math.max(high, samples[i]);
    }
    g.fillRect(x, (1 - high) * height / 2, 1, Math.max(1, (high - low) * height / 2));
  }
  canvas.dataset.drawn = String(width);
}

// A radix-2 FFT's magnitudes (in place on re/im), enough for a picture of where the sound's energy sits.
function fftMagnitudes(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const step = -2 * Math.PI / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < size / 2; k++) {
        const c = Math.cos(step * k), s = Math.sin(step * k);
        const a = start + k, b = a + size / 2;
        const tr = re[b] * c - im[b] * s, ti = re[b] * s + im[b] * c;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
      }
    }
  }
  return re.slice(0, n / 2).map((r, k) => Math.hypot(r, im[k]));
}

function drawSpectrogram(canvas, samples) {
  const size = 512, width = canvas.width = canvas.clientWidth * devicePixelRatio || 600, height = canvas.height;
  const g = canvas.getContext("2d");
  const image = g.createImageData(width, height);
  const window = Float32Array.from({ length: size }, (_, i) => 0.5 - 0.5 * Math.cos(2 * Math.PI * i / size));
  const hop = Math.max(1, (samples.length - size) / width);
  for (let x = 0; x < width; x++) {
    const offset = Math.floor(x * hop);
    const re = new Float32Array(size), im = new Float32Array(size);
    for (let i = 0; i < size && offset + i < samples.length; i++) re[i] = samples[offset + i] * window[i];
    const magnitudes = fftMagnitudes(re, im);
    for (let y = 0; y < height; y++) {
      const bin = Math.floor((height - 1 - y) / height * magnitudes.length);
      // dB against a full-scale sine (a Hann window's gain is size / 4), shown from -90 to 0 dBFS
      const level = Math.max(0, Math.min(1, (20 * Math.log10(magnitudes[bin] / (size / 4) + 1e-9) + 90) / 90));
      const at = (y * width + x) * 4;
      image.data[at] = 255 * level; image.data[at + 1] = 200 * level * level; image.data[at + 2] = 80 * level;
      image.data[at + 3] = 255;
    }
  }
  g.putImageData(image, 0, 0);
}

// ---------------------------------------------------------------- streamed long-form audio

// Plays a WAV stream as its windows arrive (Web Audio, each chunk scheduled after the last) and returns the whole
// file once the stream ends. The header holds the exact length, so a stream cut off part-way is an error.
async function playStream(response, progress) {
  const reader = response.body.getReader();
  const parts = [];
  let received = 0, header = null, played = WAV_HEADER, context = null, at = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    received += value.length;
    const whole = concat(parts);
    if (!header && received >= WAV_HEADER) {
      const view = new DataView(whole.buffer);
      header = { rate: view.getUint32(24, true), end: WAV_HEADER + view.getUint32(40, true) };
      context = new AudioContext({ sampleRate: header.rate });
      at = context.currentTime + 0.1;
    }
    if (!header) continue;
    const ready = Math.min(received, header.end) - ((Math.min(received, header.end) - played) % 2);
    if (ready > played) {
      const pcm = new Int16Array(whole.slice(played, ready).buffer);
      const buffer = context.createBuffer(1, pcm.length, header.rate);
      buffer.getChannelData(0).set(Float32Array.from(pcm, (v) => v / 32768));
      const source = context.createBufferSource();
      source.buffer = buffer;
      source.connect(context.destination);
      at = Math.max(at, context.currentTime);
      source.start(at);
      at += buffer.duration;
      played = ready;
      progress(`${((played - WAV_HEADER) / 2 / header.rate).toFixed(1)} of ` +
               `${((header.end - WAV_HEADER) / 2 / header.rate).toFixed(1)} s streamed`);
    }
  }
  if (!header || received < header.end) throw new Error("the stream ended before the clip was complete");
  return concat(parts);
}

function concat(parts) {
  const whole = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) { whole.set(part, at); at += part.length; }
  return whole;
}

// ---------------------------------------------------------------- history (IndexedDB)

const history = {
  db: null,
  async open() {
    if (this.db) return this.db;
    this.db = await new Promise((resolve, reject) => {
      const opening = indexedDB.open("tango-rt-playground", 1);
      opening.onupgradeneeded = () => opening.result.createObjectStore("clips", { keyPath: "id" });
      opening.onsuccess = () => resolve(opening.result);
      opening.onerror = () => reject(opening.error);
    });
    return this.db;
  },
  async run(mode, work) {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction("clips", mode);
      const request = work(tx.objectStore("clips"));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
    });
  },
  put(clip) { return this.run("readwrite", (store) => store.put(clip)); },
  remove(id) { return this.run("readwrite", (store) => store.delete(id)); },
  all() { return this.run("readonly", (store) => store.getAll()); },
};

// ---------------------------------------------------------------- clips

// A clip: the request that made it, its seed, its WAV bytes. Shown as a card; edits send its audio back.
async function addClip(clip, save = true) {
  if (save) await history.put(clip);
  const card = page.template.content.firstElementChild.cloneNode(true);
  card.dataset.id = clip.id;
  $(".title", card).textContent = clip.title;
  const { samples, rate } = await decode(clip.wav);
  const seconds = samples.length / rate;
  card.dataset.seconds = seconds.toFixed(3);
  $(".meta", card).textContent = [`${seconds.toFixed(2)} s`, clip.seed != null ? `seed ${clip.seed}` : "",
                                  clip.timings || ""].filter(Boolean).join(" · ");
  const url = URL.createObjectURL(new Blob([clip.wav], { type: "audio/wav" }));
  $("audio", card).src = url;
  $(".download-wav", card).href = url;
  $(".download-wav", card).download = `${slug(clip.title)}-${clip.seed ?? "source"}.wav`;
  $(".request", card).textContent = JSON.stringify(clip.request, (k, v) => (k === "audio" ? "<base64>" : v), 2);
  page.results.prepend(card);
  wireCard(card, clip, samples, seconds);
  return card;
}

function slug(text) { return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40); }

function wireCard(card, clip, samples, seconds) {
  const wave = $(".wave", card), spans = [];
  const redraw = () => drawWave(wave, samples, spans, seconds);
  requestAnimationFrame(() => { redraw(); drawSpectrogram($(".spectrogram", card), samples); });
  const inpaint = $(".inpaint", card), clear = $(".clear-spans", card), audio = $("audio", card);
  const toSeconds = (event) => {
    const box = wave.getBoundingClientRect();
    return Math.max(0, Math.min(seconds, (event.clientX - box.left) / box.width * seconds));
  };
  let from = null;
  wave.addEventListener("pointerdown", (event) => { from = toSeconds(event); wave.setPointerCapture(event.pointerId); });
  wave.addEventListener("pointermove", (event) => {
    if (from === null) return;
    const to = toSeconds(event);
    drawWave(wave, samples, [...spans, [Math.min(from, to), Math.max(from, to)]], seconds);
  });
  wave.addEventListener("pointerup", (event) => {
    const to = toSeconds(event), start = Math.min(from, to), end = Math.max(from, to);
    from = null;
    if (end - start < MIN_SPAN_S) { audio.currentTime = start; return; }
    spans.push([round(start), round(end)]);
    mergeSpans(spans);
    inpaint.disabled = clear.disabled = false;
    card.dataset.spans = JSON.stringify(spans);
    redraw();
  });
  clear.addEventListener("click", () => {
    spans.length = 0; inpaint.disabled = clear.disabled = true; delete card.dataset.spans; redraw();
  });
  const edit = (label, options) => run(label, { prompt: clip.prompt, audio: bytesToBase64(clip.wav), ...options });
  inpaint.addEventListener("click", () => edit("regenerating spans", { inpaint: spans.map((s) => [...s]) }));
  $(".variation", card).addEventListener("click", () =>
    edit("variation", { strength: Number($(".strength input", card).value) }));
  $(".extend-go", card).addEventListener("click", () =>
    edit("extending", { extend: Number($(".extend input", card).value), stream: true }));
  $(".reuse-seed", card).addEventListener("click", () => { if (clip.seed != null) page.seed.value = clip.seed; });
  $(".download-flac", card).addEventListener("click", () => downloadFlac(clip));
  $(".delete", card).addEventListener("click", async () => { await history.remove(clip.id); card.remove(); });
}

function round(seconds) { return Math.round(seconds * 100) / 100; }

function mergeSpans(spans) {
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = spans.length - 1; i > 0; i--) {
    if (spans[i][0] <= spans[i - 1][1]) {
      spans[i - 1][1] = Math.max(spans[i - 1][1], spans[i][1]);
      spans.splice(i, 1);
    }
  }
}

// The same request with the same seed gives the same clip, so FLAC is asked for again rather than transcoded here.
async function downloadFlac(clip) {
  if (busy || !clip.request.prompt) return;
  const request = { ...clip.request, seed: clip.seed, response_format: "flac", stream: false };
  const answer = await working("encoding FLAC", async () => (await generate(request)).json());
  if (!answer) return;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([base64ToBytes(answer.audio)], { type: "audio/flac" }));
  link.download = `${slug(clip.title)}-${clip.seed}.flac`;
  link.click();
}

// ---------------------------------------------------------------- generating

function formRequest() {
  const request = { prompt: page.prompt.value.trim() };
  if (page.preset.value) request.preset = page.preset.value;
  if (page.duration.value) request.duration = Number(page.duration.value);
  if (page.seed.value !== "") request.seed = Number(page.seed.value);
  const samples = Number(page.samples.value || 1);
  if (samples !== 1) request.samples = samples;
  if (page.loop.checked) request.loop = true;
  if (request.duration > WINDOW_S && samples === 1 && !request.loop) request.stream = true;
  return request;
}

async function run(label, request) {
  if (busy) return;
  await working(label, async (progress) => {
    if (request.stream) {
      const response = await generate({ ...request, response_format: "wav" });
      const seed = Number(response.headers.get("X-Seed"));
      const wav = await playStream(response, progress);
      await addClip(clipOf(request, seed, wav, "streamed"));
      return;
    }
    const answer = await (await generate(request)).json();
    const timings = Object.entries(answer.timings_ms || {}).map(([k, v]) => `${k} ${Math.round(v)} ms`).join(", ");
    // a call with several clips shares one seed: clip i of seed s is reproduced by the same call
    for (const [row, encoded] of answer.clips.entries()) {
      await addClip(clipOf(request, answer.seed, base64ToBytes(encoded), timings, answer.clips.length > 1 ? row : null));
    }
  });
}

function clipOf(request, seed, wav, timings, row = null) {
  const kind = request.inpaint ? "inpainted" : request.strength ? "variation" : request.extend ? "extended" : "";
  const title = [request.prompt, kind && `(${kind})`, row !== null && `#${row + 1}`].filter(Boolean).join(" ");
  const { audio, ...kept } = request;  // the history keeps the result, not the input it was made from
  return { id: crypto.randomUUID(), title, prompt: request.prompt, request: { ...kept, seed }, seed, wav,
           timings, created: Date.now(), edited: Boolean(audio) };
}

page.form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!page.prompt.value.trim()) { page.prompt.focus(); return; }
  run("generating", formRequest());
});

// A file becomes a source clip: variations, spans and extensions of it work as they do on generated clips.
page.upload.addEventListener("change", async () => {
  const file = page.upload.files[0];
  if (!file) return;
  const wav = new Uint8Array(await file.arrayBuffer());
  try {
    await addClip({ id: crypto.randomUUID(), title: file.name, prompt: page.prompt.value.trim() || file.name,
                    request: {}, seed: null, wav, timings: "uploaded", created: Date.now(), edited: false });
  } catch (err) {
    showError(new Error(`${file.name}: this browser cannot decode it (${err.message || err})`));
  }
  page.upload.value = "";
});

// Space plays or pauses the newest clip when the focus is not in a field.
document.addEventListener("keydown", (event) => {
  if (event.code !== "Space" || event.target.closest("input, select, textarea, button")) return;
  const audio = $("audio", page.results);
  if (!audio) return;
  event.preventDefault();
  if (audio.paused) audio.play(); else audio.pause();
});

async function restore() {
  try {
    const clips = (await history.all()).sort((a, b) => a.created - b.created);
    for (const clip of clips) await addClip(clip, false);
  } catch (err) {
    showError(new Error(`the saved clips could not be read: ${err.message || err}`));
  }
}

loadModel();
restore();
