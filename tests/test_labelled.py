"""Labelled items (data/labelled.py) and their rows in the item layout (data/items.py)."""

from collections import Counter

import numpy as np
import pytest

from charrnn.data.items import ItemBatches, LabelRows, NextCharRows, TagRows
from charrnn.data.labelled import (
    LabelledItems,
    balanced,
    encode_labelled,
    label_names,
    lower_and_case,
    read_labelled,
    stratified_split,
)
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.tasks import IGNORE


def write_folder(tmp_path, classes: dict[str, list[str]]):
    folder = tmp_path / "labels"
    folder.mkdir()
    for label, lines in classes.items():
        (folder / f"{label}.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_a_folder_of_label_files_is_one_item_per_line_labelled_by_file_name(tmp_path):
    folder = write_folder(tmp_path, {"Russian": ["Ivanov", "", "Petrov "], "Scottish": ["MacLeod"]})
    data = read_labelled(str(folder), "classify")
    assert data.texts == ["Ivanov", "Petrov", "MacLeod"]
    assert data.labels == ["Russian", "Russian", "Scottish"]
    assert data.where[1].endswith("Russian.txt:3")
    assert label_names(data, per_char=False) == ("Russian", "Scottish")


def test_tsv_and_csv_tables_with_or_without_a_header(tmp_path):
    (tmp_path / "a.tsv").write_text("text\tlabel\nhello there\tgreeting\nbye now\tfarewell\n")
    (tmp_path / "b.csv").write_text('"hello, there",greeting\nbye,farewell\n')
    a, b = read_labelled(str(tmp_path / "a.tsv"), "classify"), read_labelled(str(tmp_path / "b.csv"), "classify")
    assert a.texts == ["hello there", "bye now"] and a.labels == ["greeting", "farewell"]
    assert b.texts == ["hello, there", "bye"] and b.labels == ["greeting", "farewell"]


@pytest.mark.parametrize(
    "name, content, task, message",
    [
        ("t.tsv", "new york\tBIIOBIII\nparis\tBII\n", "tag", r"t\.tsv:2: the tags \(3 characters\) must be as long"),
        ("t.tsv", "just text\n", "classify", r"t\.tsv:1 has no label column"),
        ("t.csv", "a,\n", "classify", r"t\.csv:1 has an empty text or label"),
    ],
)
def test_bad_tables_name_the_line(tmp_path, name, content, task, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(CharRNNError, match=message):
        read_labelled(str(tmp_path / name), task)


def test_an_empty_class_is_named(tmp_path):
    folder = write_folder(tmp_path, {"A": ["x"], "B": [""]})
    with pytest.raises(CharRNNError, match="the class 'B' is empty"):
        read_labelled(str(folder), "classify")


def test_truecase_tags_each_character_and_keeps_the_strings_aligned(tmp_path):
    low, tags = lower_and_case("The King of İzmir")
    assert low == "the king of İzmir"  # İ lower-cases to two characters: kept, so tags stay aligned
    assert tags == "UlllUlllllllUllll"
    (tmp_path / "t.txt").write_text("Mr. Darcy\n\nAnd Elizabeth\n")
    data = read_labelled(str(tmp_path / "t.txt"), "truecase", "lines")
    assert data.texts == ["mr. darcy", "and elizabeth"] and data.labels == ["UlllUllll", "UlllUllllllll"]


def test_truecase_reads_sentences_with_items_paragraphs(tmp_path):
    (tmp_path / "t.txt").write_text('He left. "Did he?" she\nasked! Yes\n\nNew one.\n')
    assert len(read_labelled(str(tmp_path / "t.txt"), "truecase").texts) == 3  # lines by default
    data = read_labelled(str(tmp_path / "t.txt"), "truecase", "paragraphs")
    assert data.texts == ["he left.", '"did he?"', "she asked!", "yes", "new one."]


def test_stratified_split_keeps_duplicates_on_one_side_and_every_label_on_each():
    rng = np.random.default_rng(0)
    keys = [f"name{rng.integers(0, 300)}" for _ in range(1000)]  # many duplicates
    labels = [int(k[4:]) % 3 for k in keys]
    train, val, test = stratified_split(keys, labels, 0.1, 0.2)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(1000))
    sides = [{keys[i] for i in part} for part in (train, val, test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    for part, share in ((val, 0.1), (test, 0.2)):
        counts = Counter(labels[i] for i in part)
        assert set(counts) == {0, 1, 2}
        groups = Counter(labels[i] for i in {keys[i]: i for i in range(1000)}.values())
        for label in counts:  # each label's distinct items are cut by the fraction
            assert abs(len({keys[i] for i in part if labels[i] == label}) - groups[label] * share) <= 1


def test_tag_items_are_held_out_by_position(tmp_path):
    (tmp_path / "t.txt").write_text("".join(f"Line {i}\n" for i in range(20)))
    data = read_labelled(str(tmp_path / "t.txt"), "truecase", "lines")
    items = encode_labelled(data, Vocab.from_chars("".join(data.texts)), ("U", "l"), per_char=True)
    train, val, test = items.split(0.1, 0.1)
    assert (len(train), len(val), len(test)) == (16, 2, 2)
    assert train.starts.max() < val.starts.min() < test.starts.min()


def rows_of(items, rows, vocab, seq_len=None):
    layout = ItemBatches(items, 2, seq_len, vocab.end_id, scoring=True, rows=rows)
    return layout, [layout.batch(b) for b in range(len(layout.batches))]


def test_rows_put_the_label_at_the_end_tags_everywhere_and_a_label_symbol_first(tmp_path):
    folder = write_folder(tmp_path, {"A": ["ab", "abc"], "B": ["c"]})
    data = read_labelled(str(folder), "classify")
    labels = label_names(data, False)
    vocab = Vocab.from_chars("abc")
    items = encode_labelled(data, vocab, labels, per_char=False)
    _, [(x0, y0), (x1, y1)] = rows_of(items, LabelRows(), vocab)
    # batches by length: ("c", "ab"), then ("abc",)
    np.testing.assert_array_equal(x0, [[2, 0], [0, 1]])
    np.testing.assert_array_equal(y0, [[1, IGNORE], [IGNORE, 0]])
    np.testing.assert_array_equal(y1, [[IGNORE, IGNORE, 0]])
    _, [_, (_, y1)] = rows_of(items, LabelRows(both_ends=True), vocab)
    np.testing.assert_array_equal(y1, [[0, IGNORE, 0]])  # a bidirectional classifier answers at both ends
    gen = vocab.with_labels(labels)
    _, [(x0, y0), _] = rows_of(items, NextCharRows(gen.end_id, gen.label_id("A")), gen)
    np.testing.assert_array_equal(x0, [[gen.label_id("B"), 2, gen.end_id], [gen.label_id("A"), 0, 1]])
    np.testing.assert_array_equal(y0, [[2, gen.end_id, IGNORE], [0, 1, gen.end_id]])
    assert gen.decode(x0[1]) == "ab"  # label symbols, like the end symbol, write nothing
    tags = encode_labelled(read_labelled_tags(tmp_path), vocab, ("B", "I", "O"), per_char=True)
    _, [(x, y)] = rows_of(tags, TagRows(), vocab)
    np.testing.assert_array_equal(y, [[0, 2, IGNORE], [0, 1, 2]])  # by length: "ab" first


def read_labelled_tags(tmp_path):
    (tmp_path / "t.tsv").write_text("abc\tBIO\nab\tBO\n")
    return read_labelled(str(tmp_path / "t.tsv"), "tag")


def test_an_unknown_label_lists_the_known_ones():
    vocab = Vocab.from_chars("ab").with_labels(("Dutch", "Greek"))
    with pytest.raises(CharRNNError, match="unknown label 'Klingon'; the labels this model knows: Dutch, Greek"):
        vocab.label_id("Klingon")
    assert Vocab.from_json(vocab.to_json()) == vocab and vocab.size == 2 + 1 + 2


def test_balance_repeats_the_rarer_labels_items():
    targets = np.array([0] * 100 + [1] * 25 + [2] * 4)
    items = LabelledItems(np.arange(129), np.arange(129), np.arange(1, 130), targets)
    assert balanced(items, 0.0) is items
    counts = np.bincount(balanced(items, 1.0).targets)
    assert counts.tolist() == [100, 100, 100]
    half = balanced(items, 0.5)
    assert np.bincount(half.targets).tolist() == [100, 50, 20]  # n * round(sqrt(100 / n))
    assert set(half.starts.tolist()) == set(range(129))  # repeats, nothing new
