import numpy as np
import pytest

from charrnn.data.layout import Streams, shard_rows
from charrnn.errors import CharRNNError


def test_too_short_for_one_batch():
    ids = np.arange(100) % 7
    with pytest.raises(CharRNNError, match=r"too few for one batch.*--batch-size"):
        Streams.for_training(ids, batch_size=8, seq_len=16)


def test_training_chunks_follow_the_drawn_layout():
    ids = np.arange(1000)
    B, T = 4, 10
    sb = Streams.for_training(ids, B, T)
    S = (1000 - 1) // B  # stream length
    assert sb.num_chunks == S // T
    streams = [ids[b * S : (b + 1) * S + 1] for b in range(B)]  # naive reference
    for i in range(sb.num_chunks):
        x, y = sb.chunk(i)
        for b in range(B):
            assert x[b].tolist() == streams[b][i * T : (i + 1) * T].tolist()
            assert y[b].tolist() == streams[b][i * T + 1 : (i + 1) * T + 1].tolist()
    x, _ = sb.chunk(3, (1, 3))
    assert x.tolist() == sb.chunk(3)[0][1:3].tolist()


@pytest.mark.parametrize("n", [2, 17, 393, 400, 401])
def test_scoring_reads_every_character_once_in_order(n):
    """Concatenating each stream's targets (all chunks), then the tail, gives ids[1:] exactly."""
    ids = np.arange(n) * 7 % 1000
    st = Streams.for_scoring(ids, batch_size=8, seq_len=16)
    rows = [[] for _ in range(st.B)]
    for i in range(st.scoring_chunks()):
        x, y = st.chunk(i)
        assert np.array_equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
        for b in range(st.B):
            rows[b] += y[b].tolist()
    _, tail = st.tail()
    seen = [t for row in rows for t in row] + tail[0].tolist()
    assert seen == ids[1:].tolist()
    assert st.B * st.stream_len + st.rest == n - 1


def test_shards_cover_the_rows_without_overlap():
    for B in (1, 5, 8):
        for K in (1, 2, 3, 7):
            parts = [shard_rows(B, (k, K)) for k in range(K)]
            covered = [r for a, b in parts for r in range(a, b)]
            assert covered == list(range(B))
