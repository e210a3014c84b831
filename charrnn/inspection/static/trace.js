// Renders a charrnn trace (see charrnn/activations.py: trace_payload) into a page:
// text coloured by one neuron's activation or by surprisal, a neuron picker ranked by
// a chosen criterion, and the model's top-5 guesses for the character under the
// pointer. Used unchanged by the self-contained report (inlined by viz.py) and by
// the playground (served by serve.py). Plain JS, no dependencies, no build step.
"use strict";

const CharTrace = (() => {
  // base64 little-endian float32 -> Float32Array (exact: the report's own numbers)
  function f32(b64) {
    const s = atob(b64), u = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
    return new Float32Array(u.buffer);
  }

  // diverging: blue (negative) - white (0) - red (positive); x in [-1, 1]
  function diverging(x) {
    x = Math.max(-1, Math.min(1, x));
    const a = Math.abs(x), to = x < 0 ? [49, 104, 186] : [200, 40, 40];
    const c = to.map(v => Math.round(255 + (v - 255) * a));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  // sequential: white (0 bits) - orange - dark red (x = 1)
  function heat(x) {
    x = Math.max(0, Math.min(1, x));
    const stops = [[255, 255, 255], [253, 174, 97], [165, 0, 38]];
    const i = x < 0.5 ? 0 : 1, f = x < 0.5 ? x * 2 : (x - 0.5) * 2;
    const c = stops[i].map((v, j) => Math.round(v + (stops[i + 1][j] - v) * f));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function esc(s) {
    return s.replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
  }

  function shown(ch) {
    return ({"\n": "\\n", "\t": "\\t", " ": "␣", "": "∅"}[ch] ?? ch);
  }

  function groupName(g) { return `layer ${g.layer} ${g.kind}`; }

  // One renderer per container. `root` gets the controls, text, and detail panel.
  function render(root, data) {
    const T = data.labels.length;
    const groups = data.groups.map(g => ({...g, values: f32(g.data)}));  // values: (H, T)
    const topProbs = f32(data.top_probs);
    const K = data.top_ids.length ? data.top_ids[0].length : 0;
    const maxBits = Math.max(1, ...data.surprisal.filter(s => s !== null && isFinite(s)));
    const state = {mode: "neuron", group: 0, neuron: 0, criterion: data.criteria[0], pinned: -1};

    root.innerHTML = `
      <div class="ct-controls">
        <label>colour by <select class="ct-mode">
          <option value="neuron">a neuron's activation</option>
          <option value="surprisal">surprisal (bits)</option></select></label>
        <label>state <select class="ct-group">${groups.map((g, i) => `<option value="${i}">${groupName(g)}</option>`).join("")}</select></label>
        <label>neuron <input class="ct-neuron" type="number" min="0" value="0"></label>
        <span class="ct-legend"></span>
      </div>
      <div class="ct-main">
        <div class="ct-side">
          <label>rank neurons by <select class="ct-criterion">${data.criteria.map(c => `<option>${esc(c)}</option>`).join("")}</select></label>
          <ol class="ct-ranking"></ol>
        </div>
        <div class="ct-text"></div>
      </div>
      <div class="ct-detail">Hover over or click a character to see the model's guesses for the next one.</div>`;
    const $ = sel => root.querySelector(sel);
    const textEl = $(".ct-text");
    textEl.innerHTML = data.labels.map((ch, t) => `<span data-t="${t}">${esc(ch)}</span>`).join("");
    const spans = Array.from(textEl.children);

    function ranking() {
      const all = [];
      groups.forEach((g, gi) => g.scores[state.criterion].forEach((s, n) => all.push([s, gi, n])));
      all.sort((a, b) => b[0] - a[0]);
      $(".ct-ranking").innerHTML = all.slice(0, 20).map(([s, gi, n]) =>
        `<li><a href="#" data-g="${gi}" data-n="${n}">${groupName(groups[gi])} #${n}</a> <small>${s.toPrecision(3)}</small></li>`).join("");
    }

    function paint() {
      const g = groups[state.group], H = g.size;
      state.neuron = Math.max(0, Math.min(H - 1, state.neuron | 0));
      $(".ct-group").value = state.group;
      $(".ct-neuron").value = state.neuron;
      $(".ct-neuron").max = H - 1;
      $(".ct-mode").value = state.mode;
      if (state.mode === "neuron") {
        const v = g.values.subarray(state.neuron * T, (state.neuron + 1) * T);
        let m = 1e-9;
        for (const x of v) m = Math.max(m, Math.abs(x));
        spans.forEach((s, t) => { s.style.backgroundColor = diverging(v[t] / m); });
        $(".ct-legend").innerHTML = `<span style="background:${diverging(-1)}">${(-m).toFixed(2)}</span><span style="background:#fff">0</span><span style="background:${diverging(1)}">${m.toFixed(2)}</span>`;
      } else {
        spans.forEach((s, t) => {
          const b = data.surprisal[t];
          s.style.backgroundColor = b === null ? "#eee" : heat(b / maxBits);
        });
        $(".ct-legend").innerHTML = `<span style="background:${heat(0)}">0 bits</span><span style="background:${heat(0.5)}">${(maxBits / 2).toFixed(1)}</span><span style="background:${heat(1)}">${maxBits.toFixed(1)}</span>`;
      }
    }

    // row r of top_ids/top_probs: the guesses for character r (row t + 1: after reading t)
    function guesses(r, actual) {
      return `<table class="ct-top">` + data.top_ids[r].map((id, j) => {
        const p = topProbs[r * K + j], hit = actual !== null && data.vocab[id] === actual;
        return `<tr class="${hit ? "ct-hit" : ""}"><td><code>${esc(shown(data.vocab[id]))}</code></td><td>${(100 * p).toFixed(1)}%</td><td><span class="ct-bar" style="width:${Math.round(120 * p)}px"></span></td></tr>`;
      }).join("") + `</table>`;
    }

    function bits(t) {
      return t < T && data.surprisal[t] !== null ? `${data.surprisal[t].toFixed(2)} bits` : "n/a";
    }

    function detail(t) {
      const ch = data.labels[t], next = t + 1 < T ? data.labels[t + 1] : null;
      const g = groups[state.group], a = g.values[state.neuron * T + t];
      const here = t > 0 || data.has_first
        ? `<div class="ct-guess"><div>guesses for this character (it was <code>${esc(shown(ch))}</code>, surprisal ${bits(t)}):</div>${guesses(t, ch)}</div>`
        : `<div class="ct-guess"><div>nothing came before the first character, so there are no guesses for it</div></div>`;
      const after = `<div class="ct-guess"><div>guesses for the next character (${next === null ? "the text ends here" : `it was <code>${esc(shown(next))}</code>, surprisal ${bits(t + 1)}`}):</div>${guesses(t + 1, next)}</div>`;
      $(".ct-detail").innerHTML = `<div>position ${t}: <code>${esc(shown(ch))}</code>; ${groupName(g)} #${state.neuron} = ${a.toFixed(4)}</div><div class="ct-guesses">${here}${after}</div>`;
    }

    $(".ct-mode").onchange = e => { state.mode = e.target.value; paint(); };
    $(".ct-group").onchange = e => { state.group = +e.target.value; paint(); };
    $(".ct-neuron").oninput = e => { state.neuron = +e.target.value; state.mode = "neuron"; paint(); };
    $(".ct-criterion").onchange = e => { state.criterion = e.target.value; ranking(); };
    $(".ct-ranking").onclick = e => {
      const a = e.target.closest("a");
      if (!a) return;
      e.preventDefault();
      Object.assign(state, {group: +a.dataset.g, neuron: +a.dataset.n, mode: "neuron"});
      paint();
    };
    textEl.onmouseover = e => { if (e.target.dataset.t !== undefined && state.pinned < 0) detail(+e.target.dataset.t); };
    textEl.onclick = e => {
      if (e.target.dataset.t === undefined) return;
      const t = +e.target.dataset.t;
      spans.forEach(s => s.classList.remove("ct-pinned"));
      state.pinned = state.pinned === t ? -1 : t;
      if (state.pinned >= 0) spans[t].classList.add("ct-pinned");
      detail(t);
    };

    // start on the best neuron of the first criterion, so the first view says something
    let best = [-1, 0, 0];
    groups.forEach((g, gi) => g.scores[state.criterion].forEach((s, n) => { if (s > best[0]) best = [s, gi, n]; }));
    state.group = best[1];
    state.neuron = best[2];
    ranking();
    paint();
    return {select(group, neuron, mode) { Object.assign(state, {group, neuron, mode: mode || "neuron"}); paint(); }, detail};
  }

  return {render, f32, diverging, heat};
})();
