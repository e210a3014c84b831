// The classifier page of `charrnn serve` (serve_classify.py): at every keystroke it asks
// POST api/classify for the label distribution after each character of the text, then draws
// a bar per most likely label for the whole text, and a strip of how the top label's
// probability moved letter by letter.
"use strict";
const $ = id => document.getElementById(id);
const pct = p => (100 * p).toFixed(1) + "%";
let latest = 0;  // the number of the last request sent: an answer to an older one is dropped

fetch("api/model").then(r => r.json()).then(m => {
  $("model").textContent = `${m.name}: a classifier of ${m.labels.length} labels (${m.labels.join(", ")}); ` +
    `${m.cell.toUpperCase()}, ${m.layers} layer(s) of ${m.hidden_size} units; up to ${m.limits.prime} characters`;
  $("text").maxLength = m.limits.prime;
});

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function element(tag, className, text) {
  const e = document.createElement(tag);
  e.className = className;
  if (text !== undefined) e.textContent = text;  // labels are file names: never parsed as HTML
  return e;
}

// One row per label of answer.top: its name, a bar as long as its probability, the number.
function drawBars(top) {
  const box = $("bars");
  box.textContent = "";
  for (const [label, p] of top) {
    const row = element("div", "row"), track = element("div", "track"), fill = element("div", "fill");
    row.dataset.label = label;
    row.dataset.p = p;
    fill.style.width = pct(p);
    track.append(fill);
    row.append(element("span", "name", label), track, element("span", "p", pct(p)));
    box.append(row);
  }
}

// One column per character read: as tall as the whole text's top label's probability after it;
// pointing at one tells the numbers.
function drawStrip(answer) {
  const box = $("strip");
  box.textContent = "";
  $("step").textContent = "";
  if (!answer.chars.length) {
    $("strip-caption").textContent = "";
    return;
  }
  const label = answer.top[0][0], k = answer.labels.indexOf(label);
  $("strip-caption").textContent = `the probability of ${label} after each character`;
  answer.steps.forEach((row, t) => {
    const p = row[k], best = row.indexOf(Math.max(...row));
    const step = element("div", "step"), col = element("div", "col"), fill = element("div", "fill");
    step.dataset.p = p;
    step.title = `after ${JSON.stringify(answer.chars.slice(0, t + 1).join(""))}: ${label} ${pct(p)}` +
                 (best === k ? "" : `; most likely then: ${answer.labels[best]} ${pct(row[best])}`);
    fill.style.height = pct(p);
    col.append(fill);
    step.append(col, element("span", "ch", answer.chars[t] === " " ? "\u2423" : answer.chars[t]));
    step.onmouseenter = () => { $("step").textContent = step.title; };
    box.append(step);
  });
  $("step").textContent = box.lastChild.title;  // the whole text's, until the mouse points at a letter
}

async function classify() {
  const text = $("text").value, n = ++latest;
  try {
    const response = await fetch("api/classify", {method: "POST", headers: {"Content-Type": "application/json"},
                                                 body: JSON.stringify({text})});
    const answer = await response.json().catch(() => ({error: response.statusText}));
    if (n !== latest) return;  // the user typed on: the answer to the newer text is on its way
    if (!response.ok) throw new Error(answer.error || response.statusText);
    drawBars(answer.top);
    drawStrip(answer);
    $("bars").dataset.text = text;  // the text the bars are of (the browser test waits on it)
    status(!text ? "Before any character, every label is alike. Type a name."
           : answer.skipped ? `Not in the model's vocabulary, so not read: ${answer.skipped}.` : "");
  } catch (err) {
    if (n === latest) status(String(err.message || err), true);
  }
}

$("text").addEventListener("input", classify);
classify();  // the empty text: the model's answer before it has read anything
