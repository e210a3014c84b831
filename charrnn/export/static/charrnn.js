"use strict";
// charrnn in the browser: the step function of a CharRNN (rnn, lstm or gru, any number of
// layers) and charrnn's sampling rules, in plain JavaScript with no dependencies.
//
// Shapes as in charrnn/engines/model.py: V vocabulary, E embedding (0 = one-hot input),
// H hidden units, L layers, G gates per cell (rnn 1, lstm 4, gru 3). Weights keep PyTorch's
// layout: W_ih (G*H, in) and W_hh (G*H, H), row-major, gates in PyTorch's order
// (lstm i, f, g, o; gru r, z, n). They are read as float32 (float16 files are widened);
// activations and sums are float64, so the page is at least as exact as charrnn's float32.
const CharRNN = (() => {
  const GATES = { rnn: 1, lstm: 4, gru: 3 };
  const sigmoid = a => 1 / (1 + Math.exp(-a));

  // -- reading the embedded weights ---------------------------------------------------

  function halfToFloat(h) { // IEEE 754 binary16 -> number
    const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 31, frac = h & 1023;
    if (exp === 0) return sign * frac * 2 ** -24;
    if (exp === 31) return frac ? NaN : sign * Infinity;
    return sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }

  function readTensors(bytes, manifest) { // {name: Float32Array}, from the little-endian buffer
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const half = manifest.precision === "float16", size = half ? 2 : 4, out = {};
    for (const [name, shape, offset] of manifest.tensors) {
      const n = shape.reduce((a, b) => a * b, 1), a = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const at = (offset + i) * size;
        a[i] = half ? halfToFloat(view.getUint16(at, true)) : view.getFloat32(at, true);
      }
      out[name] = a;
    }
    return out;
  }

  async function sha256Hex(bytes) { // null where the browser has no crypto.subtle (plain http://)
    if (!(globalThis.crypto && crypto.subtle)) return null;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return Array.from(digest, b => b.toString(16).padStart(2, "0")).join("");
  }

  // Reads and checks the model embedded in the page; throws an Error that says what is wrong.
  async function load(doc) {
    const manifest = JSON.parse(doc.getElementById("charrnn-manifest").textContent);
    if (manifest.format !== "charrnn-html" || manifest.task !== "next-char")
      throw new Error(`this page holds a ${manifest.format} model for task ${manifest.task}; ` +
                      "it can run next-char models");
    let bytes;
    try {
      const text = atob(doc.getElementById("charrnn-weights").textContent.trim());
      bytes = Uint8Array.from(text, ch => ch.charCodeAt(0));
    } catch (e) {
      throw new Error("this page is damaged (its weights are not valid base64): export it again");
    }
    if (bytes.length !== manifest.weights_bytes)
      throw new Error(`this page is damaged (${bytes.length} bytes of weights, expected ${manifest.weights_bytes}): ` +
                      "export it again");
    const sha = await sha256Hex(bytes);
    if (sha !== null && sha !== manifest.weights_sha256)
      throw new Error("this page is damaged (its weights' SHA-256 differs from the one recorded): export it again");
    return { model: new Model(manifest.model, readTensors(bytes, manifest)), vocab: new Vocab(manifest.vocab), manifest,
             verified: sha !== null };
  }

  // -- the model ------------------------------------------------------------------------

  // out (rows,) = W (rows, cols) @ x (cols,) + b (rows,). Four rows at a time: each x[j] is
  // read once for four independent sums, which V8 runs 2-3x faster than one row at a time.
  function matvec(W, x, b, out, rows, cols) {
    let r = 0;
    for (; r + 3 < rows; r += 4) {
      const o0 = r * cols, o1 = o0 + cols, o2 = o1 + cols, o3 = o2 + cols;
      let s0 = b[r], s1 = b[r + 1], s2 = b[r + 2], s3 = b[r + 3];
      for (let j = 0; j < cols; j++) {
        const xj = x[j];
        s0 += W[o0 + j] * xj; s1 += W[o1 + j] * xj; s2 += W[o2 + j] * xj; s3 += W[o3 + j] * xj;
      }
      out[r] = s0; out[r + 1] = s1; out[r + 2] = s2; out[r + 3] = s3;
    }
    for (; r < rows; r++) {
      const o = r * cols;
      let s = b[r];
      for (let j = 0; j < cols; j++) s += W[o + j] * x[j];
      out[r] = s;
    }
  }

  class Model {
    constructor(config, w) {
      const { cell, layers: L, hidden_size: H, vocab_size: V, embedding_size: E } = config;
      const G = GATES[cell], GH = G * H;
      Object.assign(this, { cell, L, H, V, G });
      // Layer 0's input projection for every character, (V, G*H) + b_ih: a step reads one row.
      const W0 = w["rnn.weight_ih_l0"], b0 = w["rnn.bias_ih_l0"], emb = w["embedding.weight"];
      this.table = new Float64Array(V * GH);
      for (let v = 0; v < V; v++)
        for (let r = 0; r < GH; r++) {
          let s = b0[r];
          if (E > 0) for (let e = 0; e < E; e++) s += W0[r * E + e] * emb[v * E + e];
          else s += W0[r * V + v]; // one-hot input picks column v
          this.table[v * GH + r] = s;
        }
      this.wih = [], this.bih = [], this.whh = [], this.bhh = [];
      for (let l = 0; l < L; l++) {
        this.wih.push(w[`rnn.weight_ih_l${l}`]); this.bih.push(w[`rnn.bias_ih_l${l}`]);
        this.whh.push(w[`rnn.weight_hh_l${l}`]); this.bhh.push(w[`rnn.bias_hh_l${l}`]);
      }
      this.headW = config.tie_weights ? emb : w["head.weight"]; // (V, H)
      this.headB = w["head.bias"];
      this.gx = new Float64Array(GH); this.gh = new Float64Array(GH); this.logits = new Float64Array(V);
      this.reset();
    }

    reset() { // the zero state: h (and c for lstm) of every layer, (H,) each
      this.h = Array.from({ length: this.L }, () => new Float64Array(this.H));
      this.c = Array.from({ length: this.L }, () => new Float64Array(this.H));
    }

    // Feed character `id`; returns the (V,) logits of the next one (a buffer the next step overwrites).
    step(id) {
      const { H, G, cell, gh } = this, GH = G * H;
      let x = null;
      for (let l = 0; l < this.L; l++) {
        const gx = l === 0 ? this.table.subarray(id * GH, (id + 1) * GH) : this.gx;
        if (l > 0) matvec(this.wih[l], x, this.bih[l], gx, GH, H);
        const h = this.h[l];
        matvec(this.whh[l], h, this.bhh[l], gh, GH, H); // from the old h, before it is overwritten
        if (cell === "rnn") {
          for (let i = 0; i < H; i++) h[i] = Math.tanh(gx[i] + gh[i]);
        } else if (cell === "lstm") { // gates i, f, g, o
          const c = this.c[l];
          for (let i = 0; i < H; i++) {
            const ig = sigmoid(gx[i] + gh[i]), fg = sigmoid(gx[H + i] + gh[H + i]);
            const gg = Math.tanh(gx[2 * H + i] + gh[2 * H + i]), og = sigmoid(gx[3 * H + i] + gh[3 * H + i]);
            c[i] = fg * c[i] + ig * gg;
            h[i] = og * Math.tanh(c[i]);
          }
        } else { // gru, gates r, z, n; b_hn stays inside r * (W_hn h + b_hn), as PyTorch has it
          for (let i = 0; i < H; i++) {
            const r = sigmoid(gx[i] + gh[i]), z = sigmoid(gx[H + i] + gh[H + i]);
            const n = Math.tanh(gx[2 * H + i] + r * gh[2 * H + i]);
            h[i] = (1 - z) * n + z * h[i];
          }
        }
        x = h;
      }
      matvec(this.headW, x, this.headB, this.logits, this.V, H);
      return this.logits;
    }
  }

  // -- characters <-> ids -----------------------------------------------------------------

  class Vocab {
    constructor(json) {
      this.bytes = json.encoding === "bytes";
      this.chars = this.bytes ? [] : Array.from(json.chars); // code points, id = position
      this.index = new Map(this.chars.map((ch, i) => [ch, i]));
    }
    encode(text) { // ids of text; throws listing the characters outside the vocabulary
      if (this.bytes) return Array.from(new TextEncoder().encode(text));
      const missing = [...new Set(Array.from(text).filter(ch => !this.index.has(ch)))];
      if (missing.length)
        throw new Error(`these characters are not in the model's vocabulary: ${JSON.stringify(missing.join(""))}`);
      return Array.from(text, ch => this.index.get(ch));
    }
    start() { // the prime when none is given: a newline, as charrnn sample
      return this.bytes || this.index.has("\n") ? this.encode("\n") : [0];
    }
    decoder() { // id -> text, holding back incomplete UTF-8 sequences in bytes mode
      if (!this.bytes) return { decode: id => this.chars[id], flush: () => "" };
      const d = new TextDecoder("utf-8");
      return { decode: id => d.decode(Uint8Array.of(id), { stream: true }), flush: () => d.decode() };
    }
  }

  // -- the sampling rules: charrnn/sampling/generate.py, on (V,) float64 logits -----------

  function softmax(z) {
    let m = -Infinity, s = 0;
    for (const v of z) m = Math.max(m, v);
    const p = z.map(v => Math.exp(v - m));
    for (const v of p) s += v;
    return p.map(v => v / s);
  }

  // logits / temperature, then top-k (ties at the k-th kept), then top-p (the smallest set of
  // most likely characters whose probability reaches p), the others set to -Infinity.
  function maskedLogits(logits, temperature, topK, topP) {
    const V = logits.length, z = Float64Array.from(logits, v => v / temperature);
    if (topK > 0 && topK < V) {
      const kth = Float64Array.from(z).sort()[V - topK];
      for (let i = 0; i < V; i++) if (z[i] < kth) z[i] = -Infinity;
    }
    if (topP < 1) {
      const p = softmax(z), order = Array.from(z.keys()).sort((a, b) => z[b] - z[a] || a - b); // stable, descending
      let cum = 0;
      for (const i of order) {
        const before = (cum += p[i]) - p[i]; // as NumPy's cumsum(p) - p
        if (before >= topP) z[i] = -Infinity;
      }
    }
    return z;
  }

  function pick(logits, opts, random) { // (V,) logits -> id
    let best = 0;
    if (opts.temperature === 0) { // greedy: the first most likely
      for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
      return best;
    }
    const p = softmax(maskedLogits(logits, opts.temperature, opts.topK, opts.topP));
    const cdf = new Float64Array(p.length);
    let s = 0, below = 0;
    p.forEach((v, i) => { cdf[i] = s += v; });
    const u = random() * cdf[cdf.length - 1];
    for (const v of cdf) if (v < u) below++;
    return Math.min(below, p.length - 1);
  }

  // The page's own seeded generator (mulberry32, two draws per 53-bit double): a seed gives the
  // same text every time in the page, though not the same text as charrnn sample's NumPy generator.
  function makeRandom(seed) {
    let a = seed === null ? crypto.getRandomValues(new Uint32Array(1))[0] : Number(BigInt.asUintN(32, BigInt(seed)));
    const next = () => {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return (t ^ (t >>> 14)) >>> 0;
    };
    return () => ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
  }

  function checkOptions(o) {
    if (!(Number.isInteger(o.length) && o.length >= 0)) throw new Error("length must be a whole number, 0 or more");
    if (!(o.temperature >= 0)) throw new Error("temperature must be 0 (greedy) or positive");
    if (!(Number.isInteger(o.topK) && o.topK >= 0)) throw new Error("top-k must be 0 (off) or a positive whole number");
    if (!(o.topP > 0 && o.topP <= 1)) throw new Error("top-p must be in (0, 1]");
    if (o.seed !== null && !Number.isInteger(o.seed)) throw new Error("seed must be a whole number, or empty");
  }

  // Next-character probabilities after each character of `text`, from the zero state: (P, V).
  function probs(model, vocab, text) {
    model.reset();
    return vocab.encode(text).map(id => Array.from(softmax(model.step(id))));
  }

  // Writes opts.prime (shown) and then up to opts.length characters, as charrnn sample does.
  // onText(piece) gets the text as it becomes final; text that could start the stop string
  // is held back until it cannot. The loop yields to the browser about every 30 ms so the
  // page stays live; cancelled() is asked then. Returns {text, chars, seconds}.
  async function generate(model, vocab, opts, onText = () => {}, cancelled = () => false) {
    checkOptions(opts);
    const random = makeRandom(opts.seed), stop = opts.stop || null, keep = stop ? stop.length - 1 : 0;
    const shown = opts.prime.length > 0, ids = shown ? vocab.encode(opts.prime) : vocab.start();
    const decoder = vocab.decoder();
    let text = shown ? opts.prime : "", tail = "", done = false, chars = 0, logits;
    if (text) onText(text);
    model.reset();
    for (const id of ids) logits = model.step(id);
    const t0 = performance.now();
    let paused = t0;
    for (let t = 0; t < opts.length && !done; t++) {
      const id = pick(logits, opts, random), win = tail + decoder.decode(id);
      chars++;
      let final;
      if (stop !== null && win.includes(stop)) [final, tail, done] = [win.slice(0, win.indexOf(stop)), "", true];
      else [final, tail] = [win.slice(0, Math.max(0, win.length - keep)), win.slice(Math.max(0, win.length - keep))];
      if (final) { text += final; onText(final); }
      if (done || t === opts.length - 1) break;
      logits = model.step(id);
      if (performance.now() - paused > 30) {
        await new Promise(resolve => setTimeout(resolve, 0));
        paused = performance.now();
        if (cancelled()) break;
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    if (!done) { const rest = tail + decoder.flush(); if (rest) { text += rest; onText(rest); } }
    return { text, chars, seconds };
  }

  return { load, Model, Vocab, softmax, maskedLogits, pick, makeRandom, probs, generate };
})();
