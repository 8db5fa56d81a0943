"""Benchmarks: load every row and check it before the model is loaded (:func:`prepare_benchmark`), into
:class:`EvalItem` s whose images are decoded only when they are generated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.formats import row_id, validate_question_rows
from ..data.io import DataError, images_of, load_table, require_columns, user_prompt
from ..errors import problems, row_label
from .config import VALID_KINDS, BenchmarkSpec, EvalConfig


@dataclass
class EvalItem:
    item_id: str
    index: int
    question: str
    gold: str | list[str]
    kind: str
    group: str | None
    row: dict
    image_column: str | None = None
    image_base_dir: str | None = None
    system_prompt: str | None = None
    gold_error: str | None = None  # the gold answer is unusable: the item is generated but unscorable

    def load_images(self, benchmark: str) -> list:
        return images_of(self.row, self.image_column, self.image_base_dir,
                         where=f"benchmark {benchmark!r}, item {self.item_id!r} ({row_label(self.index)})")

    def messages(self, num_images: int) -> list[dict]:
        return user_prompt(self.question, num_images, self.system_prompt)


@dataclass
class PreparedBenchmark:
    spec: BenchmarkSpec
    items: list[EvalItem]

    @property
    def name(self) -> str:
        return self.spec.name


def _gold_of(value: Any, where: str) -> str | list[str]:
    if isinstance(value, (list, tuple)):  # several acceptable answers (OCRBench-style): any one counts
        golds = [str(v) for v in value if v is not None and str(v).strip()]
        if not golds:
            raise DataError(f"{where}: the answer list is empty.")
        return golds
    return str(value).strip()


def _lazy_images(ds, column: str | None):
    """Keep image columns undecoded (``{"bytes", "path"}``) so that a broken image fails on its own item, later."""
    features = getattr(ds, "features", None) or {}
    if not column or column not in features:
        return ds
    import datasets

    feat = features[column]
    if isinstance(feat, datasets.Image) and feat.decode:
        return ds.cast_column(column, datasets.Image(decode=False))
    if isinstance(feat, datasets.List) and isinstance(feat.feature, datasets.Image) and feat.feature.decode:
        return ds.cast_column(column, datasets.List(datasets.Image(decode=False)))
    return ds


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _gold_from_choices(gold, kind: str, choices) -> tuple[Any, str, str | None]:
    """Multiple choice with the options in a column (MathVista-style): a gold answer given as the text of an option
    becomes that option's letter, scored as ``choice``. Rows without options are left as they are."""
    if not isinstance(choices, (list, tuple)) or not choices:
        return gold, kind, None
    options = [str(c).strip() for c in choices][: len(LETTERS)]
    if isinstance(gold, str):
        if gold.strip() in options:
            return LETTERS[options.index(gold.strip())], "choice", None
        if len(gold.strip()) == 1 and gold.strip().upper() in LETTERS[: len(options)]:
            return gold.strip().upper(), "choice", None
    return gold, kind, f"the answer {gold!r} is neither one of the choices {options} nor an option letter"


def prepare_benchmark(spec: BenchmarkSpec, global_limit: int | None = None) -> PreparedBenchmark:
    """Load a benchmark's rows and check every one of them (raises :class:`DataError` naming benchmark, row and
    column). Images are *not* decoded here: an image that fails to decode makes its item unscorable later."""
    source = f"benchmark {spec.name!r} ({spec.path})"
    try:
        ds = load_table(spec.path, split=spec.split, name=spec.subset)
    except DataError as e:
        raise DataError(f"benchmark {spec.name!r}: {e}") from e
    except Exception as e:  # datasets' own errors (unknown Hub id, split, subset)
        raise DataError(f"{source}: cannot be loaded (split={spec.split!r}, subset={spec.subset!r}): "
                        f"{type(e).__name__}: {e}") from e
    limits = [x for x in (spec.limit, global_limit) if x is not None]
    if limits and min(limits) < len(ds):
        ds = ds.select(range(min(limits)))
    ds = _lazy_images(ds, spec.image_column)
    cols = spec.columns()
    validate_question_rows(ds, cols, source=source, need_answer=True, check_images=False)
    if spec.choices_column:
        require_columns(ds.column_names, {"choices": spec.choices_column}, source)
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    errors: list[str] = []
    for i, row in enumerate(ds):
        iid = row_id(row, i, cols)
        label = row_label(i, iid if spec.id_column else None)
        where = f"{source}: {label}"
        if iid in seen:
            errors.append(f"{label}: its id (column {spec.id_column!r}) repeats {row_label(seen[iid])}")
        seen[iid] = i
        kind = spec.kind
        if spec.kind_column and row.get(spec.kind_column) not in (None, ""):
            kind = str(row[spec.kind_column]).strip().lower()
            if kind not in VALID_KINDS:
                errors.append(f"{label}: the kind column {spec.kind_column!r} has {row[spec.kind_column]!r}, not one "
                              f"of {list(VALID_KINDS)}")
        question = str(row[spec.question_column])
        if spec.question_template:
            try:
                question = spec.question_template.format_map({k: ("" if v is None else v) for k, v in row.items()})
            except (KeyError, IndexError, ValueError) as e:
                errors.append(f"{label}: question_template {spec.question_template!r} cannot be filled "
                              f"({type(e).__name__}: {e}); columns: {sorted(row)}")
        try:
            gold = _gold_of(row[spec.answer_column], where + f", column {spec.answer_column!r}")
        except DataError as e:
            errors.append(str(e).split(": ", 1)[-1])
            gold = ""
        gold_error = None
        if spec.choices_column:
            gold, kind, gold_error = _gold_from_choices(gold, kind, row.get(spec.choices_column))
        group = None
        if spec.group_column:
            group = "(missing)" if row.get(spec.group_column) is None else str(row[spec.group_column])
        items.append(EvalItem(item_id=iid, index=i, question=question, gold=gold, kind=kind, group=group, row=row,
                              image_column=spec.image_column, image_base_dir=cols.image_base_dir,
                              system_prompt=spec.system_prompt, gold_error=gold_error))
        if len(errors) >= 5:
            break
    if errors:
        raise DataError(problems(source, errors, "Fix or drop these rows."))
    return PreparedBenchmark(spec, items)


def prepare_benchmarks(config: EvalConfig) -> list[PreparedBenchmark]:
    return [prepare_benchmark(s, config.limit) for s in config.specs()]
