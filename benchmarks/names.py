"""The names benchmark of "Beyond generation": classify surnames by language, and
generate surnames for a language, on ../shared/data/names (18 labelled files,
14,166 lines, 11,623 distinct names).

One split for everything: charrnn's own (data/labelled.py), stratified by label,
every distinct name on one side only (duplicates never straddle train and test),
10% validation, 10% test. On it, side by side:

    majority class                         the most frequent training label
    char n-gram logistic regression        scikit-learn: TF-IDF over 1-4 character
                                           n-grams, LogisticRegression (the issue's baseline)
    charrnn classify                       --task classify, the flags below

and for generation: the conditional model's nats per character under the true
label against the other labels, and the share of its samples for each label that
the classifier assigns to that label (chance: 1/18).

    python benchmarks/names.py                      # about 6 minutes on 2 cores
    python benchmarks/names.py --budget 60          # a quick look
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from machine import cpu_name  # benchmarks/machine.py

from charrnn.data.corpus import DataConfig
from charrnn.engines.config import ModelConfig
from charrnn.evaluation import EvalConfig
from charrnn.labelled_eval import classify_report, eval_labelled, labelled_items, texts_of
from charrnn.load import LoadConfig, load_model
from charrnn.predict import Labeller
from charrnn.sampling.generate import SampleConfig, sample
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train

NAMES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "names"


def sklearn_baseline(train, val, test) -> tuple[float, float, float]:
    """(test accuracy, test macro-F1, C): TF-IDF over 1-4 character n-grams and logistic
    regression, its inverse regularisation C picked by validation macro-F1."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 4), lowercase=False)
    X = vec.fit_transform(train[0])
    fits = {C: LogisticRegression(C=C, max_iter=3000).fit(X, train[1]) for C in (1, 3, 10, 30, 100)}
    best = max(fits, key=lambda C: f1_score(val[1], fits[C].predict(vec.transform(val[0])), average="macro"))
    pred = fits[best].predict(vec.transform(test[0]))
    return accuracy_score(test[1], pred), f1_score(test[1], pred, average="macro"), best


def config(out: Path, task: str, args, **model) -> TrainConfig:
    m = ModelConfig(
        cell=args.cell,
        layers=args.layers,
        hidden_size=args.hidden_size,
        embedding_size=args.embedding_size,
        dropout=args.dropout,
        **model,
    )
    data = DataConfig(data=str(args.data), val_fraction=0.1, test_fraction=0.1)
    return TrainConfig(
        out=str(out),
        task=task,
        data=data,
        model=m,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        max_time=args.budget,
        max_epochs=0,
        eval_every=args.eval_every,
        lr_schedule="cosine",
        quiet=True,
        threads=args.threads,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=NAMES)
    p.add_argument("--out", type=Path, default=Path("runs/bench-names"))
    p.add_argument("--budget", type=float, default=120, help="seconds of training for each model")
    p.add_argument("--cell", default="lstm")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--embedding-size", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--balance", type=float, default=0.3, help="charrnn train --balance, for the classifier")
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--samples", type=int, default=50, help="samples per label for the generation check")
    p.add_argument("--skip-generate", action="store_true")
    args = p.parse_args()
    import shutil

    shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.time()
    cls_run = args.out / "classify"
    train(replace(config(cls_run, "classify", args), balance=args.balance))
    seconds = time.time() - t0
    _, _, meta = load_model(cls_run)
    tr, test, vocab, labels = labelled_items(meta, str(args.data), "test")
    val = labelled_items(meta, str(args.data), "val")[1]
    labeller = Labeller.load(LoadConfig(str(cls_run)), "classify", ("classify",))
    report = classify_report(labeller, test, tr, str(args.out / "confusion.png"))
    acc_lr, f1_lr, C = sklearn_baseline(*((texts_of(d, vocab), d.targets) for d in (tr, val, test)))
    f = report.figures
    print(f"# names: {len(tr):,} training, {len(test):,} test items; {len(labels)} labels")
    print(f"# CPU: {cpu_name()} ({platform.machine()}); charrnn trained {seconds:.0f} s\n")
    print("| model | test accuracy | test macro-F1 |")
    print("|---|---:|---:|")
    print(f"| majority class | {f['majority_accuracy']:.3f} | {f['majority_macro_f1']:.3f} |")
    print(
        f"| char 1-4-gram TF-IDF + logistic regression, C={C} by validation (scikit-learn) "
        f"| {acc_lr:.3f} | {f1_lr:.3f} |"
    )
    print(
        f"| charrnn classify ({args.layers}x{args.hidden_size} {args.cell}, --balance {args.balance}, "
        f"{args.optimizer} weight decay {args.weight_decay}) | {f['accuracy']:.3f} | "
        f"{f['macro_f1']:.3f} |"
    )
    if args.skip_generate:
        return
    gen_run = args.out / "generate"
    train(config(gen_run, "generate", args))
    g = eval_labelled(gen_run, EvalConfig(data=str(args.data), split="test")).figures
    model, gvocab, _ = load_model(gen_run)
    print(
        f"\n# generate: test items {g['nats_true']:.4f} nats/char under their true label, "
        f"{g['nats_other']:.4f} under the others; the true label ranks first for {g['true_lowest']:.1%}"
    )
    print("\n| label | samples the classifier assigns to it |")
    print("|---|---:|")
    rates = []
    for k, label in enumerate(labels):
        texts = sample(model, gvocab, SampleConfig(label=label, num_samples=args.samples, seed=k, length=40))
        hit = float((labeller.classify(texts).argmax(-1) == k).mean())
        rates.append(hit)
        print(f"| {label} | {hit:.0%} |")
    print(f"| mean | {np.mean(rates):.0%} (chance {1 / len(labels):.0%}) |")


if __name__ == "__main__":
    main()
