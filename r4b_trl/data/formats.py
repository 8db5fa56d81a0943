"""Row formats shared by curation, SFT, BPO and evaluation.

A *question row* is what users bring: a question, optional image(s), an optional reference answer, an optional
answer ``kind`` (``math`` | ``choice`` | ``exact``, or ``objective`` / ``subjective`` in curation) and any extra
columns (e.g. ``difficulty``). :class:`QuestionColumns` names the columns; :func:`validate_question_rows`
checks every row *before* expensive work and names the first bad rows; :func:`to_prompt_row` turns a row into
TRL's conversational ``prompt`` form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import problems, row_label
from .io import DataError, images_of, require_columns, user_prompt


@dataclass
class QuestionColumns:
    question: str = "question"
    answer: str | None = "answer"
    image: str | None = None
    kind: str | None = None
    id: str | None = None
    group: str | None = None
    system_prompt: str | None = None
    image_base_dir: str | None = None
    extra: list[str] = field(default_factory=list)

    def required(self) -> dict[str, str | None]:
        return {"question": self.question, "answer": self.answer, "image": self.image, "kind": self.kind,
                "id": self.id, "group": self.group}


@dataclass(kw_only=True)
class QuestionColumnOptions:
    """The column options of a configuration that reads question rows (``question_column``, ``answer_column``, …,
    as YAML and command-line keys); :meth:`columns` gives them as :class:`QuestionColumns`."""

    question_column: str = field(default="question", metadata={"help": "Column with the question text."})
    answer_column: str = field(default="answer", metadata={"help": "Column with the reference answer."})
    image_column: str | None = field(default=None, metadata={"help": "Column with image(s) (path, bytes or PIL)."})
    kind_column: str | None = field(default=None, metadata={"help": "Column with the answer kind (math|choice|exact)."})
    id_column: str | None = field(default=None, metadata={"help": "Column with a stable row id (default: row index)."})
    group_column: str | None = field(default=None, metadata={"help": "Column to break metrics down by (probe, evaluation)."})
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message."})
    image_base_dir: str | None = field(default=None, metadata={"help": "Base folder for relative image paths."})

    def columns(self, **overrides: Any) -> QuestionColumns:
        cols = QuestionColumns(question=self.question_column, answer=self.answer_column, image=self.image_column,
                               kind=self.kind_column, id=self.id_column, group=self.group_column,
                               system_prompt=self.system_prompt, image_base_dir=self.image_base_dir)
        return dataclasses.replace(cols, **overrides)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def validate_question_rows(rows, cols: QuestionColumns, source: str = "dataset", need_answer: bool = True,
                           check_images: bool = False, max_errors: int = 5) -> None:
    """Raise :class:`DataError` naming the rows (1-based number and id) and columns that lack a question (or
    answer) or whose images cannot be decoded."""
    names = rows.column_names if hasattr(rows, "column_names") else (list(rows[0].keys()) if len(rows) else [])
    require_columns(names, {k: v for k, v in cols.required().items() if k != "answer" or need_answer}, source)
    errors = []
    for i, row in enumerate(rows):
        where = row_label(i, row.get(cols.id) if cols.id else None)
        if _blank(row.get(cols.question)):
            errors.append(f"{where}: the question column {cols.question!r} is empty")
        if need_answer and cols.answer and _blank(row.get(cols.answer)):
            errors.append(f"{where}: the answer column {cols.answer!r} is empty")
        if check_images and cols.image:
            try:
                images_of(row, cols.image, cols.image_base_dir, where=where)
            except DataError as e:
                errors.append(str(e))
        if len(errors) >= max_errors:
            break
    if errors:
        raise DataError(problems(source, errors, "Fix or drop these rows."))


def row_id(row: dict, index: int, cols: QuestionColumns) -> str:
    """A stable id for a row: its id column when configured, else its index in the source."""
    if cols.id and row.get(cols.id) is not None:
        return str(row[cols.id])
    return str(index)


def to_prompt_row(row: dict, index: int, cols: QuestionColumns, load_images: bool = True) -> dict:
    """TRL's conversational prompt form: ``prompt`` (messages with image blocks), ``solution``, ``images``,
    ``prompt_id``, plus ``kind`` / ``group`` and the configured extra columns when present."""
    where = row_label(index, row.get(cols.id) if cols.id else None)
    imgs = images_of(row, cols.image, cols.image_base_dir, where=where) if (cols.image and load_images) else []
    out = {
        "prompt": user_prompt(str(row[cols.question]), len(imgs), cols.system_prompt),
        "prompt_id": row_id(row, index, cols),
    }
    if cols.answer:
        out["solution"] = "" if row.get(cols.answer) is None else str(row[cols.answer])
    if imgs:
        out["images"] = imgs
    if cols.kind:
        out["answer_kind"] = row.get(cols.kind) or "auto"
    if cols.group:
        out["group"] = None if row.get(cols.group) is None else str(row[cols.group])
    for c in cols.extra:
        out[c] = row.get(c)
    return out
