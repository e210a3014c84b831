"""Tasks: what a model learns, as a head plus a layout (docs/architecture.md).

Every task trains the same recurrent body (engines/) with the same loss: the
cross-entropy of the head's logits against targets y of shape (rows, T), where a
position with nothing to predict holds IGNORE (PyTorch's ignore_index). What a task
chooses is

    head_size      how many logits the head has: V next characters, C labels, K tags
    layout         how ids (and labels) become (x, y) chunks, and where the hidden
                   state starts from zeros (data/layout.py: streams, the state carried;
                   data/items.py: items, each from zeros)

The article's sequence modes, and the task that does each:

    task           mode                  layout                    head   targets y
    next-char      many to many          streams, state carried    V      the next character, everywhere
    classify       many to one           items, one per row        C      the label at the item's last character
    tag            synced many to many   items, one per row        K      a tag at every character
    generate       one to many           items + a label input     V      the next character, given the label

next-char reads streams, or items with --items. The labelled tasks plug in here,
with the item layout (data/items.py) carrying their labels and a label vocabulary
recorded in checkpoint.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.errors import CharRNNError

IGNORE = -100  # a target that is not scored (torch.nn.functional.cross_entropy's default ignore_index)


@dataclass(frozen=True)
class Task:
    name: str  # as written in checkpoint.json's "task"
    mode: str  # the article's name for it


NEXT_CHAR = Task("next-char", "many to many")
TASKS = {t.name: t for t in (NEXT_CHAR,)}


def get_task(name: str | None) -> Task:
    """The task a checkpoint or config names (None: next-char, as every checkpoint before tasks)."""
    if name is None:
        return NEXT_CHAR
    if name not in TASKS:
        raise CharRNNError(
            f"unknown task {name!r}: this charrnn knows {', '.join(TASKS)}; upgrade charrnn to use this model"
        )
    return TASKS[name]
