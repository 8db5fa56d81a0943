"""The curation run: rows in fixed chunks through the performance / difficulty heuristics and the reasoner,
records appended per chunk (resumable), the final files rebuilt in source order."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...errors import ServiceError, one_line, row_label
from ...modes import get_prefixes, parse_response
from ..cards import build_data_card, write_data_card
from ..formats import QuestionColumns, row_id
from ..io import DataError, images_of, load_table, read_jsonl, require_columns, user_prompt, write_jsonl
from ..outputs import image_values, normalize_rows, raw_image_bytes, store_image, write_outputs
from .backends import Request, _import_callable, _Roles
from .config import CurationConfig, RoleSpec, load_config
from .judge import load_judge_prompt, parse_verdict

OUTCOMES = ("thinking", "non_thinking", "failed", "unparseable", "duplicate")
RECORDS_FILE = "curation.jsonl"
META_FILE = "curation_meta.json"
SUMMARY_FILE = "curation_summary.json"
FORMAT_VERSION = 1


@dataclass
class _Item:
    index: int
    id: str
    row: dict
    question: str = ""
    solution: str | None = None
    kind: str = "objective"
    answer_kind: str | None = None
    images: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    label: str = ""  # "row 8 (id 'q7')": how messages name the row
    record: dict | None = None  # the row's result, once settled
    pending: dict = field(default_factory=dict)  # evidence gathered before the target is written


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _classify(kind_value, has_answer: bool, default_answer_kind: str) -> tuple[str, str | None] | str:
    v = "" if kind_value is None else str(kind_value).strip().lower()
    if v in ("subjective", "open", "open-ended", "open_ended", "creative"):
        return "subjective", None
    if v in ("math", "choice", "exact"):
        return "objective", v
    if v in ("objective", "auto", "verifiable"):
        return "objective", default_answer_kind
    if v == "":
        return ("objective", default_answer_kind) if has_answer else ("subjective", None)
    return f"unknown kind {kind_value!r} (use objective, subjective, math, choice, exact or auto)"


def _evidence(**kw) -> dict:
    ev = {"heuristic": None, "kind": None, "answer_kind": None, "pass_count": None, "n_samples": None,
          "verdict": None, "judge_raw": None, "target_source": None, "attempts": None, "reason": None}
    ev.update(kw)
    return ev


def _record(item: _Item, outcome: str, completion: str | None = None, reason: str | None = None, **evidence) -> dict:
    mode = outcome if outcome in ("thinking", "non_thinking") else None
    ev = _evidence(kind=item.kind, answer_kind=item.answer_kind, reason=reason, **evidence)
    return {"id": item.id, "index": item.index, "outcome": outcome, "mode": mode, "completion": completion,
            "reason": reason, "evidence": ev}


def _dedup_key(question: str, row: dict, cols: QuestionColumns, base_dir) -> str:
    h = hashlib.sha256(" ".join(question.split()).encode("utf-8"))
    for v in image_values(row, cols.image):
        try:
            h.update(hashlib.sha256(raw_image_bytes(v, base_dir)[0]).digest())
        except Exception:
            h.update(repr(v).encode())
    return h.hexdigest()


class Curator:
    def __init__(self, cfg: CurationConfig, verify: Callable | None = None, progress: bool = True):
        self.cfg = cfg
        self.cols = cfg.question_columns
        self.prefixes = get_prefixes(cfg.prefix_family)
        self.judge_prompt = load_judge_prompt(cfg.judge_prompt_file)
        self.verify = verify or _import_callable(cfg.verifier)
        self.roles = _Roles(cfg, self.prefixes)
        self.gave_up: tuple[str, Exception] | None = None  # (role, error) once an endpoint has given up
        self.progress = progress
        self.out = Path(cfg.output_dir)
        src = Path(cfg.dataset)
        self.base_dir = self.cols.image_base_dir or (str(src.parent if src.is_file() else src) if src.exists() else None)
        self.source_name = cfg.source or (src.stem if src.exists() else str(cfg.dataset))

    # -- data -------------------------------------------------------------------------------------------------
    def load_rows(self) -> tuple[list[dict], str]:
        """The rows to curate (the first ``limit``) and a fingerprint of the whole dataset."""
        ds = load_table(self.cfg.dataset, split=self.cfg.split, name=self.cfg.name)
        require_columns(ds.column_names, {k: v for k, v in self.cols.required().items() if k != "group"},
                        source=str(self.cfg.dataset))
        ds = _undecoded_images(ds, self.cols.image)
        n = len(ds) if self.cfg.limit is None else min(len(ds), int(self.cfg.limit))
        return [ds[i] for i in range(n)], self._data_fingerprint(ds)

    def _prepare(self, rows: list[dict]) -> list[_Item]:
        items, seen_ids, seen_keys = [], {}, {}
        for i, row in enumerate(rows):
            rid = row_id(row, i, self.cols)
            if rid in seen_ids:
                raise DataError(f"{self.cfg.dataset}: {row_label(seen_ids[rid])} and {row_label(i)} share the id "
                                f"{rid!r} (column {self.cols.id!r}); ids must be unique. Fix or drop one of them.")
            seen_ids[rid] = i
            item = _Item(index=i, id=rid, row=row, label=row_label(i, rid if self.cols.id else None))
            items.append(item)
            q = row.get(self.cols.question)
            if _blank(q):
                item.record = _record(item, "failed", reason=f"{item.label}: the question column {self.cols.question!r} is empty")
                continue
            item.question = str(q)
            ans = row.get(self.cols.answer) if self.cols.answer else None
            item.solution = None if _blank(ans) else str(ans).strip()
            kind = _classify(row.get(self.cols.kind) if self.cols.kind else None, item.solution is not None,
                             self.cfg.default_answer_kind)
            if isinstance(kind, str):
                item.record = _record(item, "failed", reason=f"{item.label}: column {self.cols.kind!r}: {kind}")
                continue
            item.kind, item.answer_kind = kind
            if item.kind == "objective" and item.solution is None:
                item.record = _record(item, "failed", reason=(
                    f"{item.label}: the answer column {self.cols.answer!r} is empty; the performance heuristic needs a "
                    "reference answer for an objective query (give one, or set its kind to subjective)"))
                continue
            if self.cfg.dedup:
                key = _dedup_key(item.question, row, self.cols, self.base_dir)
                if key in seen_keys:
                    item.record = _record(item, "duplicate", reason=f"duplicate of row id {seen_keys[key]!r} "
                                          "(same question and images)")
                    continue
                seen_keys[key] = rid
        return items

    def _load_images(self, item: _Item) -> bool:
        try:
            item.images = images_of(item.row, self.cols.image, self.base_dir, where=item.label)
        except DataError as e:
            item.record = _record(item, "failed", reason=str(e))
            return False
        item.messages = user_prompt(item.question, len(item.images), self.cols.system_prompt)
        return True

    def _request(self, item: _Item, role: str, mode: str, n: int, messages=None) -> Request:
        return Request(role=role, id=item.id, question=item.question, solution=item.solution, kind=item.kind,
                       answer_kind=item.answer_kind, messages=messages or item.messages, images=item.images,
                       mode=mode, n=n, row=item.row)

    def _verify(self, answer: str, item: _Item) -> bool | None:
        return self.verify(answer, item.solution, kind=item.answer_kind or "auto")

    def _ask(self, spec: RoleSpec, items: list[_Item], requests: list[Request], *, temperature: float,
              seed: int) -> list:
        """``roles.ask``; when an endpoint gives up, the rows asked are recorded as failed (retried by a rerun), the
        rest of the run is skipped, and ``[]`` is returned (so no row of this call gets a result)."""
        from ...generation import EndpointError

        if requests and self.gave_up is None:
            try:
                return self.roles.ask(spec, requests, temperature=temperature, seed=seed)
            except EndpointError as e:
                self.gave_up = (spec.role, e)
        if requests:
            role, err = self.gave_up
            what = f"HTTP {err.status}" if err.status is not None else "no connection"
            for it in items:
                it.record = _record(it, "failed", reason=f"{it.label}: the {role} endpoint gave up ({what})",
                                    endpoint_error=one_line(err), **it.pending)
        return []

    # -- one chunk --------------------------------------------------------------------------------------------
    def process_chunk(self, items: list[_Item], chunk_index: int) -> list[dict]:
        cfg, P = self.cfg, self.prefixes
        seed = cfg.seed + 1000 * chunk_index
        live = [it for it in items if it.record is None and self._load_images(it)]
        ann, judge, reas = cfg.annotator_spec, cfg.judge_spec, cfg.reasoner_spec
        thinking: list[_Item] = []
        direct_needs_answer: list[_Item] = []
        results: dict[str, dict] = {}

        def blind(it: _Item, spec: RoleSpec) -> bool:
            if it.images and not self.roles.sees_images(spec):
                it.record = _record(it, "failed", reason=f"{it.label}: the row has images but the {spec.role} "
                                    f"({spec.backend.get('model')}) is a text-only model")
                return True
            return False

        # 1. performance heuristic
        objective = [it for it in live if it.kind == "objective" and not blind(it, ann)]
        answers = self._ask(ann, objective, [self._request(it, "annotator", "non_thinking", cfg.n_samples)
                                             for it in objective], temperature=ann.temperature, seed=seed + 1)
        for it, samples in zip(objective, answers):
            texts = [text for text, _ in samples]
            if not texts or all(not parse_response(t, P).answer.strip() for t in texts):
                it.record = _record(it, "failed", reason=f"{it.label}: the annotator returned no answer",
                                    heuristic="performance", n_samples=len(texts))
                continue
            verdicts = [self._verify(parse_response(t, P).answer, it) for t in texts]
            if any(v is None for v in verdicts):
                it.record = _record(it, "failed", heuristic="performance", n_samples=len(texts), reason=(
                    f"{it.label}: the reference answer {it.solution!r} cannot be parsed as a "
                    f"{it.answer_kind or 'auto'} answer by the verifier"))
                continue
            passed = sum(bool(v) for v in verdicts)
            ev = dict(heuristic="performance", pass_count=passed, n_samples=len(texts))
            if passed == 0:
                it.pending = ev
                thinking.append(it)
            else:
                # the first correct answer that was not cut off at max_new_tokens, else the reference answer
                usable = [k for k, v in enumerate(verdicts) if v and samples[k][1]]
                if cfg.non_thinking_target == "annotator" and usable:
                    answer, source = parse_response(texts[usable[0]], P).answer, "annotator"
                else:
                    answer, source = it.solution, "reference"
                it.record = _record(it, "non_thinking", P.non_thinking_answer(answer), target_source=source, **ev)

        # 2. difficulty heuristic
        subjective = [it for it in live if it.kind == "subjective" and it.record is None and not blind(it, judge)]
        reqs = []
        for it in subjective:
            text = self.judge_prompt.replace("{question}", it.question)
            msgs = user_prompt(text, len(it.images), self.cols.system_prompt)
            reqs.append(self._request(it, "judge", judge.mode, 1, messages=msgs))
        replies = self._ask(judge, subjective, reqs, temperature=judge.temperature, seed=seed + 2)
        for it, reply in zip(subjective, replies):
            raw = reply[0][0] if reply else ""
            parsed = parse_response(raw, P)
            verdict = parse_verdict(parsed.answer) if parsed.mode != "truncated" else None
            ev = dict(heuristic="difficulty", verdict=verdict, judge_raw=raw)
            if verdict is None:
                it.record = _record(it, "unparseable", reason=f"{it.label}: no VERDICT: REASONING / DIRECT in the "
                                    "judge's reply", **ev)
            elif verdict == "REASONING":
                it.pending = ev
                thinking.append(it)
            elif it.solution is not None:
                it.record = _record(it, "non_thinking", P.non_thinking_answer(it.solution), target_source="reference",
                                    **ev)
            else:
                it.pending = ev
                direct_needs_answer.append(it)

        # 3. direct answers for subjective rows without a reference
        todo = [it for it in direct_needs_answer if not blind(it, ann)]
        outs = self._ask(ann, todo, [self._request(it, "annotator", "non_thinking", 1) for it in todo],
                         temperature=ann.answer_temperature, seed=seed + 3)
        for it, out in zip(todo, outs):
            text, finished = out[0] if out else ("", False)
            parsed = parse_response(text, P)
            if not out or not parsed.answer.strip():
                it.record = _record(it, "failed", reason=f"{it.label}: the annotator returned no answer", **it.pending)
            elif not finished:
                it.record = _record(it, "failed", reason=f"{it.label}: the annotator's answer hit max_new_tokens "
                                    f"({ann.max_new_tokens})", **it.pending)
            else:
                it.record = _record(it, "non_thinking", P.non_thinking_answer(parsed.answer),
                                    target_source="annotator", **it.pending)

        # 4. reasoning traces
        todo = [it for it in thinking if not blind(it, reas)]
        traces = self._ask(reas, todo, [self._request(it, "reasoner", "thinking", reas.attempts) for it in todo],
                           temperature=reas.temperature, seed=seed + 4)
        for it, samples in zip(todo, traces):
            reasons = []
            for k, s in enumerate(samples):
                text, finished = s
                parsed = parse_response(text, P)
                if parsed.mode == "truncated":
                    reasons.append("the trace never closes </think>")
                elif parsed.mode != "thinking":
                    reasons.append("the trace has an empty think block")
                elif not finished:
                    reasons.append(f"the trace hit max_new_tokens ({reas.max_new_tokens})")
                elif not parsed.answer.strip():
                    reasons.append("the trace has no answer after </think>")
                elif it.solution is not None and it.kind == "objective" and not self._verify(parsed.answer, it):
                    reasons.append("the trace's final answer disagrees with the reference answer")
                else:
                    it.record = _record(it, "thinking", P.thinking_answer(parsed.reasoning, parsed.answer),
                                        target_source="reasoner", attempts=k + 1, **it.pending)
                    break
            if it.record is None:
                why = "; ".join(dict.fromkeys(reasons)) or "the reasoner returned nothing"
                it.record = _record(it, "failed", reason=f"{it.label}: {why}", attempts=len(samples), **it.pending)
        for it in items:
            results[it.id] = it.record
        return [results[it.id] for it in items]

    # -- resume bookkeeping -----------------------------------------------------------------------------------
    def _data_fingerprint(self, ds) -> str:
        h = hashlib.sha256()
        for i, row in enumerate(ds):
            vals = [row_id(row, i, self.cols), row.get(self.cols.question),
                    row.get(self.cols.answer) if self.cols.answer else None,
                    row.get(self.cols.kind) if self.cols.kind else None]
            for v in image_values(row, self.cols.image):
                vals.append(v if isinstance(v, str) else len(raw_image_bytes(v, self.base_dir)[0]))
            h.update(json.dumps(vals, default=str).encode())
        return h.hexdigest()

    def _check_meta(self, rows_all_fp: str, overwrite: bool) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        meta_path = self.out / META_FILE
        meta = {"format_version": FORMAT_VERSION, "config": self.cfg.fingerprint_dict(), "data": rows_all_fp}
        meta["fingerprint"] = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
        if overwrite:
            for name in (RECORDS_FILE, META_FILE, SUMMARY_FILE):
                (self.out / name).unlink(missing_ok=True)
        elif meta_path.exists():
            old = json.loads(meta_path.read_text(encoding="utf-8"))
            if old.get("fingerprint") != meta["fingerprint"]:
                diff = sorted(k for k in set(old.get("config", {})) | set(meta["config"])
                              if old.get("config", {}).get(k) != meta["config"].get(k))
                if old.get("data") != meta["data"]:
                    diff.append("<the dataset's rows>")
                raise DataError(
                    f"{self.out}: it holds a curation run with a different configuration (differs in: {diff}). "
                    "Resume with the same config, pick another output_dir, or pass --overwrite to start over.")
        elif (self.out / RECORDS_FILE).exists():
            raise DataError(f"{self.out}: {RECORDS_FILE} exists without {META_FILE}; pass --overwrite to start over.")
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")

    def run(self, overwrite: bool = False) -> dict:
        from tqdm.auto import tqdm

        rows, data_fp = self.load_rows()
        self._check_meta(data_fp, overwrite)
        items = self._prepare(rows)
        rec_path = self.out / RECORDS_FILE
        B = self.cfg.chunk_size
        chunks = [items[s:s + B] for s in range(0, len(items), B)]
        done, finished_chunks = self._finished_records(rec_path, chunks)
        counts = {o: 0 for o in OUTCOMES}
        for k in finished_chunks:
            for it in chunks[k]:
                counts[done[it.id]["outcome"]] += 1
        bar = tqdm(total=len(items), initial=sum(counts.values()), desc="curating", unit="row",
                   disable=not self.progress, dynamic_ncols=True)
        bar.set_postfix({k: v for k, v in counts.items() if k != "duplicate" or v})
        for k, chunk in enumerate(chunks):
            if k in finished_chunks:
                continue
            recs = self.process_chunk(chunk, k)
            write_jsonl(rec_path, recs, append=True)
            for r in recs:
                done[r["id"]] = r
                counts[r["outcome"]] += 1
            bar.update(len(chunk))
            bar.set_postfix({k2: v for k2, v in counts.items() if k2 != "duplicate" or v})
            if self.gave_up is not None:
                break
        bar.close()
        if self.gave_up is not None:
            return self._give_up(items, done)
        return self.finalize(rows, items, done)

    @staticmethod
    def _finished_records(rec_path: Path, chunks: list[list[_Item]]) -> tuple[dict[str, dict], set[int]]:
        """The records of finished chunks, and which chunks are finished. A chunk is finished when every row has a
        record and none failed on an endpoint that gave up (those rows are retried). The records of unfinished
        chunks (a run killed while writing one, or one whose endpoint gave up) are dropped from the file, so the
        rerun of the chunk appends each row once."""
        records = read_jsonl(rec_path)
        done = {r["id"]: r for r in records}
        finished = {k for k, chunk in enumerate(chunks)
                    if all(it.id in done and not done[it.id]["evidence"].get("endpoint_error") for it in chunk)}
        redo = {it.id for k, chunk in enumerate(chunks) if k not in finished for it in chunk}
        if any(r["id"] in redo for r in records):
            kept = [r for r in records if r["id"] not in redo]
            tmp = rec_path.with_suffix(".jsonl.tmp")
            write_jsonl(tmp, kept)
            os.replace(tmp, rec_path)
            done = {r["id"]: r for r in kept}
        return done, finished

    def _give_up(self, items: list[_Item], done: dict[str, dict]) -> dict:
        """An endpoint gave up: write the summary of what is settled (the rows it failed on included, and the
        rows not reached), then stop with one line."""
        role, err = self.gave_up
        summary = self._summary(items, done, output_rows=None)
        summary["incomplete"] = True
        summary["not_reached"] = sum(1 for it in items if it.id not in done)
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        failed = sum(1 for r in done.values() if r["evidence"].get("endpoint_error"))
        raise ServiceError(f"curation stopped: the {role} endpoint gave up on {failed} row(s) ({one_line(err)}); "
                           f"{summary['not_reached']} row(s) not reached. They are recorded in "
                           f"{self.out / SUMMARY_FILE}; rerun the same command to retry them (finished rows are "
                           "kept).")

    def _summary(self, items: list[_Item], done: dict[str, dict], output_rows: int | None) -> dict:
        settled = [it for it in items if it.id in done]
        return {
            "dataset": str(self.cfg.dataset), "source": self.source_name, "rows": len(items),
            "counts": {o: sum(1 for it in settled if done[it.id]["outcome"] == o) for o in OUTCOMES},
            "output_rows": output_rows,
            "not_kept": [{"id": it.id, "outcome": done[it.id]["outcome"], "reason": done[it.id]["reason"]}
                         for it in settled if done[it.id]["outcome"] in ("failed", "unparseable", "duplicate")],
        }

    # -- final output -----------------------------------------------------------------------------------------
    def finalize(self, rows: list[dict], items: list[_Item], done: dict[str, dict]) -> dict:
        out_rows = []
        for it in items:
            rec = done[it.id]
            if rec["outcome"] not in ("thinking", "non_thinking"):
                continue
            vals = image_values(it.row, self.cols.image)
            images = [store_image(v, self.base_dir, self.out) for v in vals]
            prompt = user_prompt(str(it.row[self.cols.question]), len(images), self.cols.system_prompt)
            out_rows.append({
                "id": it.id, "source": self.source_name, "mode": rec["mode"], "prompt": prompt,
                "completion": [{"role": "assistant", "content": rec["completion"]}], "images": images,
                "solution": it.solution if it.solution is not None else "", "evidence": rec["evidence"],
            })
        out_rows = normalize_rows(out_rows)
        write_outputs(out_rows, self.out, "curated", self.cfg.output_format)
        summary = self._summary(items, done, output_rows=len(out_rows))
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        card = build_data_card(out_rows, tokenizer=self.cfg.tokenizer, title=f"Curated: {self.source_name}",
                               extra={"curation": {k: summary[k] for k in ("dataset", "rows", "counts")}})
        write_data_card(card, self.out)
        return summary


def _undecoded_images(ds, column: str | None):
    """Keep image columns as stored bytes/paths (``datasets`` would decode them to PIL images)."""
    if not column or column not in ds.column_names:
        return ds
    import datasets

    feat = ds.features[column]
    if isinstance(feat, datasets.Image):
        return ds.cast_column(column, datasets.Image(decode=False))
    inner = getattr(feat, "feature", None)
    if isinstance(inner, datasets.Image):
        cls = type(feat)
        return ds.cast_column(column, cls(datasets.Image(decode=False)))
    return ds


def curate(config: CurationConfig | str | os.PathLike, overwrite: bool = False, progress: bool = True,
           verify: Callable | None = None, **overrides) -> dict:
    """Run (or resume) a curation; returns the summary (counts per outcome, failed rows with reasons)."""
    cfg = config if isinstance(config, CurationConfig) else load_config(config, **overrides)
    return Curator(cfg, verify=verify, progress=progress).run(overwrite=overwrite)
