from __future__ import annotations

import json
from pathlib import Path

import pytest

from mantlet.errors import DataError, MantletError
from mantlet.evaluation.dataset import Row, load_rows
from mantlet.evaluation.metrics import Span


def _jsonl(tmp_path: Path, *lines: str | dict[str, object]) -> Path:
    path = tmp_path / "data.jsonl"
    body = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(body + "\n", encoding="utf-8")
    return path


def test_classification_and_span_rows(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path,
        {"text": "clean", "label": 0},
        "",
        "   ",
        {"text": "key AKIA", "label": True, "source": "ignored", "id": 7},
        {"text": "pw=hunter2", "spans": [{"start": 3, "end": 10, "label": "PASSWORD"}]},
        {"text": "abc", "label": 1, "spans": [{"start": 0, "end": 3}]},
        {"text": "", "spans": []},
    )
    assert load_rows(path) == [
        Row("clean", 0, None),
        Row("key AKIA", 1, None),
        Row("pw=hunter2", None, (Span(3, 10, "PASSWORD"),)),
        Row("abc", 1, (Span(0, 3, "*"),)),  # label defaults to the wildcard
        Row("", None, ()),
    ]


def test_non_ascii_text_and_crlf_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        '{"text": "clé ✓", "spans": [{"start": 4, "end": 5, "label": 1}]}\r\n'.encode()
        + b'{"text": "x", "label": 0.0}\r\n'
    )
    rows = load_rows(path)
    assert rows == [Row("clé ✓", None, (Span(4, 5, "1"),)), Row("x", 0, None)]


@pytest.mark.parametrize(("limit", "count"), [(None, 5), (1, 1), (3, 3), (99, 5)])
def test_limit(tmp_path: Path, limit: int | None, count: int) -> None:
    path = _jsonl(tmp_path, *({"text": f"t{i}", "label": i % 2} for i in range(5)))
    rows = load_rows(path, limit=limit)
    assert [r.text for r in rows] == [f"t{i}" for i in range(count)]


BAD_ROWS = [
    pytest.param("{not json", 2, "not valid JSON (JSONDecodeError)", id="bad-json"),
    pytest.param('{"text": "a", "label": 1', 2, "not valid JSON", id="truncated"),
    pytest.param('["text", 1]', 2, "each row must be an object with a string 'text'", id="list"),
    pytest.param('"just a string"', 2, "each row must be an object", id="string"),
    pytest.param('{"label": 1}', 2, "with a string 'text'", id="no-text"),
    pytest.param('{"text": 5, "label": 1}', 2, "with a string 'text'", id="text-int"),
    pytest.param('{"text": "a"}', 2, "row has neither 'label' nor 'spans'", id="no-label"),
    pytest.param('{"text": "a", "label": 2}', 2, "'label' must be 0 or 1, got 2", id="label-2"),
    pytest.param('{"text": "a", "label": "1"}', 2, "'label' must be 0 or 1, got '1'", id="str"),
    pytest.param('{"text": "a", "label": null}', 2, "got None", id="label-null"),
    pytest.param('{"text": "a", "label": 0.5}', 2, "got 0.5", id="label-half"),
    pytest.param('{"text": "a", "spans": {}}', 2, "'spans' must be a list", id="spans-dict"),
    pytest.param('{"text": "a", "spans": [1]}', 2, "spans[0] must be an object", id="span-int"),
    pytest.param(
        '{"text": "abc", "spans": [{"start": 2, "end": 1}]}',
        2,
        "spans[0] has invalid start/end for a text of 3",
        id="start-after-end",
    ),
    pytest.param(
        '{"text": "abc", "spans": [{"start": 0, "end": 3}, {"start": 1, "end": 4}]}',
        2,
        "spans[1] has invalid start/end for a text of 3",
        id="end-beyond-text",
    ),
    pytest.param(
        '{"text": "abc", "spans": [{"start": -1, "end": 2}]}', 2, "spans[0]", id="negative"
    ),
    pytest.param('{"text": "abc", "spans": [{"start": 0}]}', 2, "spans[0]", id="no-end"),
    pytest.param(
        '{"text": "abc", "spans": [{"start": "0", "end": 2}]}', 2, "spans[0]", id="start-str"
    ),
    pytest.param(
        '{"text": "abc", "spans": [{"start": 0.0, "end": 2}]}', 2, "spans[0]", id="start-float"
    ),
]


@pytest.mark.parametrize(("line", "number", "message"), BAD_ROWS)
def test_bad_rows_name_file_and_line(tmp_path: Path, line: str, number: int, message: str) -> None:
    path = _jsonl(tmp_path, {"text": "ok", "label": 0}, line, {"text": "never read", "label": 0})
    with pytest.raises(DataError) as info:
        load_rows(path)
    text = str(info.value)
    assert text.startswith(f"{path}:{number}: ")
    assert message in text


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, {"text": "ok", "label": 0}, "", "", "oops")
    with pytest.raises(DataError, match=r":4: not valid JSON"):
        load_rows(path)


def test_invalid_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "ok", "label": 0}\n{"text": "caf\xe9", "label": 0}\n')
    with pytest.raises(DataError) as info:
        load_rows(path)
    assert str(info.value) == f"{path}:2: not valid JSON (UnicodeDecodeError)"


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_rows(path)
    assert str(info.value) == f"{path}: no rows"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=r"cannot read .*nope\.jsonl: No such file"):
        load_rows(path)


def test_data_error_is_a_mantlet_error() -> None:
    assert issubclass(DataError, MantletError)
    assert DataError("x").diagnostics() == "x"
