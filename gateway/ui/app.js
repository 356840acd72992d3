// memq playground: talks to the gateway it is served from, with the key in an
// Authorization header. Everything from the server or the user is put on the page as text
// (textContent), never as HTML.
"use strict";

const KEY_STORAGE = "memq.apiKey";
const NAMESPACE_STORAGE = "memq.namespace";
const STREAM_RETRIES = 5;
const PAGE_SIZE = 20;

const $ = (id) => document.getElementById(id);

const state = {
  job: null, // {id, tokens, text, tokenEvents, done}
  stream: null, // AbortController of the running event stream
  memoryCursor: null,
};

// ---------------------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, body) {
    const code = body && typeof body === "object" && body.error ? body.error : "http_error";
    const message =
      body && typeof body === "object" && body.message ? body.message : String(body || "");
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

function apiKey() {
  return $("api-key").value.trim();
}

function namespace() {
  return $("namespace").value.trim();
}

function headers(extra = {}) {
  const found = { ...extra };
  const key = apiKey();
  if (key) found.Authorization = `Bearer ${key}`;
  return found;
}

async function api(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

function showError(error) {
  const box = $("errors");
  box.textContent = error instanceof Error ? error.message : String(error);
  box.hidden = false;
}

function clearError() {
  $("errors").hidden = true;
  $("errors").textContent = "";
}

// Run an action from a form or button: errors go to the alert region, never lost.
function guarded(action) {
  return async (event) => {
    if (event) event.preventDefault();
    clearError();
    try {
      await action(event);
    } catch (error) {
      showError(error);
    }
  };
}

// ---------------------------------------------------------------------------- helpers

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function number(value, digits = 3) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

// ---------------------------------------------------------------------------- connection

function loadSettings() {
  const key = localStorage.getItem(KEY_STORAGE);
  if (key) $("api-key").value = key;
  const ns = localStorage.getItem(NAMESPACE_STORAGE);
  if (ns) $("namespace").value = ns;
}

function saveSettings() {
  if ($("remember-key").checked && apiKey()) localStorage.setItem(KEY_STORAGE, apiKey());
  else localStorage.removeItem(KEY_STORAGE);
  if ($("namespace").checkValidity()) localStorage.setItem(NAMESPACE_STORAGE, namespace());
}

async function checkServer() {
  const line = $("server-status");
  try {
    const resp = await fetch("/readyz");
    const body = await resp.json();
    const model = body.model ? ` · model ${body.model}` : "";
    const down = Object.entries(body.checks || {})
      .filter(([, v]) => v !== "ok")
      .map(([k]) => k);
    line.textContent =
      resp.ok ? `Gateway ready${model}` : `Gateway not ready: ${down.join(", ") || body.status}`;
    line.dataset.ready = String(resp.ok);
  } catch (error) {
    line.textContent = `Gateway unreachable: ${error.message}`;
    line.dataset.ready = "false";
  }
}

function requireNamespace() {
  const input = $("namespace");
  if (!input.checkValidity()) {
    input.focus();
    throw new Error(
      "The namespace must be 1-128 letters, digits or _ . : @ - (for example user:42).",
    );
  }
  return namespace();
}

// ---------------------------------------------------------------------------- memories

function memoryRow(memory, hit) {
  const row = el("tr");
  row.dataset.memoryId = memory.id;
  row.append(el("td", memory.text));
  row.append(el("td", hit ? number(hit.score) : "", { class: "num" }));
  row.append(el("td", hit ? number(hit.similarity) : "", { class: "num" }));
  const actions = el("td");
  const remove = el("button", "Delete", {
    type: "button",
    class: "secondary small",
    "aria-label": `Delete memory: ${memory.text.slice(0, 80)}`,
  });
  remove.addEventListener(
    "click",
    guarded(async () => {
      await api("DELETE", `/v1/memories/${encodeURIComponent(memory.id)}`);
      row.remove();
      $("memory-message").textContent = `Deleted: ${memory.text}`;
    }),
  );
  actions.append(remove);
  row.append(actions);
  return row;
}

async function listMemories(more = false) {
  const ns = requireNamespace();
  const params = new URLSearchParams({ namespace: ns, limit: String(PAGE_SIZE) });
  if (more && state.memoryCursor) params.set("cursor", state.memoryCursor);
  const page = await api("GET", `/v1/memories?${params}`);
  const body = $("memory-table").tBodies[0];
  if (!more) body.replaceChildren();
  for (const memory of page.items) body.append(memoryRow(memory, null));
  state.memoryCursor = page.next_cursor;
  $("more-memories").hidden = !page.next_cursor;
  $("memory-caption").textContent = `Memories in ${ns} (${body.rows.length} shown)`;
}

async function searchMemories() {
  const ns = requireNamespace();
  const query = $("search-query").value.trim();
  if (!query) throw new Error("Type something to search for.");
  const found = await api("POST", "/v1/memories/search", { namespace: ns, query, top_k: 10 });
  const body = $("memory-table").tBodies[0];
  body.replaceChildren(...found.hits.map((hit) => memoryRow(hit, hit)));
  $("more-memories").hidden = true;
  $("memory-caption").textContent = `Best matches in ${ns} for “${query}”`;
}

async function addMemories() {
  const ns = requireNamespace();
  const lines = $("memory-text")
    .value.split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  if (!lines.length) throw new Error("Write a memory first (one per line).");
  let added;
  if (lines.length === 1) {
    added = [await api("POST", "/v1/memories", { namespace: ns, text: lines[0] })];
  } else {
    const items = lines.map((text) => ({ namespace: ns, text }));
    added = (await api("POST", "/v1/memories/batch", { items })).items;
  }
  const duplicates = added.filter((m) => m.deduplicated).length;
  $("memory-message").textContent =
    `Added ${added.length - duplicates} to ${ns}` +
    (duplicates ? ` (${duplicates} already there)` : "") +
    ".";
  $("memory-text").value = "";
  await listMemories();
}

// ---------------------------------------------------------------------------- jobs

function jobType() {
  return document.querySelector('input[name="job-type"]:checked').value;
}

function jobRequest() {
  const type = jobType();
  const text = $("job-text").value;
  const params = {
    max_new_tokens: Number($("max-new-tokens").value),
    temperature: Number($("temperature").value),
  };
  if (type === "summarize") return { type, text, params };
  const topK = Number($("top-k").value);
  return { type, prompt: text, params, memory: { namespace: requireNamespace(), top_k: topK } };
}

function setStatus(status, extra = "") {
  const line = $("job-status");
  line.dataset.status = status;
  line.dataset.jobId = state.job.id;
  line.textContent = `Job ${state.job.id}: ${status}${extra}`;
}

function resetJobPanel(maxTokens) {
  $("job-panel").hidden = false;
  $("job-details").hidden = true;
  $("job-error").hidden = true;
  $("job-output").textContent = "";
  $("job-output").dataset.tokenEvents = "0";
  $("job-progress").max = maxTokens;
  $("job-progress").value = 0;
  $("job-progress").removeAttribute("data-done");
}

async function submitJob() {
  if (state.stream) state.stream.abort();
  saveSettings();
  const request = jobRequest();
  const accepted = await api("POST", "/v1/jobs", request);
  state.job = { id: accepted.id, tokens: 0, text: "", tokenEvents: 0, done: false };
  resetJobPanel(request.params.max_new_tokens);
  setStatus(accepted.status);
  $("cancel-job").disabled = false;
  const job = await follow(accepted.id);
  showResult(job);
}

async function cancelJob() {
  if (!state.job || state.job.done) return;
  $("cancel-job").disabled = true;
  await api("POST", `/v1/jobs/${encodeURIComponent(state.job.id)}/cancel`);
  // The event stream delivers the cancelled job (with its partial text) as its result.
}

function onToken(data) {
  const job = state.job;
  job.text = job.text.slice(0, data.offset) + data.delta;
  job.tokens = data.tokens;
  job.tokenEvents += 1;
  const output = $("job-output");
  output.textContent = job.text;
  output.dataset.tokenEvents = String(job.tokenEvents);
  $("job-progress").value = Math.min(job.tokens, $("job-progress").max);
  setStatus("running", ` · ${job.tokens} tokens`);
}

// Split off complete lines; a trailing "\r" waits for a possible "\n" in the next chunk.
function takeLines(buffer) {
  const lines = [];
  let start = 0;
  for (let i = 0; i < buffer.length; i++) {
    const c = buffer[i];
    if (c !== "\n" && c !== "\r") continue;
    if (c === "\r" && i + 1 === buffer.length) break;
    lines.push(buffer.slice(start, i));
    if (c === "\r" && buffer[i + 1] === "\n") i++;
    start = i + 1;
  }
  return [lines, buffer.slice(start)];
}

// Server-Sent Events read with fetch (EventSource cannot send an Authorization header).
// A dropped stream is resumed after its last event; the result event ends it.
async function follow(jobId) {
  let lastId = null;
  for (let attempt = 0; attempt <= STREAM_RETRIES; attempt++) {
    const controller = new AbortController();
    state.stream = controller;
    const extra = lastId ? { "Last-Event-ID": lastId } : {};
    let resp;
    try {
      resp = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {
        headers: headers(extra),
        signal: controller.signal,
      });
    } catch (error) {
      if (controller.signal.aborted) throw error;
      await new Promise((done) => setTimeout(done, 250 * 2 ** attempt));
      continue;
    }
    if (!resp.ok) {
      const text = await resp.text();
      let body = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: shown as it is
      }
      throw new ApiError(resp.status, body);
    }
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "";
    let data = [];
    let id = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        let lines;
        [lines, buffer] = takeLines(buffer + value);
        for (const line of lines) {
          if (line === "") {
            if (data.length) {
              lastId = id || lastId;
              const payload = JSON.parse(data.join("\n"));
              if (event === "token") onToken(payload);
              else if (event === "status") setStatus(payload.status);
              else if (event === "result") return payload;
            }
            event = "";
            data = [];
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          let field = colon < 0 ? "" : line.slice(colon + 1);
          if (field.startsWith(" ")) field = field.slice(1);
          if (name === "event") event = field;
          else if (name === "data") data.push(field);
          else if (name === "id") id = field;
        }
      }
    } catch (error) {
      if (controller.signal.aborted) throw error;
    } finally {
      reader.releaseLock();
    }
  }
  // The stream kept breaking: the job record is still the authority.
  return api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
}

function highlightedPrompt(prompt, memories) {
  // Where each used memory's text appears in the model input, first occurrence.
  const ranges = [];
  memories.forEach((memory, index) => {
    if (!memory.used) return;
    const at = prompt.indexOf(memory.text);
    if (at >= 0) ranges.push({ start: at, end: at + memory.text.length, rank: index + 1 });
  });
  ranges.sort((a, b) => a.start - b.start);
  const nodes = [];
  let position = 0;
  for (const range of ranges) {
    if (range.start < position) continue; // overlapping: keep the first
    nodes.push(document.createTextNode(prompt.slice(position, range.start)));
    const mark = el("mark", prompt.slice(range.start, range.end), {
      class: `hl hl-${((range.rank - 1) % 6) + 1}`,
      title: `memory #${range.rank}`,
    });
    nodes.push(mark);
    position = range.end;
  }
  nodes.push(document.createTextNode(prompt.slice(position)));
  return nodes;
}

function showResult(job) {
  state.job.done = true;
  state.stream = null;
  $("cancel-job").disabled = true;
  setStatus(job.status);
  $("job-progress").dataset.done = "true";
  const result = job.result;
  if (job.error) {
    $("job-error").textContent = `${job.error.error}: ${job.error.message}`;
    $("job-error").hidden = false;
  }
  if (!result) return;
  $("job-output").textContent = result.text;
  $("job-progress").value = Math.min(result.usage.completion_tokens, $("job-progress").max);
  const rows = result.memories.map((memory, index) => {
    const row = el("tr");
    row.dataset.memoryId = memory.id;
    const rank = el("td");
    rank.append(el("span", String(index + 1), { class: `badge hl-${(index % 6) + 1}` }));
    row.append(rank);
    row.append(el("td", memory.text));
    row.append(el("td", number(memory.score), { class: "num" }));
    row.append(el("td", number(memory.similarity), { class: "num" }));
    const used = memory.used ? "used" : `left out: ${(memory.left_out || "no").replaceAll("_", " ")}`;
    row.append(el("td", used, { class: memory.used ? "used" : "left-out" }));
    return row;
  });
  $("retrieved-table").tBodies[0].replaceChildren(...rows);
  if (!rows.length) {
    const none = el("tr");
    none.append(el("td", "No memories were retrieved.", { colspan: "5" }));
    $("retrieved-table").tBodies[0].append(none);
  }
  $("job-prompt").replaceChildren(...highlightedPrompt(result.prompt, result.memories));
  const usage = result.usage;
  const timings = result.timings;
  const seconds = (v) => (v === null || v === undefined ? "—" : `${Number(v).toFixed(3)} s`);
  const numbers = [
    ["Model", result.model],
    ["Finish reason", result.finish_reason],
    [
      "Tokens",
      `prompt ${usage.prompt_tokens} + context ${usage.context_tokens} = input ` +
        `${usage.input_tokens}; completion ${usage.completion_tokens}`,
    ],
    ["Queue wait", seconds(timings.queue_wait_s)],
    ["Retrieval", seconds(timings.retrieval_s)],
    ["Generation", seconds(timings.generation_s)],
    ["Total", seconds(timings.total_s)],
  ];
  $("job-numbers").replaceChildren(...numbers.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
  $("job-details").hidden = false;
}

// ---------------------------------------------------------------------------- wiring

function onTypeChange() {
  const generate = jobType() === "generate";
  $("job-text-label").textContent = generate ? "Prompt" : "Text to summarize";
  $("top-k").disabled = !generate;
}

document.addEventListener("DOMContentLoaded", () => {
  loadSettings();
  checkServer();
  $("api-key").addEventListener("change", saveSettings);
  $("remember-key").addEventListener("change", saveSettings);
  $("namespace").addEventListener("change", () => {
    saveSettings();
    if ($("namespace").checkValidity()) guarded(() => listMemories())();
  });
  $("forget-key").addEventListener("click", () => {
    $("api-key").value = "";
    localStorage.removeItem(KEY_STORAGE);
    $("api-key").focus();
  });
  $("connection-form").addEventListener("submit", (event) => event.preventDefault());
  $("memory-form").addEventListener("submit", guarded(addMemories));
  $("search-form").addEventListener("submit", guarded(searchMemories));
  $("list-memories").addEventListener("click", guarded(() => listMemories()));
  $("more-memories").addEventListener("click", guarded(() => listMemories(true)));
  $("job-form").addEventListener("submit", guarded(submitJob));
  $("cancel-job").addEventListener("click", guarded(cancelJob));
  for (const radio of document.querySelectorAll('input[name="job-type"]')) {
    radio.addEventListener("change", onTypeChange);
  }
  onTypeChange();
  guarded(() => listMemories())();
});
