"""DeepMoji as its users use it: emoji for texts, sentence features, batch scoring of files, and
`parity deepmoji` (cli.py, registered by parity.cli).

emoji.py     DeepMoji's 64 emoji, ``emojize``, ``encode_texts`` (sentence features), ``top_k``
scoring.py   ``score_file``: a .txt/.jsonl/.csv file -> top-k emoji (and features), streamed
pipeline.py  DeepMoji's text specifics (post-padding, batch size) over parity.inference

Texts are encoded exactly as DeepMoji's ``SentenceTokenizer`` does (``parity.text.encode``,
post-padded and post-truncated); the text length is the model's own when its file fixes one,
else ``maxlen`` when given, else parity.inference.DEFAULT_TEXT_LENGTH.
"""

from parity.apps.deepmoji.emoji import (
    DEFAULT_TOP_K,
    EMOJIS,
    emojize,
    encode_texts,
    load_emojis,
    predict,
    top_k,
)
from parity.apps.deepmoji.pipeline import DEFAULT_BATCH_SIZE
from parity.apps.deepmoji.scoring import INPUT_FORMATS, OUTPUT_FORMATS, read_texts, score_file
from parity.train.embedding import extend_embedding

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TOP_K",
    "EMOJIS",
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "emojize",
    "encode_texts",
    "extend_embedding",
    "load_emojis",
    "predict",
    "read_texts",
    "score_file",
    "top_k",
]
