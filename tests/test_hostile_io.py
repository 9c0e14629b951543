"""Hostile paths and terminals: every file parity writes, inputs that are not regular files, and
what the CLI prints from a file.

Each case ends in a correct result or one clean error naming the file: no traceback, no write
outside the target, no leftover temporary file, nothing waiting forever.
"""

from __future__ import annotations

import errno
import json
import os
import zipfile
from pathlib import Path

import pytest

import parity
from parity import files
from parity.cli import main
from parity.errors import ConversionError, error_line, printable
from tests.conftest import GOLDEN, WEIGHTS
from tests.edits import deadline, edited_keras, layer_config

DEEPMOJI64 = GOLDEN / "deepmoji64-use.keras"
VOCAB = WEIGHTS / "vocabulary.json"
SMALL = GOLDEN / "stacked_rnn-init-float32.keras"
#: No case may take longer: a blocking open of a FIFO would wait forever.
DEADLINE_SECONDS = 60


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with deadline(DEADLINE_SECONDS):
        code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(files.TEMP_SUFFIX))


def _texts(tmp_path: Path) -> Path:
    src = tmp_path / "in.txt"
    src.write_text("I love this\nso sad today\n", encoding="utf-8")
    return src


# --- writes -------------------------------------------------------------------------------------


def test_score_ignores_a_symlink_planted_at_the_old_temporary_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    (tmp_path / f".{out.name}.tmp").symlink_to(victim)
    code, err = run_cli(
        ["deepmoji", "score", str(_texts(tmp_path)), str(out), "--model", str(DEEPMOJI64),
         "--vocab", str(VOCAB), "--quiet"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert victim.read_text(encoding="utf-8") == "precious"
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_failed_score_leaves_no_file_and_keeps_another_writers_temporary_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "fine"}\n[1, 2]\n', encoding="utf-8")  # line 2 is not a record
    out = tmp_path / "out.jsonl"
    other = tmp_path / f".{out.name}.tmp"
    other.write_text("another writer's", encoding="utf-8")
    code, err = run_cli(
        ["deepmoji", "score", str(src), str(out), "--model", str(DEEPMOJI64),
         "--vocab", str(VOCAB), "--quiet"],
        capsys,
    )  # fmt: skip
    assert code != 0 and str(src) in err
    assert not out.exists()
    assert other.read_text(encoding="utf-8") == "another writer's"
    assert leftovers(tmp_path) == [other.name]


@pytest.mark.parametrize(
    ("make_out", "expected"),
    [
        (lambda d: d / "file.txt" / "out.pt2", "is not a directory"),
        (lambda d: d / "missing" / "out.pt2", "does not exist"),
        (lambda d: d / ("x" * 300 + ".pt2"), "over 255 bytes"),
        (lambda d: d, "is a directory"),
    ],
)
def test_export_to_an_impossible_place_is_one_clean_error(
    make_out, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    out = make_out(tmp_path)
    code, err = run_cli(["export", str(SMALL), str(out)], capsys)
    assert code == 1 and expected in err, err
    assert err.count("\n") == 1


def test_full_disk_during_a_write_is_named_and_leaves_nothing(tmp_path: Path) -> None:
    def fill(handle: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "m.pt2"
    with pytest.raises(ConversionError, match="No space left"):
        files.write_atomic(target, fill, "exported program")
    assert not target.exists() and leftovers(tmp_path) == []


def test_write_replaces_atomically_and_keeps_permission_bits(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o640)
    files.write_atomic_text(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert target.stat().st_mode & 0o777 == 0o640

    def half(handle: object) -> None:
        handle.write(b"half")
        raise RuntimeError("writer failed halfway")

    with pytest.raises(RuntimeError):
        files.write_atomic(target, half)
    assert target.read_text(encoding="utf-8") == "new" and leftovers(tmp_path) == []


def test_write_never_follows_a_symlink_at_the_target(tmp_path: Path) -> None:
    """The target itself a symlink: it is replaced by the new file, the file it pointed to is
    left alone (rename replaces the link, it does not write through it)."""
    victim = tmp_path / "victim"
    victim.write_text("precious", encoding="utf-8")
    target = tmp_path / "out.json"
    target.symlink_to(victim)
    files.write_atomic_text(target, "{}")
    assert victim.read_text(encoding="utf-8") == "precious"
    assert not target.is_symlink() and target.read_text(encoding="utf-8") == "{}"


# --- inputs that are not regular files ----------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """Where the case's FIFOs go (``{fifo}.keras`` etc.)."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    return tmp_path / "pipe"


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "{fifo}.keras", "{tmp}/out.safetensors"],
        ["inspect", "{fifo}.keras"],
        ["convert", str(WEIGHTS / "deepmoji_small.keras"), "{tmp}/o.safetensors", "--config",
         "{fifo}.json"],
        ["deepmoji", "score", "{fifo}.txt", "{tmp}/o.jsonl", "--model", str(DEEPMOJI64),
         "--vocab", str(VOCAB), "--quiet"],
        ["deepmoji", "emojize", "hi", "--model", str(DEEPMOJI64), "--vocab", str(VOCAB),
         "--emojis", "{fifo}.csv"],
        ["finetune", str(WEIGHTS / "deepmoji_small.keras"), "--data", "{fifo}.jsonl",
         "--vocab", str(VOCAB), "--method", "last", "--out", "{tmp}/ft", "--quiet"],
        ["deepmoji", "emojize", "hi", "--model", str(DEEPMOJI64), "--vocab", "{fifo}.json"],
    ],
    ids=[
        "convert-src", "inspect-src", "convert-config", "score-input", "emojis", "finetune-data",
        "vocab",
    ],
)  # fmt: skip
def test_fifo_inputs_are_refused_without_waiting(
    argv: list[str], fifo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    named = {}
    for arg in argv:
        if "{fifo}" in arg:
            path = Path(arg.format(fifo=fifo, tmp=tmp_path))
            os.mkfifo(path)
            named["fifo"] = path
    argv = [a.format(fifo=fifo, tmp=tmp_path) for a in argv]
    code, err = run_cli(argv, capsys)
    assert code != 0
    assert str(named["fifo"]) in err and "not a regular file" in err, err


# --- what the CLI prints ------------------------------------------------------------------------


@pytest.mark.parametrize("plugin", [".x", "", "a..b", "../evil"])
def test_bad_plugin_names_are_one_line(plugin: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["--plugin", plugin, "inspect", str(SMALL)], capsys)
    assert code == 1 and "not a module name" in err and err.count("\n") == 1


def _renamed_layer(tmp_path: Path, name: str) -> Path:
    """The small golden .keras with its first SimpleRNN renamed in config.json."""

    def rename(config: dict) -> None:
        layer_config(config, 2)["name"] = name
        config["config"]["layers"][2]["name"] = name

    return edited_keras(SMALL, tmp_path / "named.keras", rename)


def test_inspect_escapes_terminal_controls_in_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "rnn\x1b]0;pwned\x07\x1b[2J\u202eevil"
    with deadline(DEADLINE_SECONDS):
        main(["inspect", str(_renamed_layer(tmp_path, hostile))])
    captured = capsys.readouterr()
    for stream in (captured.out, captured.err):
        assert "\x1b" not in stream and "\x07" not in stream and "\u202e" not in stream
    assert "\\x1b]0;pwned" in captured.out + captured.err


def test_error_lines_are_one_printable_line() -> None:
    assert error_line(ValueError("first\nsecond\x1b[2J")) == "first; second\\x1b[2J"
    assert printable("tab\there") == "tab\\x09here"
    assert printable("ok ü 😂") == "ok ü 😂"


# --- malformed inputs: one line naming the file and the field -----------------------------------


def _score(src: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["deepmoji", "score", str(src), str(tmp_path / "o.jsonl"), "--model", str(DEEPMOJI64),
            "--quiet", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("list.jsonl", b'{"text": "ok"}\n[1, 2]\n', "a record is list"),
        ("null.jsonl", b'{"text": "ok"}\nnull\n', "a record is NoneType"),
        ("number.jsonl", b"3\n", "a record is int"),
        ("latin1.txt", b"caf\xe9\n", "not UTF-8"),
        ("huge-cell.csv", b"text\n" + b"x" * 200_000 + b"\n", "field larger than field limit"),
    ],
)
def test_malformed_score_inputs_name_the_file(
    name: str, content: bytes, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    code, err = run_cli(_score(src, tmp_path, "--vocab", str(VOCAB)), capsys)
    assert code == 1 and str(src) in err and expected in err, err
    assert "internal error" not in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("option", "content", "expected"),
    [
        ("--emojis", "\\U0001f602,110000000\n", "not an emoji line"),
        ("--emojis", b"\xff\xfe\n", "not UTF-8"),
        ("--vocab", '["a", "b"]', "expected a JSON object"),
        ("--vocab", b"\xff", "not UTF-8"),
        ("--vocab", "{", "vocabulary"),
    ],
)
def test_bad_side_files_are_blamed_by_name(
    option: str,
    content: str | bytes,
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    side = tmp_path / "side.json"
    side.write_bytes(content if isinstance(content, bytes) else content.encode())
    extra = (
        [option, str(side)] if option == "--vocab" else [option, str(side), "--vocab", str(VOCAB)]
    )
    code, err = run_cli(_score(_texts(tmp_path), tmp_path, *extra), capsys)
    assert code == 1 and str(side) in err and expected in err, err
    assert "internal error" not in err and str(tmp_path / "in.txt") not in err


def _finetune(data: Path, tmp_path: Path, *extra: str) -> list[str]:
    model = str(WEIGHTS / "deepmoji_small.keras")
    out = str(tmp_path / "ft")
    return ["finetune", model, "--data", str(data), "--vocab", str(VOCAB), "--method", "last",
            "--out", out, "--quiet", *extra]  # fmt: skip


def _records(*labels_and_splits: tuple[object, object]) -> str:
    return "".join(
        json.dumps({"text": f"text {i}", "label": label, "split": split}) + "\n"
        for i, (label, split) in enumerate(labels_and_splits)
    )


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (_records((10**9, "train")), "largest class id"),
        (_records((0, ["train"])), "is not a string"),
        (_records(*[([0] * 2000, s) for s in ("train", "val", "test")]), "1 to 256 classes"),
        (_records(*[([0, 0, 0], s) for s in ("train", "val", "test")]), "are 1 in no record"),
        (_records(*[([1, 0, 0], s) for s in ("train", "val", "test")]), "are 1 in no record"),
    ],
    ids=["huge-class-id", "split-list", "2000-wide", "all-zero", "class-never-set"],
)
def test_degenerate_finetune_data_is_refused_by_name(
    records: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "task.jsonl"
    data.write_text(records, encoding="utf-8")
    code, err = run_cli(_finetune(data, tmp_path), capsys)
    assert code == 1 and expected in err and str(data) in err, err
    assert not (tmp_path / "ft").exists() or not any((tmp_path / "ft").iterdir())


@pytest.mark.parametrize(
    ("extra", "expected"),
    [(["--maxlen", "1000000000"], "--maxlen 1000000000"), (["--maxlen", "-5"], "--maxlen -5")],
)
def test_absurd_finetune_options_are_one_line(
    extra: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "task.jsonl"
    data.write_text(_records((0, "train"), (1, "val"), (0, "test")), encoding="utf-8")
    code, err = run_cli(_finetune(data, tmp_path, *extra), capsys)
    assert code == 1 and expected in err and "internal error" not in err, err


def test_finetune_out_that_is_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "task.jsonl"
    data.write_text(_records((0, "train"), (1, "val"), (0, "test")), encoding="utf-8")
    (tmp_path / "ft").write_text("mine", encoding="utf-8")
    code, err = run_cli(_finetune(data, tmp_path), capsys)
    assert code == 1 and "is a file" in err, err
    assert (tmp_path / "ft").read_text(encoding="utf-8") == "mine"


def test_weights_file_with_a_flood_of_empty_groups_is_refused_quickly(tmp_path: Path) -> None:
    """A .weights.h5 whose layer group holds tens of thousands of empty groups: refused by
    count before they are listed (listing them was the slow part)."""
    import h5py

    path = tmp_path / "flood.weights.h5"
    with zipfile.ZipFile(SMALL) as archive:
        path.write_bytes(archive.read("model.weights.h5"))
    with h5py.File(path, "a") as f:
        layer = f["layers"]["embedding"]
        for i in range(20_000):
            layer.create_group(f"g{i}")
    with deadline(30), pytest.raises(ConversionError, match="20,001 members"):
        parity.load_keras(path, config=SMALL)


@pytest.mark.parametrize("arch", ["embedding_dense", None])
def test_zero_size_weights_are_refused_by_name(arch: str | None, tmp_path: Path) -> None:
    """An embedding of width 0 ((vocab, 0)) and a Dense kernel of no rows: no division by zero
    when sizes are derived, one named error, for the pair and for the generic path."""
    import io

    import h5py

    source = GOLDEN / "embedding_dense-init-float32.keras"
    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "model.weights.h5":
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "a") as f:
                    vocab = f["layers/embedding/vars/0"].shape[0]
                    del f["layers/embedding/vars/0"], f["layers/dense/vars/0"]
                    f["layers/embedding/vars"].create_dataset("0", shape=(vocab, 0), dtype="f4")
                    f["layers/dense/vars"].create_dataset("0", shape=(0, 1), dtype="f4")
                data = buffer.getvalue()
            zout.writestr(item, data)
    with pytest.raises(ConversionError, match="zero-size dimension"):
        parity.load_keras(path, arch=arch)
