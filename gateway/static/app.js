// The spotdiff page: submit caption pairs, follow the job live, chart its funnel, browse and export samples.
// Plain browser JavaScript, no build step: everything the page needs comes from the gateway's own origin.
"use strict";

// The pipeline steps a pair waits for or runs, in order (JobStatus.stages uses these names).
const STEPS = ["generate", "pair_filter", "proposals", "difference_areas", "region_labels", "difference_caption"];
const FINAL_STATES = new Set(["done", "cancelled"]);
const KEY_STORAGE = "spotdiff.apiKey";
const GALLERY_PAGE_SIZE = 6;
const REFRESH_MIN_INTERVAL_MS = 300; // events can come in bursts: at most one status request per interval
const POLL_INTERVAL_MS = 1000; // steps change without an event: look again this often while a job runs
const RECONNECT_MAX_MS = 8000;
const IMAGE_KEY = /^images\/([0-9a-f]{64}\.png)$/;
const JOB_HASH = /^#job=([A-Za-z0-9._-]{1,128})$/;
const SVG_NS = "http://www.w3.org/2000/svg";

const byId = (id) => document.getElementById(id);

/** An answer of the gateway's error envelope {"error": {"code", "message"}}, or a problem found here. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// What the page shows now; replaced whenever another job is opened, so late answers of the old one are dropped.
let view = newView(null);

function newView(jobId) {
  return { jobId, controller: new AbortController(), statusSeq: 0, renderedSeq: 0, galleryOffset: 0, blobUrls: [], lastEventId: "" };
}

// ---- talking to the gateway ------------------------------------------------------------------------------

function apiKey() {
  return byId("api-key").value.trim();
}

function withAuth(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : { ...headers };
}

async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "the request failed";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not the JSON envelope (a proxy's page, say): the status says enough
  }
  return new ApiError(response.status, code, message);
}

/** fetch with the API key; a non-2xx answer becomes an ApiError carrying the envelope's code and message. */
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: withAuth(options.headers) });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", `cannot reach the gateway (${error.message})`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

async function apiJson(path, options = {}) {
  return (await api(path, options)).json();
}

function jobPath(jobId, rest = "") {
  return `/v1/jobs/${encodeURIComponent(jobId)}${rest}`;
}

// ---- errors ----------------------------------------------------------------------------------------------

function showError(error) {
  if (error && error.name === "AbortError") return; // we stopped it ourselves
  const box = byId("error");
  if (error instanceof ApiError) {
    box.textContent = error.status ? `${error.status} ${error.code}: ${error.message}` : error.message;
  } else {
    box.textContent = `unexpected error: ${error && error.message ? error.message : error}`;
  }
  box.hidden = false;
}

function clearError() {
  const box = byId("error");
  box.textContent = "";
  box.hidden = true;
}

// ---- the request ------------------------------------------------------------------------------------------

/** Caption pairs from JSONL (one object a line), a JSON array of pairs, or a whole job body {"pairs", "settings"}. */
function parsePairs(text) {
  const trimmed = text.trim();
  if (!trimmed) throw new ApiError(0, "no_pairs", "enter caption pairs (one JSON object per line) or single captions");
  try {
    const whole = JSON.parse(trimmed);
    if (Array.isArray(whole)) return { pairs: whole, settings: {} };
    if (whole && typeof whole === "object" && Array.isArray(whole.pairs)) {
      return { pairs: whole.pairs, settings: whole.settings || {} };
    }
  } catch {
    // not one JSON document: read it as JSONL below
  }
  const pairs = [];
  const problems = [];
  text.split(/\r?\n/).forEach((line, index) => {
    if (!line.trim()) return;
    try {
      const value = JSON.parse(line);
      if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error("not a JSON object");
      pairs.push(value);
    } catch (error) {
      problems.push(`line ${index + 1}: ${error.message}`);
    }
  });
  if (problems.length) throw new ApiError(0, "invalid_pairs", `caption pairs: ${problems.join("; ")}`);
  return { pairs, settings: {} };
}

/** Single captions, one a line (blank lines skipped). */
function parseCaptions(text) {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "");
}

/** A job of caption pairs, or of single captions that the gateway rewrites into pairs. */
function jobSource() {
  const captions = parseCaptions(byId("captions").value);
  const hasPairs = byId("pairs").value.trim() !== "";
  if (captions.length && hasPairs) {
    throw new ApiError(0, "invalid_request", "a job has caption pairs or single captions, not both: clear one");
  }
  if (!captions.length) {
    const { pairs, settings } = parsePairs(byId("pairs").value);
    return { pairs, settings };
  }
  const rewrites = Number(byId("rewrites").value || "1");
  if (!Number.isInteger(rewrites) || rewrites < 1 || rewrites > 20) {
    throw new ApiError(0, "invalid_rewrites", "pairs from each caption: a whole number from 1 to 20");
  }
  return { captions, rewrites_per_caption: rewrites };
}

function jobRequest() {
  const body = jobSource();
  const wanted = byId("target-accepted").value.trim();
  if (wanted !== "") {
    const count = Number(wanted);
    if (!Number.isInteger(count) || count < 1) {
      throw new ApiError(0, "invalid_target", "the number of accepted samples to stop at must be a whole number ≥ 1");
    }
    body.target_accepted = count; // only when asked for: without it the job runs every pair
    if (body.captions && byId("new-rewrites").checked) body.variation = "rewrite";
  }
  return body;
}

async function startJob() {
  clearError();
  let body;
  try {
    body = jobRequest();
  } catch (error) {
    showError(error);
    return;
  }
  const button = byId("start");
  button.disabled = true;
  try {
    const created = await apiJson("/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    openJob(created.id);
    loadJobs().catch(showError);
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

async function readPairsFile(event) {
  const file = event.target.files && event.target.files[0];
  if (!file) return;
  // shown, so it can be checked and edited before Start: a .txt of single captions goes to the captions box
  const target = file.name.toLowerCase().endsWith(".txt") ? "captions" : "pairs";
  byId(target).value = await file.text();
  clearError();
}

// ---- following a job --------------------------------------------------------------------------------------

function openJob(jobId) {
  view.controller.abort();
  revokeBlobUrls(view);
  view = newView(jobId);
  history.replaceState(null, "", `#job=${jobId}`); // a reload comes back to this job
  byId("job-id").textContent = jobId;
  byId("job-section").hidden = false;
  byId("gallery-section").hidden = true;
  byId("gallery").replaceChildren();
  byId("last-event").textContent = "";
  renderStatus({ state: "queued", total: 0, done: 0, accepted: 0, rejected: 0, funnel: {}, stages: {} });
  follow(view).catch(showError);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

/** Run ``task`` at most once per ``intervalMs``; a call inside the interval runs once at its end. */
function throttled(task, intervalMs) {
  let last = 0;
  let timer = null;
  return () => {
    if (timer !== null) return;
    timer = setTimeout(
      () => {
        timer = null;
        last = Date.now();
        task().catch(showError);
      },
      Math.max(0, last + intervalMs - Date.now()),
    );
  };
}

async function refreshStatus(current) {
  if (current.controller.signal.aborted) return null;
  const seq = ++current.statusSeq;
  const status = await apiJson(jobPath(current.jobId), { signal: current.controller.signal, cache: "no-store" });
  if (current === view && seq > current.renderedSeq) {
    current.renderedSeq = seq; // an older answer that arrives late never overwrites a newer one
    renderStatus(status);
  }
  return status;
}

/** Watch the job's event stream until the job ends, refreshing the status on each event and on a timer. */
async function follow(current) {
  const { signal } = current.controller;
  const refresh = throttled(() => refreshStatus(current), REFRESH_MIN_INTERVAL_MS);
  const ticker = setInterval(refresh, POLL_INTERVAL_MS);
  try {
    let status = await refreshStatus(current);
    for (let attempt = 0; status && !FINAL_STATES.has(status.state); attempt += 1) {
      try {
        await readEvents(jobPath(current.jobId, "/events"), signal, current.lastEventId, (event) => {
          if (event.id) current.lastEventId = event.id; // a reconnect resumes after it
          showEvent(event);
          refresh();
        });
        attempt = 0; // the stream ran its course; if the job is still going, reconnect at once
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) throw error;
      }
      status = await refreshStatus(current);
      if (status && !FINAL_STATES.has(status.state)) {
        await sleep(Math.min(250 * 2 ** attempt, RECONNECT_MAX_MS), signal);
      }
    }
    if (status && !signal.aborted) {
      byId("cancel").hidden = true;
      await loadGallery(current, 0);
    }
  } finally {
    clearInterval(ticker);
  }
}

/** Server-sent events read from a fetch() body: EventSource cannot send the Authorization header. */
async function readEvents(path, signal, lastEventId, onEvent) {
  const headers = { Accept: "text/event-stream", ...(lastEventId ? { "Last-Event-ID": lastEventId } : {}) };
  const response = await api(path, { headers, signal, cache: "no-store" });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new EventStreamParser(onEvent);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    parser.feed(value);
  }
}

/** The text/event-stream format: "field: value" lines, an event ends at a blank line, ":" starts a comment. */
class EventStreamParser {
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.pending = "";
    this.type = "";
    this.data = [];
    this.id = "";
  }

  feed(chunk) {
    this.pending += chunk;
    // a "\r" at the very end may be the first half of "\r\n": it waits for the next chunk
    const lines = this.pending.split(/\r\n|\n|\r(?!$)/);
    this.pending = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.dispatch({ type: this.type || "message", data: this.data.join("\n"), id: this.id });
      this.type = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id") this.id = value;
  }
}

function showEvent(event) {
  let fields = {};
  try {
    fields = JSON.parse(event.data);
  } catch {
    // an event without JSON data still says that something changed
  }
  const line = byId("last-event");
  if (event.type === "pair") line.textContent = `${fields.pair_id}: ${fields.reason || fields.status}`;
  else if (event.type === "created") line.textContent = `job created with ${fields.total} pairs`;
  else line.textContent = `job ${event.type}`;
}

async function cancelJob() {
  if (!view.jobId) return;
  clearError();
  try {
    renderStatus(await apiJson(jobPath(view.jobId), { method: "DELETE" }));
  } catch (error) {
    showError(error);
  }
}

// ---- progress ---------------------------------------------------------------------------------------------

function stepRow(step) {
  const row = document.createElement("div");
  row.className = "step";
  row.dataset.testid = `step-${step}`;
  row.dataset.step = step;
  row.dataset.count = "0";
  const name = document.createElement("span");
  name.className = "step-name";
  name.textContent = step.replaceAll("_", " ");
  const track = document.createElement("span");
  track.className = "track";
  const fill = document.createElement("span");
  fill.className = "fill";
  track.append(fill);
  const count = document.createElement("span");
  count.className = "step-count";
  count.textContent = "0";
  row.append(name, track, count);
  return row;
}

function renderSteps(stages, total) {
  const container = byId("steps");
  const names = [...STEPS, ...Object.keys(stages).filter((step) => !STEPS.includes(step))];
  for (const step of names) {
    let row = container.querySelector(`[data-step="${CSS.escape(step)}"]`);
    if (!row) {
      row = stepRow(step);
      container.append(row);
    }
    const count = stages[step] || 0;
    row.dataset.count = String(count);
    row.classList.toggle("busy", count > 0);
    row.querySelector(".fill").style.width = `${total ? (100 * count) / total : 0}%`;
    row.querySelector(".step-count").textContent = String(count);
    row.title = `${count} of ${total} pairs wait for or run ${step}`;
  }
}

function renderStatus(status) {
  const state = byId("state");
  state.textContent = status.state;
  state.dataset.state = status.state;
  byId("done").textContent = String(status.done);
  byId("total").textContent = String(status.total);
  byId("accepted").textContent = String(status.accepted);
  byId("rejected").textContent = String(status.rejected);
  // a job that asks for N samples: its target, the round it is in, and why it stopped
  byId("target-box").hidden = status.target_accepted == null;
  byId("target").textContent = String(status.target_accepted ?? "");
  byId("rounds").textContent = String(status.rounds ?? 1);
  byId("stopped").textContent = status.stopped ? `· stopped: ${status.stopped}` : "";
  const overall = byId("overall");
  overall.max = Math.max(1, status.total);
  overall.value = status.done;
  renderSteps(status.stages || {}, status.total);
  renderFunnel(status.funnel || {});
  fillOutcomes(status.funnel);
  byId("cancel").hidden = FINAL_STATES.has(status.state) || !view.jobId;
}

// ---- funnel -----------------------------------------------------------------------------------------------

function svgElement(name, attributes = {}) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

/** "accepted" first, then the rejections, the most frequent first. */
function funnelOrder([keyA, countA], [keyB, countB]) {
  if (keyA === "accepted") return -1;
  if (keyB === "accepted") return 1;
  return countB - countA || keyA.localeCompare(keyB);
}

function renderFunnel(funnel) {
  const container = byId("funnel");
  const entries = Object.entries(funnel).sort(funnelOrder);
  if (!entries.length) {
    const empty = document.createElement("p");
    empty.className = "hint";
    empty.textContent = "no pair has finished yet";
    container.replaceChildren(empty);
    return;
  }
  const rowHeight = 26;
  const labelWidth = 260;
  const barSpace = 320;
  const width = labelWidth + barSpace + 60;
  const largest = Math.max(...entries.map(([, count]) => count));
  const total = entries.reduce((sum, [, count]) => sum + count, 0);
  const svg = svgElement("svg", {
    viewBox: `0 0 ${width} ${rowHeight * entries.length}`,
    width: "100%",
    role: "img",
    "aria-label": "finished pairs by outcome",
    "data-testid": "funnel-chart",
  });
  entries.forEach(([key, count], index) => {
    const y = index * rowHeight;
    const group = svgElement("g", { "data-testid": "funnel-bar", "data-key": key, "data-count": count });
    const title = svgElement("title");
    title.textContent = `${key}: ${count} of ${total} finished pairs`;
    const label = svgElement("text", { x: labelWidth - 8, y: y + rowHeight / 2, class: "funnel-label" });
    label.textContent = key;
    const bar = svgElement("rect", {
      x: labelWidth,
      y: y + 4,
      width: Math.max(2, (barSpace * count) / largest),
      height: rowHeight - 8,
      rx: 3,
      class: key === "accepted" ? "bar accepted" : "bar rejected",
    });
    const value = svgElement("text", {
      x: labelWidth + (barSpace * count) / largest + 6,
      y: y + rowHeight / 2,
      class: "funnel-count",
    });
    value.textContent = String(count);
    group.append(title, label, bar, value);
    svg.append(group);
  });
  container.replaceChildren(svg);
}

// ---- gallery ----------------------------------------------------------------------------------------------

function revokeBlobUrls(current) {
  for (const url of current.blobUrls) URL.revokeObjectURL(url);
  current.blobUrls = [];
}

function number(value) {
  return typeof value === "number" ? value.toFixed(3) : "–";
}

function regionScores(region, index) {
  return (
    `region ${index + 1}: crop cosine ${number(region.crop_cosine)}, text match ${number(region.text_match)}, ` +
    `label cosine ${number(region.label_cosine)}`
  );
}

/** Images need the Authorization header, which <img src> cannot send: fetch them and show blob: URLs. */
async function loadImage(current, image, key) {
  const match = IMAGE_KEY.exec(key || "");
  if (!match) return;
  try {
    const response = await api(jobPath(current.jobId, `/images/${match[1]}`), { signal: current.controller.signal });
    const url = URL.createObjectURL(await response.blob());
    if (current !== view) {
      URL.revokeObjectURL(url);
      return;
    }
    current.blobUrls.push(url);
    image.src = url;
  } catch (error) {
    if (error.name === "AbortError") return;
    image.closest("figure").classList.add("missing");
    image.alt = `image unavailable: ${error.message}`;
  }
}

function figure(current, record, side) {
  const key = side === "source" ? record.image_source : record.image_target;
  const wrapper = document.createElement("figure");
  wrapper.className = "shot";
  const frame = document.createElement("div");
  frame.className = "frame";
  if (key) {
    const image = document.createElement("img");
    image.dataset.testid = "pair-image";
    image.alt = `${side} image of ${record.pair_id}`;
    frame.append(image);
    loadImage(current, image, key);
    if (record.width && record.height) {
      record.regions.forEach((region, index) => frame.append(boxOverlay(region, index, record.width, record.height)));
    }
  } else {
    frame.classList.add("empty");
    frame.textContent = "no image";
  }
  const caption = document.createElement("figcaption");
  caption.textContent = side === "source" ? record.source : record.target;
  wrapper.append(frame, caption);
  return wrapper;
}

function boxOverlay(region, index, width, height) {
  const box = document.createElement("div");
  box.className = "box";
  box.dataset.testid = "box";
  box.style.left = `${(100 * region.box.x1) / width}%`;
  box.style.top = `${(100 * region.box.y1) / height}%`;
  box.style.width = `${(100 * (region.box.x2 - region.box.x1)) / width}%`;
  box.style.height = `${(100 * (region.box.y2 - region.box.y1)) / height}%`;
  box.title = regionScores(region, index);
  const tag = document.createElement("span");
  tag.className = "tag";
  tag.textContent = String(index + 1);
  box.append(tag);
  return box;
}

function regionList(record) {
  const list = document.createElement("ol");
  list.className = "regions";
  record.regions.forEach((region, index) => {
    const item = document.createElement("li");
    item.dataset.testid = "region";
    item.title = regionScores(region, index);
    const labels = document.createElement("span");
    labels.className = "labels";
    labels.textContent = `${region.label_source ?? "?"} → ${region.label_target ?? "?"}`;
    item.append(labels);
    if (region.difference_caption) {
      const caption = document.createElement("q");
      caption.dataset.testid = "caption";
      caption.textContent = region.difference_caption;
      item.append(caption);
    }
    list.append(item);
  });
  return list;
}

function rejectionNote(rejection) {
  const note = document.createElement("p");
  note.className = "rejection";
  note.dataset.testid = "rejection";
  note.textContent = `rejected at ${rejection.stage}: ${rejection.reason}`;
  const numbers = Object.entries(rejection.numbers || {})
    .map(([key, value]) => `${key} = ${typeof value === "number" ? number(value) : JSON.stringify(value)}`)
    .join(", ");
  note.title = numbers ? `${rejection.message} (${numbers})` : rejection.message;
  const message = document.createElement("small");
  message.textContent = rejection.message;
  note.append(document.createElement("br"), message);
  const rule = ruleLine(rejection);
  if (rule) {
    const line = document.createElement("small");
    line.className = "rule";
    line.dataset.testid = "rule";
    line.textContent = rule;
    note.append(document.createElement("br"), line);
  }
  return note;
}

const THRESHOLD = /(^|_)(min|max|threshold)$/;

/** The rule that decided a rejection in words: the numbers measured against the thresholds they met. */
function ruleLine(rejection) {
  const entries = Object.entries(rejection.numbers || {});
  if (!entries.length) return "";
  const show = ([key, value]) => `${key} ${typeof value === "number" ? number(value) : JSON.stringify(value)}`;
  const measured = entries.filter(([key]) => !THRESHOLD.test(key)).map(show);
  const limits = entries.filter(([key]) => THRESHOLD.test(key)).map(show);
  let text = rejection.reason.replaceAll("_", " ");
  if (measured.length) text += `: ${measured.join(", ")}`;
  if (limits.length) text += ` against ${limits.join(", ")}`;
  return text;
}

function card(current, record) {
  const article = document.createElement("article");
  article.className = `card ${record.status}`;
  article.dataset.testid = "gallery-card";
  article.dataset.pairId = record.pair_id;
  article.dataset.status = record.status;
  const header = document.createElement("header");
  const name = document.createElement("strong");
  name.textContent = record.pair_id;
  const badge = document.createElement("span");
  badge.className = `badge ${record.status}`;
  badge.textContent = record.status;
  header.append(name, badge);
  const pair = document.createElement("div");
  pair.className = "pair";
  pair.append(figure(current, record, "source"), figure(current, record, "target"));
  article.append(header, pair);
  if (record.rejection) article.append(rejectionNote(record.rejection));
  if (record.regions.length) article.append(regionList(record));
  article.tabIndex = 0;
  article.addEventListener("click", () => openZoom(article));
  article.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openZoom(article);
    }
  });
  return article;
}

// ---- the large view ---------------------------------------------------------------------------------------

let zoomed = null;

function openZoom(article) {
  zoomed = article;
  const large = article.cloneNode(true); // the images are blob URLs of this page: the clone shows them too
  large.removeAttribute("tabindex");
  byId("zoom").querySelector(".zoom-body").replaceChildren(large);
  if (!byId("zoom").open) byId("zoom").showModal();
}

function stepCards(by) {
  const cards = [...byId("gallery").querySelectorAll("[data-testid=gallery-card]")];
  if (!cards.length) return;
  const at = cards.indexOf(zoomed);
  const next = cards[((at < 0 ? 0 : at + by) + cards.length) % cards.length];
  if (byId("zoom").open) openZoom(next);
  else {
    zoomed = next;
    next.focus();
  }
}

function galleryKeys(event) {
  if (byId("gallery-section").hidden || event.target.matches("input, select, textarea")) return;
  if (event.key === "ArrowRight" || event.key === "j") stepCards(1);
  else if (event.key === "ArrowLeft" || event.key === "k") stepCards(-1);
  else return;
  event.preventDefault();
}

function galleryQuery() {
  const params = new URLSearchParams();
  const outcome = byId("gallery-outcome").value;
  const words = byId("gallery-search").value.trim();
  if (outcome) params.set("outcome", outcome);
  if (words) params.set("q", words);
  return params;
}

/** The outcome filter's choices: the job's funnel, each with its count. */
function fillOutcomes(funnel) {
  const select = byId("gallery-outcome");
  const chosen = select.value;
  const options = Object.entries(funnel || {}).sort(funnelOrder).map(([key, count]) => {
    const option = document.createElement("option");
    option.value = key;
    option.textContent = `${key} (${count})`;
    return option;
  });
  const all = document.createElement("option");
  all.value = "";
  all.textContent = "all";
  select.replaceChildren(all, ...options);
  select.value = chosen;
}

async function loadGallery(current, offset) {
  const params = galleryQuery();
  params.set("offset", `${offset}`);
  params.set("limit", `${GALLERY_PAGE_SIZE}`);
  const page = await apiJson(jobPath(current.jobId, `/samples?${params}`), { signal: current.controller.signal });
  if (current !== view) return;
  revokeBlobUrls(current);
  current.galleryOffset = offset;
  byId("gallery").replaceChildren(...page.items.map((record) => card(current, record)));
  byId("gallery-page").textContent = page.total
    ? `${offset + 1}–${offset + page.items.length} of ${page.total}`
    : "no samples";
  byId("gallery-prev").disabled = offset === 0;
  byId("gallery-next").disabled = page.next_offset === null;
  byId("gallery-section").hidden = false;
}

function turnPage(direction) {
  if (!view.jobId) return;
  clearError();
  const offset = Math.max(0, view.galleryOffset + direction * GALLERY_PAGE_SIZE);
  loadGallery(view, offset).catch(showError);
}

// ---- exports ----------------------------------------------------------------------------------------------

function attachmentName(disposition) {
  const match = /filename="?([^";]+)"?/.exec(disposition || "");
  return match ? match[1] : null;
}

/** Downloads need the Authorization header too: fetch, then save the blob through a temporary link. */
async function download(button) {
  if (!view.jobId) return;
  clearError();
  const format = button.dataset.format;
  button.disabled = true;
  try {
    const response = await api(jobPath(view.jobId, `/export?format=${encodeURIComponent(format)}`));
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = attachmentName(response.headers.get("Content-Disposition")) || `${view.jobId}-${format}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

// ---- the caller's jobs ------------------------------------------------------------------------------------

const JOBS_PAGE = 20;
let jobsNext = null;

function jobRow(job) {
  const row = document.createElement("tr");
  row.dataset.jobId = job.id;
  const link = document.createElement("a");
  link.href = `#job=${job.id}`;
  link.textContent = job.id;
  link.addEventListener("click", (event) => {
    event.preventDefault();
    openJob(job.id);
  });
  const created = new Date(job.created * 1000).toLocaleString();
  const cells = [link, job.state, `${job.accepted}`, `${job.done} / ${job.total}`, created];
  for (const content of cells) {
    const cell = document.createElement("td");
    if (typeof content === "string") cell.textContent = content;
    else cell.append(content);
    row.append(cell);
  }
  row.children[1].dataset.state = job.state;
  return row;
}

async function loadJobs(append = false) {
  const params = new URLSearchParams({ limit: `${JOBS_PAGE}`, offset: `${append ? jobsNext : 0}` });
  const state = byId("jobs-state").value;
  if (state) params.append("state", state);
  const page = await apiJson(`/v1/jobs?${params}`);
  const body = byId("jobs").querySelector("tbody");
  if (!append) body.replaceChildren();
  body.append(...page.items.map(jobRow));
  jobsNext = page.next_offset;
  byId("jobs-more").hidden = jobsNext === null;
  byId("jobs-empty").hidden = page.total > 0;
}

// ---- start ------------------------------------------------------------------------------------------------

function rememberKey() {
  try {
    const key = apiKey();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled (a private window): the key still works until the page closes
  }
}

function init() {
  try {
    byId("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    // storage disabled: start with an empty key
  }
  byId("api-key").addEventListener("input", rememberKey);
  byId("pairs-file").addEventListener("change", (event) => readPairsFile(event).catch(showError));
  byId("start").addEventListener("click", startJob);
  byId("cancel").addEventListener("click", cancelJob);
  byId("gallery-prev").addEventListener("click", () => turnPage(-1));
  byId("gallery-next").addEventListener("click", () => turnPage(1));
  byId("gallery-outcome").addEventListener("change", () => view.jobId && loadGallery(view, 0).catch(showError));
  const search = throttled(async () => {
    if (view.jobId) await loadGallery(view, 0);
  }, 300);
  byId("gallery-search").addEventListener("input", search);
  byId("zoom").addEventListener("close", () => zoomed && zoomed.focus());
  document.addEventListener("keydown", galleryKeys);
  for (const button of byId("exports").querySelectorAll("button[data-format]")) {
    button.addEventListener("click", () => download(button));
  }
  byId("jobs-refresh").addEventListener("click", () => loadJobs().catch(showError));
  byId("jobs-state").addEventListener("change", () => loadJobs().catch(showError));
  byId("jobs-more").addEventListener("click", () => loadJobs(true).catch(showError));
  byId("api-key").addEventListener("change", () => loadJobs().catch(showError));
  renderSteps({}, 0);
  if (apiKey()) loadJobs().catch(showError); // without a key, the list waits for one (or for Refresh)
  const linked = JOB_HASH.exec(window.location.hash);
  if (linked) openJob(linked[1]);
}

init();
