"""The transformer baseline of benchmarks/corpora.py: nanoGPT's model and its README CPU recipe,
trained for a wall-clock budget, and a sliding-window scorer.

Model (karpathy/nanoGPT model.py, reduced): token + position embeddings, L pre-norm blocks
(causal self-attention through F.scaled_dot_product_attention, a 4x GELU MLP), a final
LayerNorm and an output layer tied to the token embedding; no biases (nanoGPT's train.py
sets bias=False); weights drawn from N(0, 0.02), the residual projections from
N(0, 0.02 / sqrt(2L)).

Recipe (nanoGPT's README CPU command over config/train_shakespeare_char.py): 4 layers, 4
heads, n_embd 128, block 64, batch 12 random windows, dropout 0, AdamW (betas 0.9, 0.99,
weight decay 0.1 on the 2-D weights only), grad clip 1.0, learning rate 1e-3 with 100
linear warm-up iterations, then a cosine decay to 1e-4. nanoGPT decays over 2,000
iterations; here the decay runs over the wall-clock budget, as charrnn's does. Every 250
iterations, and at the end, it estimates the loss on 20 random batches of the training and
of the validation text (--eval_iters=20) and keeps the weights with the best validation
estimate (always_save_checkpoint=False): the budget includes those estimates.

Shapes: B windows, T <= block positions, C = n_embd, V vocabulary size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0


@dataclass
class Recipe:
    batch_size: int = 12
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        C = c.n_embd
        self.n_head, self.dropout = c.n_head, c.dropout
        self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
        self.qkv, self.proj = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
        self.fc, self.fc_proj = nn.Linear(C, 4 * C, bias=False), nn.Linear(4 * C, C, bias=False)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(C, dim=2)  # each (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, heads, T, C / heads)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))
        return x + self.drop(self.fc_proj(F.gelu(self.fc(self.ln_2(x)))))


class GPT(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.config = c
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=False)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.head.weight = self.wte.weight  # tied, as nanoGPT
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c.n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) ids, T <= block_size -> (B, T, V) logits."""
        T = idx.size(1)
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def lr_at(r: Recipe, step: int, used: float) -> float:
    """nanoGPT's get_lr, with the cosine over `used`, the fraction of the budget spent after warm-up."""
    if step < r.warmup_iters:
        return r.lr * (step + 1) / (r.warmup_iters + 1)
    return r.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, used))) * (r.lr - r.min_lr)


def make_optimizer(model: nn.Module, r: Recipe) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices and embeddings only (nanoGPT's configure_optimizers)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": r.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=r.lr, betas=r.betas)


def random_batch(data: torch.Tensor, B: int, T: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """B random windows of T ids and their targets, both (B, T) int64."""
    i = torch.randint(len(data) - T, (B,), generator=gen)
    offsets = torch.arange(T)
    return data[i[:, None] + offsets], data[i[:, None] + offsets + 1]


@dataclass
class GPTRun:
    model: GPT  # holding the weights of the best validation estimate
    steps: int
    seconds: float  # training and its own estimates
    best_estimate: float  # nats, the estimate that chose the weights
    points: list[tuple[float, int, float, float]] = field(default_factory=list)  # (s, step, train, val)


def train_gpt(
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    vocab_size: int,
    budget: float,
    config: GPTConfig | None = None,
    recipe: Recipe | None = None,
    log=None,
    max_steps: int = 0,
) -> GPTRun:
    """Train for `budget` seconds of wall clock (its estimates included), or max_steps if
    sooner (0: no limit; for tests); see the module doc."""
    c, r = config or GPTConfig(vocab_size), recipe or Recipe()
    torch.manual_seed(r.seed)
    gen = torch.Generator().manual_seed(r.seed)
    model = GPT(c)
    opt = make_optimizer(model, r)
    data = {
        "train": torch.from_numpy(np.asarray(train_ids, np.int64)),
        "val": torch.from_numpy(np.asarray(val_ids, np.int64)),
    }
    T = min(c.block_size, len(data["val"]) - 1, len(data["train"]) - 1)
    run = GPTRun(model, 0, 0.0, math.inf)
    best = None

    @torch.no_grad()
    def estimate(seconds: float) -> None:
        nonlocal best
        model.eval()
        losses = {}
        for split, ids in data.items():
            total = sum(
                F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
                for x, y in (random_batch(ids, r.batch_size, T, gen) for _ in range(r.eval_iters))
            )
            losses[split] = total / r.eval_iters
        model.train()
        run.points.append((seconds, run.steps, losses["train"], losses["val"]))
        if log:
            log(f"  gpt      {seconds:6.0f} s  step {run.steps:5d}  val estimate {losses['val']:.4f} nats")
        if losses["val"] < run.best_estimate:
            run.best_estimate = losses["val"]
            best = {k: v.clone() for k, v in model.state_dict().items()}

    start = time.perf_counter()
    warm_end = None  # seconds when warm-up ended: the cosine runs over the rest of the budget
    while (elapsed := time.perf_counter() - start) < budget and not (max_steps and run.steps >= max_steps):
        if run.steps == r.warmup_iters and warm_end is None:
            warm_end = elapsed
        used = (elapsed - warm_end) / max(budget - warm_end, 1e-9) if warm_end is not None else 0.0
        for g in opt.param_groups:
            g["lr"] = lr_at(r, run.steps, used)
        x, y = random_batch(data["train"], r.batch_size, T, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
        opt.step()
        run.steps += 1
        if run.steps % r.eval_interval == 0:
            estimate(time.perf_counter() - start)
    if not run.points or run.points[-1][1] != run.steps:
        estimate(time.perf_counter() - start)
    run.seconds = time.perf_counter() - start
    if best is not None:  # None only if every estimate was NaN: keep the last weights
        model.load_state_dict(best)
    model.eval()
    return run


def windows(n_ids: int, block: int, stride: int) -> list[tuple[int, int]]:
    """The sliding windows over a text of n_ids ids, as (start a, first scored offset lo).

    Window inputs are ids[a : a + w] (w = min(block, n_ids - 1)), predicting ids[a+1 : a+w+1];
    it scores offsets [lo, w). The first window scores all its positions; each next one
    moves by `stride` and scores only its new positions, so every character after the
    first window is predicted from at least block - stride + 1 characters. The last
    window ends at the text's end. Every character but the first is scored exactly once.
    """
    n = n_ids - 1  # positions that have a next character
    if n < 1:
        raise ValueError("a text of at least 2 characters is needed to score")
    if not 1 <= stride <= block:
        raise ValueError(f"stride must be in [1, block={block}], got {stride}")
    w = min(block, n)
    out, done = [(0, 0)], w
    while done < n:
        end = min(done + stride, n)
        out.append((end - w, done - (end - w)))
        done = end
    return out


@torch.no_grad()
def window_score(model, ids: np.ndarray, block: int = 64, stride: int = 32, batch: int = 64) -> tuple[float, int]:
    """Summed cross-entropy (nats) of ids[1:] under `model` ((B, T) ids -> (B, T, V) logits),
    read in sliding windows (see windows()), and how many characters were scored."""
    ids_t = torch.from_numpy(np.asarray(ids, np.int64))
    plan = windows(len(ids_t), block, stride)
    w = min(block, len(ids_t) - 1)
    offsets = torch.arange(w + 1)
    total, count = 0.0, 0
    for k in range(0, len(plan), batch):
        starts = torch.tensor([a for a, _ in plan[k : k + batch]])
        lo = torch.tensor([lo for _, lo in plan[k : k + batch]])
        chunk = ids_t[starts[:, None] + offsets]  # (b, w + 1)
        logits = model(chunk[:, :-1]).float()  # (b, w, V)
        nll = F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="none").view(len(starts), w)
        keep = offsets[None, :w] >= lo[:, None]  # (b, w): the positions this window scores
        total += float(nll[keep].sum())
        count += int(keep.sum())
    return total, count
