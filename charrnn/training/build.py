"""Make a Trainer's parts from a TrainConfig: data, engine, process group, resume.

    config -> corpus (vocabulary: the corpus's own, or the run's on --resume)
           -> split -> training layout (data/layout.py) + validation ids
           -> engine: PyTorch (device, DDP under torchrun, optimizer) or the NumPy reference
           -> Trainer(config, Parts(...), RunState) ready to run

The caller's config is not changed: the trainer gets a copy whose model config
holds the vocabulary size.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from charrnn import checkpoint as ckpt
from charrnn.data.corpus import load_corpus
from charrnn.data.items import ItemBatches, LabelRows, NextCharRows, TagRows, cut_items, newline_id
from charrnn.data.labelled import balanced, encode_labelled, label_names, read_labelled
from charrnn.data.layout import Streams
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.load import check_device
from charrnn.tasks import get_task
from charrnn.training.config import TrainConfig, limits_used
from charrnn.training.init_from import added, fine_tuning_config, grow_vocab, grow_weights, load_source
from charrnn.training.parts import Parts, RunState, Solo
from charrnn.training.trainer import Trainer


def accept(config: TrainConfig, resume: bool = False) -> TrainConfig:
    """The config a run trains with (with_tied_embedding: E = H for --tie-weights), refused at once
    if it cannot train: its flags, and what its engine lacks. The CLI, train() and build_trainer() ask."""
    config = config.with_tied_embedding()
    config.check()
    if config.model.cutoffs and not get_task(config.task).generates:
        raise CharRNNError(f"--cutoffs is a head over characters; --task {config.task} predicts labels: drop it")
    if config.engine == "reference":
        check_reference(config, resume)
    return config


def build_trainer(config: TrainConfig, resume: bool = False, folder=None) -> tuple[Trainer, object]:
    """A Trainer for `config` (continuing the run in config.out if `resume`), and its process group.
    folder: the run_folder.RunFolder that train() opened (locked), if any."""
    config = accept(config, resume)
    out = Path(config.out)
    if not resume and ckpt.has_checkpoint(out):
        raise CharRNNError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    torch_parts = _torch_setup(config) if config.engine == "torch" else None  # threads and ranks before the data
    said: list[str] = []  # the precision's line, printed once the config has passed every check below
    if torch_parts is not None:  # before the settings rule, which measures this machine's speed in this precision
        from charrnn.engines.precision import pick_precision

        config = replace(config, precision=pick_precision(config.precision, torch_parts[0], say=said.append))
    saved = ckpt.read_meta(ckpt.resolve(out, "last")) if resume else None
    source = load_source(config.init_from) if config.init_from and not resume else None
    task, labels = get_task(config.task), ()
    if source is not None:  # fine-tuning: the run's model and vocabulary, grown by the new text's characters
        config = fine_tuning_config(config, source)
        grown = grow_vocab(source.vocab, load_corpus(config.data).vocab, end=bool(config.data.items))
        corpus = load_corpus(config.data, grown.with_end(False))
        vocab, batches, val = _layout(config, corpus)
    elif task.labelled:
        vocab, batches, val, labels = _labelled_layout(config, saved)
    else:
        corpus = load_corpus(config.data, Vocab.from_json(saved["vocab"]).with_end(False) if saved else None)
        if not saved and torch_parts is not None:  # settings that fit the corpus, the budget and this machine
            config = _fit_settings(config, corpus, *torch_parts[:2])
        vocab, batches, val = _layout(config, corpus)
    head = 0 if task.generates else len(labels)  # a classifier's C labels, a tagger's K tags; else V characters
    config = replace(config, model=replace(config.model, vocab_size=vocab.size, head_size=head))
    if torch_parts is not None:
        engine, group = _torch_engine(config, *torch_parts), torch_parts[1]
        if config.model.cutoffs:  # the adaptive head's clusters follow the training split (resume: as saved)
            from charrnn.engines.model import frequency_rank

            engine.model.set_rank(frequency_rank(target_counts(batches, vocab.size)))
    else:
        engine, group = _reference_engine(config), Solo()
    parts = Parts(engine, batches, val, vocab, config.model.to_json(), group, task, labels)
    trainer = Trainer(config, parts, folder=folder)
    if source is not None:
        engine.load_weights(grow_weights(source.weights, source.vocab, vocab, config.model.tie_weights, config.seed))
        new = added(source.vocab, vocab)
        print(
            f"Fine-tuning {config.init_from} (step {source.step}): "
            + (f"{len(new)} new character(s) {new!r} added to the vocabulary" if new else "no new characters"),
            file=sys.stderr,
        )
    if resume:
        folder = ckpt.resolve(out, "last")
        state = ckpt.load_trainer_state(folder)
        try:
            engine.load_weights(ckpt.load_weights(folder, numpy=True))
        except (RuntimeError, ValueError, KeyError) as e:  # shapes or names that do not fit its own config
            raise CharRNNError(
                f"{folder / ckpt.WEIGHTS} does not fit the model its checkpoint.json describes "
                f"({type(e).__name__}); the run cannot be resumed: start a new --out"
            ) from None
        trainer.run_state = RunState.from_dict(state)
        trainer.hidden = engine.load_state_dict(state, config.batch_size, config.seed, trainer.step)
        if trainer.budget_used() >= 1.0:  # it would stop before its first step: say which limit to raise
            raise CharRNNError(f"{out} already reached {_spent(config, trainer)}; raise it (0: no limit) to train on")
    if group.is_main:
        for line in said:
            print(line, file=sys.stderr)
    return trainer, group


def _spent(config: TrainConfig, trainer: Trainer) -> str:
    """The limits a run has reached, as the flags that set them: '--max-time 30'."""
    used = limits_used(config, trainer.step, trainer.run_state.elapsed, trainer.batches.num_chunks)
    return " and ".join(f"--{k.replace('_', '-')} {getattr(config, k):g}" for k, u in used.items() if u >= 1.0)


def _fit_settings(config: TrainConfig, corpus, device, dist) -> TrainConfig:
    """--settings auto (training/settings.py), printed by the rank that writes the run."""
    import numpy as np

    from charrnn.training.settings import adapt

    d = config.data
    train_ids = corpus.split(d.val_fraction, d.test_fraction)[0]
    counts = np.bincount(train_ids, minlength=corpus.vocab.size + bool(d.items))  # items: + their end symbol
    newline = newline_id(corpus.vocab)
    lines = int(counts[newline]) if newline is not None else 0
    # --items: batches hold whole items, so their number bounds the batch (_layout splits them the same way)
    cut = cut_items(corpus.ids, newline, d.items, corpus.file_ids) if d.items else None
    items = len(cut.split(d.val_fraction, d.test_fraction)[0]) if cut is not None else 0
    log = (lambda line: print(line, file=sys.stderr)) if dist.is_main else (lambda line: None)
    return adapt(config, counts, device, dist, log, lines, items)


def _layout(config: TrainConfig, corpus):
    """(vocabulary, training layout, validation split) of one long text, or of items."""
    d = config.data
    if not d.items:
        train_ids, val_ids, _ = corpus.split(d.val_fraction, d.test_fraction)
        return corpus.vocab, Streams.for_training(train_ids, config.batch_size, config.seq_len), val_ids
    vocab = corpus.vocab.with_end()  # the end of an item is one more symbol to learn
    items = cut_items(corpus.ids, newline_id(corpus.vocab), d.items, corpus.file_ids)
    train_items, val_items, _ = items.split(d.val_fraction, d.test_fraction)
    B, T, end = config.batch_size, config.seq_len, vocab.end_id
    return vocab, ItemBatches(train_items, B, T, end, config.seed), ItemBatches(val_items, B, T, end, scoring=True)


def target_counts(batches, V: int) -> np.ndarray:
    """(V,) how often each id is a target of the training split: its text, and for items the
    end symbol once per item (label symbols of --task generate are never targets)."""
    if isinstance(batches, Streams):
        return np.bincount(np.asarray(batches.ids), minlength=V)
    items = batches.items
    cover = np.zeros(len(items.ids) + 1, np.int64)  # +1 at each start, -1 at each end: cumsum = inside an item
    np.add.at(cover, items.starts, 1)
    np.add.at(cover, items.ends, -1)
    counts = np.bincount(np.asarray(items.ids), weights=np.cumsum(cover)[:-1], minlength=V)
    counts[batches.end_id] += len(items)
    return counts


def labelled_split(config: TrainConfig, saved: dict | None = None):
    """(vocabulary, label set, LabelledItems, rows, T) of a labelled task's data
    (data/labelled.py). saved: the run's checkpoint.json, whose vocabulary and labels
    are kept (resume, eval)."""
    task, d = config.task, config.data
    per_char = task in ("tag", "truecase")
    data = read_labelled(d.data, task, d.items)
    if saved:
        vocab, labels = Vocab.from_json(saved["vocab"]), tuple(saved["labels"])
    else:
        labels, vocab = label_names(data, per_char), Vocab.from_chars("".join(data.texts))
        if len(labels) < 2:
            raise CharRNNError(f"--task {task} needs at least two different labels; {d.data} has only {labels}")
        vocab = vocab.with_labels(labels) if task == "generate" else vocab
    items = encode_labelled(data, vocab, labels, per_char)
    if task == "generate":
        rows, T = NextCharRows(vocab.end_id, vocab.label_id(labels[0])), config.seq_len
    elif task == "classify":  # whole items: the label is at the end, and the gradient must reach the start
        rows, T = LabelRows(both_ends=config.model.bidirectional), None
    else:  # a bidirectional tagger reads each item whole, both ways
        rows, T = TagRows(), None if config.model.bidirectional else config.seq_len
    return vocab, labels, items, rows, T


def _labelled_layout(config: TrainConfig, saved: dict | None):
    vocab, labels, items, rows, T = labelled_split(config, saved)
    train, val, _ = items.split(config.data.val_fraction, config.data.test_fraction)
    train = balanced(train, config.balance)  # validation stays as it is: the loss is comparable across runs
    B, end = config.batch_size, vocab.end_id
    batches = ItemBatches(train, B, T, end, config.seed, rows=rows)
    return vocab, batches, ItemBatches(val, B, T, end, scoring=True, what="validation", rows=rows), labels


# -- the PyTorch engine ----------------------------------------------------------------


def _torch_setup(config: TrainConfig):
    """(device, process group, AdaptiveThreads or None): this process's rank under torchrun, or one plain process."""
    from charrnn.engines.threads import auto_threads
    from charrnn.training.distributed import Dist, launched

    if config.nproc and not launched():
        raise CharRNNError(
            "--nproc starts torchrun from the command line (charrnn train --nproc N); "
            "from Python, run your script under torchrun instead"
        )
    dist = Dist.from_env(config.device, config.dist_timeout)
    device = dist.device or pick_device(config.device)
    return device, dist, auto_threads(config.threads, device.type)


def _torch_engine(config: TrainConfig, device, dist, threads=None):
    import torch

    from charrnn.engines.model import CharRNN
    from charrnn.engines.torch_engine import TorchEngine

    torch.manual_seed(config.seed)
    model = CharRNN(config.model).to(device)
    # DDP broadcasts rank 0's weights here
    engine = TorchEngine(model, device, None, config.grad_clip, dist, threads, config.precision)
    dist.seed_rank(config.seed)
    engine.optimizer = make_optimizer(config, model.parameters())
    return engine


def pick_device(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    check_device(name)
    return torch.device(name)


def make_optimizer(config: TrainConfig, params):
    import torch

    lr, wd = config.lr, config.weight_decay
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if config.optimizer == "rmsprop":  # char-rnn's optimizer, with its decay rate 0.95
        return torch.optim.RMSprop(params, lr=lr, alpha=0.95, weight_decay=wd)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)


# -- the NumPy reference engine ----------------------------------------------------------


def check_reference(config: TrainConfig, resume: bool) -> None:
    """Reject, at once, what the reference engine does not do."""
    from charrnn.reference.model import refuse_extras
    from charrnn.reference.optim import OPTIMIZERS

    if resume:
        raise CharRNNError("--engine reference cannot --resume a run; start a new --out")
    if config.optimizer not in OPTIMIZERS:
        choices = ", ".join(OPTIMIZERS)
        raise CharRNNError(f"--engine reference has no --optimizer {config.optimizer}: choose one of {choices}")
    if config.device not in ("auto", "cpu"):
        raise CharRNNError(f"--engine reference runs on the CPU with NumPy: drop --device {config.device}")
    if config.nproc:
        raise CharRNNError("--engine reference runs in one process: drop --nproc")
    if config.precision == "bf16":
        raise CharRNNError("--engine reference computes in float64 with NumPy: drop --precision bf16")
    if config.model.cutoffs:
        raise CharRNNError("--engine reference has the article's full softmax: drop --cutoffs, or use --engine torch")
    refuse_extras(config.model)


def _reference_engine(config: TrainConfig):
    from charrnn.reference.engine import ReferenceEngine
    from charrnn.reference.model import CharRNN
    from charrnn.reference.optim import make_optimizer as make_numpy_optimizer

    model = CharRNN(config.model, rng=config.seed)
    optimizer = make_numpy_optimizer(config.optimizer, config.lr, config.momentum, config.weight_decay)
    return ReferenceEngine(model, optimizer, config.grad_clip)
