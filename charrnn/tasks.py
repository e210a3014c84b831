"""Tasks: what a model learns, as a head plus a layout (docs/architecture.md).

Every task trains the same recurrent body (engines/) with the same loss: the
cross-entropy of the head's logits against targets y of shape (rows, T), where a
position with nothing to predict holds IGNORE (PyTorch's ignore_index). What a task
chooses is

    head      how many logits: V next characters, C labels or K tags (ModelConfig.head_size)
    layout    how ids (and labels) become (x, y) chunks, and where the hidden state
              starts from zeros (data/layout.py: streams, the state carried;
              data/items.py: items, each from zeros)

The article's sequence modes, and the task that does each:

    task       mode                  layout                    head   targets y
    next-char  many to many          streams, state carried    V      the next character, everywhere
    classify   many to one           items, one per row        C      the label at the item's last character
    tag        synced many to many   items, one per row        K      a tag at every character
    truecase   synced many to many   items (lines), lower-case 2      upper or not, at every character
    generate   one to many           items after a label       V      the next character, given the label

next-char reads streams, or items with --items. The labelled tasks read labelled
items (data/labelled.py) and record their label set in checkpoint.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.errors import CharRNNError

IGNORE = -100  # a target that is not scored (torch.nn.functional.cross_entropy's default ignore_index)


@dataclass(frozen=True)
class Task:
    name: str  # as written in checkpoint.json's "task" and given to --task
    mode: str  # the article's name for it
    labelled: bool = False  # reads labelled items (data/labelled.py) rather than plain text
    generates: bool = True  # its head predicts characters, so sample, export and the stepper apply
    command: str = "sample"  # the command that applies the model to a text


NEXT_CHAR = Task("next-char", "many to many")
CLASSIFY = Task("classify", "many to one", labelled=True, generates=False, command="classify")
TAG = Task("tag", "synced many to many", labelled=True, generates=False, command="tag")
TRUECASE = Task("truecase", "synced many to many", labelled=True, generates=False, command="tag")
GENERATE = Task("generate", "one to many", labelled=True)
TASKS = {t.name: t for t in (NEXT_CHAR, CLASSIFY, TAG, TRUECASE, GENERATE)}
TASK_NAMES = tuple(TASKS)


def get_task(name: str | None) -> Task:
    """The task a checkpoint or config names (None: next-char, as every checkpoint before tasks)."""
    if name is None:
        return NEXT_CHAR
    if name not in TASKS:
        raise CharRNNError(
            f"unknown task {name!r}: this charrnn knows {', '.join(TASKS)}; upgrade charrnn to use this model"
        )
    return TASKS[name]


def require(meta: dict, command: str, tasks: tuple[str, ...]) -> Task:
    """The task of a loaded run (meta: its checkpoint.json), refused in one line when
    `command` does not apply to it (tasks: the ones it applies to)."""
    task = get_task(meta.get("task"))
    if task.name not in tasks:
        raise CharRNNError(
            f"this is a {task.name} model ({task.mode}): `charrnn {command}` does not apply to it; "
            f"use `charrnn {task.command}`"
        )
    return task


GENERATING = tuple(t.name for t in TASKS.values() if t.generates)  # models whose head writes characters
