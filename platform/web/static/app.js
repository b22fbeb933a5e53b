// Corral's dashboard: what htmx does not do for us — highlighting cited lines, streaming a run's answer
// from its events, and uploading with drag and drop. No build step; plain browser JavaScript.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// --- The source view: #L12 or #L12-L30 highlights those lines and scrolls to the first. ---
function highlightLines() {
  const source = document.getElementById("source");
  if (!source) return;
  source.querySelectorAll(".line.hl").forEach((el) => el.classList.remove("hl"));
  const m = /^#L(\d+)(?:-L?(\d+))?$/.exec(window.location.hash);
  if (!m) return;
  const last = Number(source.dataset.lines || "0");
  const start = Math.max(1, Number(m[1]));
  const end = Math.min(last, Math.max(start, Number(m[2] || m[1])));
  for (let n = start; n <= end; n++) {
    const line = document.getElementById("L" + n);
    if (line) line.classList.add("hl");
  }
  // The chunks that hold the highlighted lines are marked in the chunk list too.
  document.querySelectorAll(".chunk-list a[href^='#L']").forEach((a) => {
    const r = /^#L(\d+)-L(\d+)$/.exec(a.getAttribute("href"));
    a.classList.toggle("hl", Boolean(r) && Number(r[1]) <= end && Number(r[2]) >= start);
  });
  const first = document.getElementById("L" + start);
  if (first) first.scrollIntoView({ block: "center" });
}
window.addEventListener("hashchange", highlightLines);
document.addEventListener("DOMContentLoaded", highlightLines);

// --- A run's live view: the run's events over SSE; once final, the server's rendered card replaces it. ---
function describeStep(data) {
  const bits = [data.step || "step"];
  for (const key of ["tool", "path", "strategy", "prompt_tokens", "completion_tokens", "tokens", "seconds"]) {
    if (data[key] !== undefined && data[key] !== null && typeof data[key] !== "object") bits.push(key + "=" + data[key]);
  }
  return bits.join(" ");
}

function followRun(box) {
  if (box.dataset.following) return;
  box.dataset.following = "1";
  const answer = box.querySelector(".live-answer");
  const decision = box.querySelector(".live-decision");
  const steps = box.querySelector(".live-steps");
  const source = new EventSource(box.dataset.events);
  let restart = false; // an escalation answers again: its text replaces the first attempt's
  source.addEventListener("decision", (e) => {
    const d = JSON.parse(e.data);
    decision.removeAttribute("aria-busy");
    decision.textContent = "Strategy: " + (d.strategy || "?") + (d.reasons && d.reasons.length ? " — " + d.reasons.join("; ") : "");
  });
  source.addEventListener("step", (e) => {
    const data = JSON.parse(e.data);
    if (data.step === "escalate") restart = true;
    const li = document.createElement("li");
    li.textContent = describeStep(data);
    steps.appendChild(li);
  });
  source.addEventListener("token", (e) => {
    const d = JSON.parse(e.data);
    if (d.call && d.call !== "answer") return; // map and reduce calls work towards the answer
    if (restart) { answer.textContent = ""; restart = false; }
    answer.textContent += d.text || "";
  });
  source.addEventListener("final", () => {
    source.close();
    htmx.ajax("GET", box.dataset.card, { target: box, swap: "outerHTML" });
  });
  source.onerror = () => {
    // The server closes the stream after "final"; anything else: say so, and let EventSource retry.
    if (source.readyState === EventSource.CLOSED) {
      decision.removeAttribute("aria-busy");
      decision.textContent = "Lost the run's stream. Reload the page to see where it is.";
    }
  };
}

function startRuns(root) {
  root.querySelectorAll("[data-events]").forEach(followRun);
}

// --- Uploads: drag and drop onto the zone, progress while sending, then the job's live page. ---
function setupUpload(form) {
  const zone = form.querySelector("[data-dropzone]");
  const input = form.querySelector('input[type="file"]');
  const chosen = form.querySelector("[data-chosen]");
  const bar = form.querySelector("[data-progress]");
  const button = form.querySelector('button[type="submit"]');
  const list = () => {
    chosen.replaceChildren(...Array.from(input.files).map((f) => {
      const li = document.createElement("li");
      li.textContent = f.name + " (" + Math.max(1, Math.round(f.size / 1024)) + " KiB)";
      return li;
    }));
  };
  input.addEventListener("change", list);
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (e) => {
    if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; list(); }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!input.files.length) return;
    const body = new FormData();
    for (const f of input.files) body.append("files", f, f.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.setRequestHeader("HX-Request", "true"); // errors come back as a fragment for #flash
    bar.hidden = false;
    button.setAttribute("aria-busy", "true");
    button.disabled = true;
    xhr.upload.onprogress = (p) => { if (p.lengthComputable) bar.value = (100 * p.loaded) / p.total; };
    xhr.onload = () => {
      if (xhr.status === 202) { window.location.href = JSON.parse(xhr.responseText).url; return; }
      const flash = document.getElementById("flash");
      if ((xhr.getResponseHeader("content-type") || "").includes("json")) {
        // Refused before the dashboard saw it (a body over the upload limit): the API's JSON error.
        let message = "The upload was refused (" + xhr.status + ").";
        try { message = JSON.parse(xhr.responseText).error.message; } catch (err) { /* keep the status */ }
        const p = document.createElement("p");
        p.className = "error flash";
        p.setAttribute("role", "alert");
        p.textContent = message;
        flash.replaceChildren(p);
      } else {
        flash.innerHTML = xhr.responseText; // our own error fragment, rendered and escaped by the server
      }
      bar.hidden = true;
      button.removeAttribute("aria-busy");
      button.disabled = false;
    };
    xhr.onerror = () => {
      document.getElementById("flash").textContent = "The upload did not reach the server. Try again.";
      button.removeAttribute("aria-busy");
      button.disabled = false;
    };
    xhr.send(body);
  });
}

// Enter asks, Shift+Enter makes a new line.
function setupAskBox(root) {
  root.querySelectorAll("textarea[data-submit-on-enter]").forEach((area) => {
    area.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); area.form.requestSubmit(); }
    });
  });
}

// --- The engine's time series, drawn with uPlot from the JSON the page carries. ---
function drawCharts() {
  if (typeof uPlot === "undefined") return;
  document.querySelectorAll("[data-chart]").forEach((el) => {
    const data = JSON.parse(el.dataset.series);
    const values = data[el.dataset.chart];
    if (!data.t.length) { el.textContent = "No readings yet."; return; }
    const width = Math.max(240, el.clientWidth || 600);
    const end = data.t[data.t.length - 1];
    new uPlot({ width, height: 180, series: [{}, { label: el.dataset.label, stroke: "#1064aa", width: 2,
                                                   points: { size: 5 } }],
                scales: { x: { time: true, range: () => [end - 3600, end] } }, // always the last hour
                axes: [{}, { size: 60 }] }, [data.t, values], el);
  });
}

// --- Evaluation: each strategy's evidence recall (y) against the tokens it read (x), as points. ---
const PALETTE = ["#1064aa", "#e8590c", "#2b8a3e", "#9c36b5", "#c92a2a", "#495057"];
function drawScatters() {
  if (typeof uPlot === "undefined") return;
  document.querySelectorAll("[data-scatter]").forEach((el) => {
    const data = JSON.parse(el.dataset.scatter);
    if (!data.x.length) { el.textContent = "Nothing measured."; return; }
    const log = data.x.every((x) => x > 0);
    const series = [{ label: el.dataset.x }].concat(data.series.map((s, i) => ({
      label: s.label, stroke: PALETTE[i % PALETTE.length], paths: () => null,
      points: { show: true, size: 10, fill: PALETTE[i % PALETTE.length] },
    })));
    new uPlot({ width: Math.max(240, el.clientWidth || 600), height: 240, series,
                scales: { x: { time: false, distr: log ? 3 : 1 }, y: { range: [0, 1.05] } },
                axes: [{ label: el.dataset.x }, { label: el.dataset.y, size: 60 }] },
              [data.x].concat(data.series.map((s) => s.values)), el);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  drawCharts();
  drawScatters();
  document.querySelectorAll("form[data-upload]").forEach(setupUpload);
  setupAskBox(document);
  startRuns(document);
  document.body.addEventListener("htmx:load", (e) => startRuns(e.target.parentElement || e.target));
});
