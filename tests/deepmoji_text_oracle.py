# -*- coding: utf-8 -*-
# ruff: noqa: UP009, UP010, UP020, B905  (Python 2 code: io.open, print_function on purpose)
"""Dev-time oracle: DeepMoji's own text pipeline, run under Python 2.7, writes the golden ids.

Not part of the product and not run by the test suite: it runs DeepMoji's original code
(github.com/bfelbo/DeepMoji, deepmoji/{tokenizer,filter_utils,word_generator,
sentence_tokenizer,create_vocab}.py) unmodified, under the interpreter and library versions
DeepMoji pinned (Python 2.7, text-unidecode==1.0, emoji==0.4.5, numpy), on the eight benchmark
datasets, and stores what it computed in tests/golden/deepmoji-text-ids.npz, which
tests/test_text_deepmoji.py compares ``parity.text`` against.

Why Python 2 and not a Python 3 adaptation: DeepMoji's vocabulary and every id its models were
trained on came from Python 2, whose ``re`` applies an inline ``(?i)`` anywhere in a pattern
to the whole pattern, whose ``unicode.lower`` uses simple (1:1) case mappings, and whose
Unicode tables are version 5.2. Running the original code is the only way to be sure of all
of that at once. The interpreter here is a wide (UCS-4) build, as Linux's Python 2.7 was.

Setup (a few minutes, once):

    pyenv install 2.7.18    # or any Python 2.7
    python2.7 -m pip install --target /tmp/py2oracle "text-unidecode==1.0" "emoji==0.4.5" \
        "numpy==1.16.6"
    git clone https://github.com/bfelbo/DeepMoji /tmp/DeepMoji   # the deepmoji/ folder is used

Run from the repository root:

    PYTHONPATH=/tmp/py2oracle python2.7 tests/deepmoji_text_oracle.py /tmp/DeepMoji \
        ../shared/data/deepmoji_benchmarks tests/golden/deepmoji-text-ids.npz

The npz holds, for the datasets in DATASETS order and each dataset's records in file order:
``ids`` (uint16, every sentence's full id list, concatenated: no truncation, no padding),
``offsets`` (int64, n_sentences + 1), ``dataset_index`` (uint8 per sentence), ``maxlen``
(DeepMoji's ``calculate_batchsize_maxlen`` per dataset: the 80th percentile of raw token
counts, rounded up to ten), ``datasets``; and for the vocabulary extension DeepMoji's
``split_train_val_test(..., extend_with=10000)`` does on the training split: ``ext_words``
(the added words in id order, utf-8, newline-joined per dataset), ``ext_counts`` (their
training-split counts, concatenated) and ``ext_offsets``.
"""

from __future__ import print_function

import io
import json
import os
import sys
import types

DATASETS = (
    "SS-Youtube",
    "SS-Twitter",
    "SE0714",
    "Olympic",
    "PsychExp",
    "SCv1",
    "SCv2-GEN",
    "kaggle-insults",
)
#: DeepMoji's scripts/finetune_dataset.py extends the vocabulary by this many words for the
#: 'new', 'full' and 'chain-thaw' methods.
EXTEND_WITH = 10000


def main(argv):
    deepmoji_root, data_dir, out_path = argv[1:4]
    sys.path.insert(0, os.path.join(deepmoji_root, "deepmoji"))
    # sentence_tokenizer imports sklearn for a random split this script never uses.
    sklearn = types.ModuleType("sklearn")
    model_selection = types.ModuleType("sklearn.model_selection")
    model_selection.train_test_split = None
    sys.modules["sklearn"] = sklearn
    sys.modules["sklearn.model_selection"] = model_selection

    import numpy as np
    from create_vocab import VocabBuilder, extend_vocab
    from sentence_tokenizer import SentenceTokenizer
    from tokenizer import tokenize
    from word_generator import WordGenerator

    assert sys.maxunicode > 0xFFFF, "use a wide (UCS-4) Python 2 build, as Linux's was"
    with io.open(os.path.join(data_dir, "vocabulary.json"), encoding="utf-8") as f:
        vocab = json.load(f)

    ids, offsets, dataset_index, maxlens = [], [0], [], []
    ext_words, ext_counts, ext_offsets = [], [], [0]
    for d, name in enumerate(DATASETS):
        with io.open(os.path.join(data_dir, name + ".jsonl"), encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        texts = [r["text"] for r in records]
        # finetuning.calculate_batchsize_maxlen, which imports keras: the same two lines.
        lengths = [len(tokenize(t)) for t in texts]
        maxlen = int(np.ceil(np.percentile(lengths, 80.0) / 10.0)) * 10
        maxlens.append(maxlen)

        st = SentenceTokenizer(vocab, maxlen)
        per_sentence = []
        for text in texts:
            words = st.wordgen.get_words(text)
            per_sentence.append(st.find_tokens(words) if words else [])
        for sentence_ids in per_sentence:
            ids.extend(sentence_ids)
            offsets.append(len(ids))
            dataset_index.append(d)
        # Cross-check against the batch path DeepMoji's fine-tuning used (post-truncated,
        # post-padded, uint16) wherever every sentence has a token (else it asserts).
        if all(per_sentence):
            batch = st.tokenize_sentences(texts)[0]
            for row, sentence_ids in zip(batch, per_sentence):
                kept = sentence_ids[:maxlen]
                assert list(row[: len(kept)]) == kept and not row[len(kept) :].any(), name
        else:
            print(name, "has sentences without tokens: batch cross-check skipped")

        # split_train_val_test(..., extend_with=EXTEND_WITH): count the training split with a
        # default WordGenerator, extend a copy of the vocabulary.
        train = np.array([t for t, r in zip(texts, records) if r["split"] == "train"])
        builder = VocabBuilder(WordGenerator(train))
        builder.count_all_words()
        extended = dict(vocab)
        added = extend_vocab(extended, builder, max_tokens=EXTEND_WITH)
        new = sorted((i, w) for w, i in extended.items() if w not in vocab)
        assert len(new) == added
        ext_words.append("\n".join(w for _, w in new).encode("utf-8"))
        ext_counts.extend(builder.word_counts[w] for _, w in new)
        ext_offsets.append(len(ext_counts))
        print(name, len(texts), "sentences, maxlen", maxlen, "added", added)

    np.savez_compressed(
        out_path,
        ids=np.array(ids, dtype=np.uint16),
        offsets=np.array(offsets, dtype=np.int64),
        dataset_index=np.array(dataset_index, dtype=np.uint8),
        maxlen=np.array(maxlens, dtype=np.int64),
        datasets=np.array([n.encode("ascii") for n in DATASETS]),
        ext_words=np.array(ext_words),
        ext_counts=np.array(ext_counts, dtype=np.int64),
        ext_offsets=np.array(ext_offsets, dtype=np.int64),
        python=np.array(sys.version.split()[0].encode("ascii")),
    )
    print("wrote", out_path)


if __name__ == "__main__":
    main(sys.argv)
