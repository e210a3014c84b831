"""Text in, ids out: the vocabulary (vocab.py), the encoded and cached corpus
(corpus.py), and the layouts that cut ids into batches (layout.py)."""
