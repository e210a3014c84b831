"""`charrnn eval` on a labelled model: what a classifier, a tagger and a conditional
generator are measured by, each beside a baseline computed in the same call.

    classify   accuracy, macro-F1, per-class precision and recall, confusion matrix
               (text, and a PNG with --confusion), beside the majority class
    tag        per-character accuracy and macro-F1 over the tags; truecase: the F1
               of the upper-case class, beside the most frequent casing of each word
               seen in the training split
    generate   nats per character of each item under its true label, against the
               same item under every other label

The data is read as at training, with the run's vocabulary and label set, and
split the same way; --split picks the part to score (scikit-learn computes the
metrics).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace

import numpy as np

from charrnn.data.items import ItemBatches, NextCharRows
from charrnn.data.labelled import UPPER, LabelledItems
from charrnn.errors import CharRNNError
from charrnn.tasks import IGNORE

WORD = re.compile(r"\w+")


@dataclass
class Report:
    """Named figures and lines of text, as `charrnn eval` prints them."""

    figures: dict[str, float]
    lines: list[str]


def labelled_items(run_meta: dict, data: str, split: str):
    """(train items, scored items, vocab, labels) of `data` as the run split it."""
    from charrnn.training.build import labelled_split
    from charrnn.training.config import TrainConfig

    config = TrainConfig.from_json(run_meta["train"])
    config = replace(config, data=replace(config.data, data=data))
    vocab, labels, items, _, _ = labelled_split(config, run_meta)
    train, val, test = items.split(config.data.val_fraction, config.data.test_fraction)
    return train, {"all": items, "train": train, "val": val, "test": test}[split], vocab, labels


def texts_of(items: LabelledItems, vocab) -> list[str]:
    return [vocab.decode(items.item(k)) for k in range(len(items))]


def classify_report(labeller, items: LabelledItems, train: LabelledItems, confusion_png: str | None) -> Report:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    C = len(labeller.labels)
    truth = np.asarray(items.targets)
    pred = labeller.classify(texts_of(items, labeller.vocab)).argmax(-1)
    majority = np.bincount(train.targets, minlength=C).argmax()  # the most frequent label in training
    classes = list(range(C))
    p, r, f, n = precision_recall_fscore_support(truth, pred, labels=classes, zero_division=0)
    acc, f1 = accuracy_score(truth, pred), f1_score(truth, pred, labels=classes, average="macro", zero_division=0)
    base = np.full_like(truth, majority)
    base_acc = accuracy_score(truth, base)
    base_f1 = f1_score(truth, base, labels=classes, average="macro", zero_division=0)
    cm = confusion_matrix(truth, pred, labels=classes)
    width = max(len(s) for s in labeller.labels)
    lines = [
        f"items       {len(truth):,}",
        f"accuracy    {acc:.4f}   (majority class {labeller.labels[majority]!r}: {base_acc:.4f})",
        f"macro-F1    {f1:.4f}   (majority class: {base_f1:.4f})",
        "",
        f"{'label':<{width}}  precision  recall  F1      items",
    ]
    lines += [f"{labeller.labels[c]:<{width}}  {p[c]:9.3f}  {r[c]:6.3f}  {f[c]:.3f}  {n[c]:6d}" for c in classes]
    lines += ["", "confusion matrix (rows: true label, columns: predicted, in label order)"]
    lines += [f"{labeller.labels[c]:<{width}}  " + " ".join(f"{v:4d}" for v in cm[c]) for c in classes]
    if confusion_png:
        _confusion_png(cm, labeller.labels, confusion_png)
        lines.append(f"wrote {confusion_png}")
    figures = {"accuracy": acc, "macro_f1": f1, "majority_accuracy": base_acc, "majority_macro_f1": base_f1}
    return Report(figures, lines)


def _confusion_png(cm: np.ndarray, labels, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(5.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    shares = cm / np.maximum(cm.sum(1, keepdims=True), 1)  # each row: where that label's items went
    ConfusionMatrixDisplay(shares, display_labels=list(labels)).plot(
        ax=ax, xticks_rotation="vertical", values_format=".2f", colorbar=False, cmap="Blues"
    )
    ax.set_title("share of each true label's items, by predicted label")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tag_report(labeller, items: LabelledItems, train: LabelledItems) -> Report:
    from sklearn.metrics import accuracy_score, f1_score

    vocab, labels = labeller.vocab, labeller.labels
    texts = texts_of(items, vocab)
    truth = np.concatenate([items.target(k) for k in range(len(items))])
    pred = np.array([labels.index(t) for t in "".join(labeller.tag(texts))])
    acc = accuracy_score(truth, pred)
    lines = [f"characters  {len(truth):,} in {len(items):,} items", f"accuracy    {acc:.4f}"]
    if labeller.task == "truecase":
        up = labels.index(UPPER)
        base = _casing_baseline(texts_of(train, vocab), _tags(train, labels), texts, labels)
        f1, base_f1 = (f1_score(truth, v, pos_label=up, average="binary", zero_division=0) for v in (pred, base))
        base_acc = accuracy_score(truth, base)
        lines = [
            lines[0],
            f"accuracy    {acc:.4f}   (most frequent casing of each word: {base_acc:.4f})",
            f"upper F1    {f1:.4f}   (most frequent casing of each word: {base_f1:.4f})",
        ]
        return Report(
            {"accuracy": acc, "upper_f1": f1, "baseline_accuracy": base_acc, "baseline_upper_f1": base_f1}, lines
        )
    f1 = f1_score(truth, pred, labels=list(range(len(labels))), average="macro", zero_division=0)
    lines.append(f"macro-F1    {f1:.4f}   (over the tags {''.join(labels)!r})")
    return Report({"accuracy": acc, "macro_f1": f1}, lines)


def _tags(items: LabelledItems, labels) -> list[str]:
    return ["".join(labels[i] for i in items.target(k)) for k in range(len(items))]


def _casing_baseline(train_texts, train_tags, texts, labels) -> np.ndarray:
    """Tag ids that write each word as it was most often written in training (unseen
    words, and everything outside words, stay lower case)."""
    seen: dict[str, Counter] = defaultdict(Counter)
    for text, tags in zip(train_texts, train_tags):
        for m in WORD.finditer(text):
            seen[m.group()][tags[m.start() : m.end()]] += 1
    lower = labels.index("l")
    out = []
    for text in texts:
        row = [lower] * len(text)
        for m in WORD.finditer(text):
            if m.group() in seen:
                casing = seen[m.group()].most_common(1)[0][0]
                row[m.start() : m.end()] = [labels.index(t) for t in casing]
        out += row
    return np.array(out, dtype=np.int64)


def generate_report(model, vocab, labels, items: LabelledItems, batch_size: int) -> Report:
    """Nats per character (ends included) of the items under their true label, and under
    the other labels: a model that uses its label scores items lower under the true one."""
    n, C = len(items), len(labels)
    nats = np.zeros((n, C))  # nats[k, c]: item k's total nats written for label c
    as_zero = LabelledItems(items.ids, items.starts, items.ends, np.zeros(n, dtype=np.int64))
    for c, name in enumerate(labels):
        layout = ItemBatches(
            as_zero, batch_size, None, vocab.end_id, scoring=True, rows=NextCharRows(vocab.end_id, vocab.label_id(name))
        )
        for b, index in enumerate(layout.batches):
            nats[index, c] = _row_nats(model, *layout.batch(b))
    chars = items.lengths + 1
    true = nats[np.arange(n), items.targets]
    others = np.where(np.eye(C, dtype=bool)[items.targets], np.inf, nats)
    wins = float((true < others.min(1)).mean())
    per_true = true.sum() / chars.sum()
    per_other = (nats.sum(1) - true).sum() / (chars.sum() * (C - 1))
    lines = [
        f"items       {n:,} ({chars.sum():,} characters, ends included)",
        f"true label  {per_true:.4f} nats/char",
        f"other labels {per_other:.4f} nats/char on average over the {C - 1} others",
        f"ranked      the true label scores lowest for {wins:.1%} of items (chance: {1 / C:.1%})",
    ]
    return Report({"nats_true": per_true, "nats_other": per_other, "true_lowest": wins}, lines)


def _row_nats(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(rows,) summed cross-entropy of each row's targets."""
    import torch

    with torch.no_grad():
        logits, _ = model(torch.from_numpy(x))
        logp = torch.log_softmax(logits.double(), -1).numpy()
    mask = y != IGNORE
    picked = np.take_along_axis(logp, np.where(mask, y, 0)[..., None], -1)[..., 0]
    return -(picked * mask).sum(1)


def eval_labelled(run: str, config, which: str = "best", device: str = "cpu") -> Report:
    """`charrnn eval` on a classify, tag, truecase or generate run (config: an evaluation.EvalConfig)."""
    from charrnn.load import LoadConfig
    from charrnn.predict import Labeller

    config.check()
    if config.dynamic:
        raise CharRNNError("--dynamic adapts a next-char model to the text it reads; drop it for this task")
    model, vocab, meta = LoadConfig(str(run), which, str(device)).load()
    train, items, _, labels = labelled_items(meta, config.data, config.split)
    if len(items) == 0:
        raise CharRNNError(f"the {config.split} split of {config.data} is empty; choose another --split")
    if meta["task"] == "generate":
        return generate_report(model, vocab, labels, items, config.batch_size)
    labeller = Labeller(model, vocab, labels, meta["task"])
    if meta["task"] == "classify":
        return classify_report(labeller, items, train, config.confusion)
    return tag_report(labeller, items, train)
