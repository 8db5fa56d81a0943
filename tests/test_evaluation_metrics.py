"""Evaluation metrics on scripted answers (a fake backend), hand-computed; config and bad-input handling.

No model is loaded here: prompts are rendered with the tiny text tokenizer's (Qwen3) chat template and a fake
backend answers each (question, mode) with a scripted text.
"""

import json
from pathlib import Path

import pytest

from r4b_trl.data.io import DataError, read_jsonl, write_jsonl
from r4b_trl.evaluation import (
    GOLD_UNPARSEABLE,
    EvalConfig,
    EvalError,
    evaluate,
    parse_config,
    render_report,
)
from r4b_trl.generation import Generation
from r4b_trl.modes import ModePrefixes

P = ModePrefixes()
ROOT = Path(__file__).resolve().parent.parent

# question -> mode -> (generated text after the forced pre-fill, num_tokens, finished)
SCRIPT = {
    # q1: every mode right; auto answers directly.
    "q1": {"auto": ("\n\n</think>\n\nThe answer is \\boxed{4}.", 10, True),
           "thinking": ("2 plus 2 is 4.\n</think>\n\n\\boxed{4}", 20, True),
           "non_thinking": ("\\boxed{4}", 5, True)},
    # q2: auto skips thinking and is wrong; forced thinking is right  -> oracle gap.
    "q2": {"auto": ("\n\n</think>\n\n\\boxed{5}", 12, True),
           "thinking": ("3 + 3 = 6\n</think>\n\n\\boxed{6}", 30, True),
           "non_thinking": ("\\boxed{7}", 6, True)},
    # q3: auto thinks and is wrong; forced non-thinking is right  -> oracle gap.
    "q3": {"auto": ("\nlet me see, 3 * 4 = 11\n</think>\n\n\\boxed{11}", 40, True),
           "thinking": ("3 * 4 = 13\n</think>\n\n\\boxed{13}", 50, True),
           "non_thinking": ("\\boxed{12}", 8, True)},
    # q4: auto thinks and is right; forced thinking runs out of tokens (truncated, wrong).
    "q4": {"auto": ("\n4 + 5 = 9\n</think>\n\n\\boxed{9}", 44, True),
           "thinking": ("4 + 5 is ... still going", 64, False),
           "non_thinking": ("\\boxed{8}", 7, True)},
    # q5: the gold answer cannot be parsed -> unscorable in every mode (still generated and counted).
    "q5": {"auto": ("\n\n</think>\n\n\\boxed{1}", 3, True),
           "thinking": ("x\n</think>\n\n1", 9, True),
           "non_thinking": ("1", 2, True)},
}
ROWS = [
    {"id": "q1", "question": "q1: what is 2+2?", "answer": "4", "difficulty": "easy"},
    {"id": "q2", "question": "q2: what is 3+3?", "answer": "6", "difficulty": "easy"},
    {"id": "q3", "question": "q3: what is 3*4?", "answer": "12", "difficulty": "hard"},
    {"id": "q4", "question": "q4: what is 4+5?", "answer": "9", "difficulty": "hard"},
    {"id": "q5", "question": "q5: what is one?", "answer": "UNPARSEABLE", "difficulty": "hard"},
]


def mode_of_prompt(prompt: str) -> str:
    for mode in ("non_thinking", "thinking", "auto"):
        if prompt.endswith(P.prefix(mode)):
            return mode
    raise AssertionError(f"prompt ends with no mode prefix: {prompt[-30:]!r}")


class ScriptedBackend:
    def __init__(self, script=SCRIPT):
        self.script = script
        self.calls = 0
        self.prompts = []

    def generate(self, prompts, images=None, **kw):
        self.calls += 1
        out = []
        for p in prompts:
            self.prompts.append(p)
            q = next(k for k in self.script if f"{k}:" in p)
            text, n, fin = self.script[q][mode_of_prompt(p)]
            out.append([Generation(text, n, fin)])
        return out


def scripted_verifier():
    """The real verifier, except that the gold 'UNPARSEABLE' is reported as unparseable (None)."""
    from r4b_trl.rewards import verify

    return lambda answer, gold, kind="auto": None if gold == "UNPARSEABLE" else verify(answer, gold, kind)


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "toy.jsonl"
    write_jsonl(path, ROWS)
    return str(path)


def make_config(bench, out, **kw):
    spec = {"name": "toy", "path": bench, "id_column": "id", "group_column": "difficulty", "kind": "math"}
    spec.update(kw.pop("spec", {}))
    return EvalConfig(model="scripted", benchmarks=[spec], output_dir=str(out), batch_size=2, **kw)


def test_metrics_match_hand_computed_numbers(bench, tmp_path, text_tokenizer):
    backend = ScriptedBackend()
    res = evaluate(make_config(bench, tmp_path / "out"), backend=backend, processing_class=text_tokenizer,
                   verifier=scripted_verifier())
    r = res["benchmarks"]["toy"]
    a, t, nt = r["auto"], r["thinking"], r["non_thinking"]
    # auto: right on q1, q4; wrong q2, q3; q5 unscorable. Thought on q3, q4. Tokens 10, 12, 40, 44, 3.
    assert (a["n"], a["n_scored"], a["n_unscorable"], a["n_correct"]) == (5, 4, 1, 2)
    assert a["accuracy"] == pytest.approx(0.5)
    assert a["think_rate"] == pytest.approx(2 / 5)
    assert a["truncation_rate"] == 0
    assert a["mean_tokens"] == pytest.approx(21.8) and a["median_tokens"] == 12
    assert a["unscorable_reasons"] == {GOLD_UNPARSEABLE: 1}
    # thinking: right on q1, q2; q3 wrong; q4 truncated (counted wrong). Thought on q1-q3 and q5; q4 truncated.
    assert (t["n_correct"], t["n_scored"]) == (2, 4) and t["accuracy"] == pytest.approx(0.5)
    assert t["think_rate"] == pytest.approx(4 / 5) and t["truncation_rate"] == pytest.approx(1 / 5)
    assert t["mean_tokens"] == pytest.approx(34.6) and t["median_tokens"] == 30
    # non-thinking: right on q1, q3.
    assert nt["accuracy"] == pytest.approx(0.5) and nt["think_rate"] == 0
    assert nt["mean_tokens"] == pytest.approx(5.6) and nt["median_tokens"] == 6
    # auto vs forced thinking, oracle gap (q2: skipped thinking, thinking right; q3: thought, non-thinking right).
    assert a["accuracy_vs_thinking"] == pytest.approx(1.0)
    assert a["tokens_vs_thinking"] == pytest.approx(21.8 / 34.6)
    assert a["oracle_n"] == 4 and a["oracle_gap"] == pytest.approx(2 / 4)
    assert "oracle_gap" not in t and "oracle_gap" not in nt
    # groups
    easy, hard = a["groups"]["easy"], a["groups"]["hard"]
    assert (easy["n"], easy["accuracy"], easy["think_rate"]) == (2, 0.5, 0.0)
    assert easy["oracle_gap"] == pytest.approx(0.5) and easy["accuracy_vs_thinking"] == pytest.approx(0.5)
    assert (hard["n"], hard["n_unscorable"], hard["accuracy"]) == (3, 1, 0.5)
    assert r["thinking"]["groups"]["hard"]["accuracy"] == 0
    assert hard["accuracy_vs_thinking"] is None  # forced thinking got 0 right on hard: no ratio, not infinity
    assert hard["oracle_gap"] == pytest.approx(1 / 2)
    assert r["non_thinking"]["groups"]["easy"]["mean_tokens"] == pytest.approx(5.5)

    rows = read_jsonl(tmp_path / "out" / "generations.jsonl")
    assert len(rows) == 15 and len({(x["mode"], x["item_id"]) for x in rows}) == 15
    q5 = [x for x in rows if x["item_id"] == "q5"]
    assert all(x["correct"] is None and x["unscorable_reason"].startswith(GOLD_UNPARSEABLE) for x in q5)
    assert all(x["num_tokens"] is not None for x in q5)  # generated, just not scorable
    q4t = next(x for x in rows if x["item_id"] == "q4" and x["mode"] == "thinking")
    assert q4t["parsed_mode"] == "truncated" and q4t["correct"] is False and q4t["finished"] is False
    assert q4t["response"] == "<think>\n4 + 5 is ... still going"
    q1a = next(x for x in rows if x["item_id"] == "q1" and x["mode"] == "auto")
    assert q1a["response"] == "<think>\n\n</think>\n\nThe answer is \\boxed{4}." and q1a["answer"].endswith("{4}.")
    assert q1a["prompt"].endswith("<|im_start|>assistant\n<think>")

    report = (tmp_path / "out" / "report.md").read_text()
    assert "| auto | 5 | 1 | 50.0 | 40.0 | 21.8 | 12.0 | 0.0 | 1.00 | 0.63 | 50.0 |" in report
    assert "| hard | auto | 3 | 1 | 50.0 |" in report
    assert (tmp_path / "out" / "pareto.png").read_bytes()[:4] == b"\x89PNG"

    # Re-running generates nothing new and gives the same results.
    again = evaluate(make_config(bench, tmp_path / "out"), backend=backend, processing_class=text_tokenizer,
                     verifier=scripted_verifier())
    # 5 items / batch 2 = 3 calls per mode + 3 for the sampled auto pass, none on the re-run
    assert backend.calls == 12
    assert again["benchmarks"] == res["benchmarks"]

    # The sampled auto pass: the scripted backend answers auto the same way at T=1 (thought on q3, q4); it wraps no
    # model, so the gate is not measured and says so.
    assert a["sampled_think_rate"] == pytest.approx(2 / 5) and a["sampled_accuracy"] == pytest.approx(2 / 4)
    assert a["sampled_n"] == 5 and a["sampled_temperature"] == 1.0
    assert a["gate"] is None and a["gate_n"] == 0 and "neither a transformers model nor a vLLM engine" in a["gate_note"]
    assert hard["sampled_think_rate"] == pytest.approx(2 / 3) and easy["sampled_think_rate"] == 0
    sampled_prompts = backend.prompts[-5:]
    assert all(p.endswith("<|im_start|>assistant\n<think>") for p in sampled_prompts)
    assert "sampled think %" in report


def test_mode_aliases_and_subset_of_modes(bench, tmp_path, text_tokenizer):
    backend = ScriptedBackend()
    res = evaluate(make_config(bench, tmp_path / "o", modes=["long", "short"]), backend=backend,
                   processing_class=text_tokenizer, verifier=scripted_verifier())
    assert set(res["benchmarks"]["toy"]) == {"thinking", "non_thinking"}
    assert res["settings"]["modes"] == ["thinking", "non_thinking"]
    # auto only, without forced modes to compare with: the relative numbers are absent (None), not made up.
    res = evaluate(make_config(bench, tmp_path / "o2", modes=["auto"]), backend=backend,
                   processing_class=text_tokenizer, verifier=scripted_verifier())
    a = res["benchmarks"]["toy"]["auto"]
    assert a["accuracy_vs_thinking"] is None and a["oracle_gap"] is None and a["oracle_n"] == 0


def test_bad_columns_and_rows_fail_before_the_model_loads(bench, tmp_path, monkeypatch, text_tokenizer):
    import r4b_trl.evaluation.run as ev  # where evaluate() looks load_backend up

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded when the data is bad")

    monkeypatch.setattr(ev, "load_backend", no_model)
    with pytest.raises(DataError, match=r"benchmark 'toy'.*question column 'prompt' is not in the data"):
        evaluate(make_config(bench, tmp_path / "o", spec={"question_column": "prompt"}))
    with pytest.raises(DataError, match=r"benchmark 'toy'.*group column 'level' is not in the data"):
        evaluate(make_config(bench, tmp_path / "o", spec={"group_column": "level"}))
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"question": "ok", "answer": "1", "kind": "math"},
                      {"question": "no answer", "answer": "", "kind": "math"},
                      {"question": "odd kind", "answer": "2", "kind": "essay"}])
    with pytest.raises(DataError, match=r"row 2: the answer column 'answer' is empty"):
        evaluate(EvalConfig(model="x", benchmarks=[{"name": "b", "path": str(bad)}], output_dir=str(tmp_path / "o")))
    write_jsonl(bad, [{"question": "ok", "answer": "1", "kind": "math"},
                      {"question": "odd kind", "answer": "2", "kind": "essay"}])
    with pytest.raises(DataError, match=r"benchmark 'b'.*row 2: the kind column 'kind' has 'essay'"):
        evaluate(EvalConfig(model="x", benchmarks=[{"name": "b", "path": str(bad), "kind_column": "kind"}],
                            output_dir=str(tmp_path / "o")))
    write_jsonl(bad, [{"id": 1, "question": "a", "answer": "1"}, {"id": 1, "question": "b", "answer": "2"}])
    with pytest.raises(DataError, match=r"row 2 \(id '1'\): its id \(column 'id'\) repeats row 1\b"):
        evaluate(EvalConfig(model="x", benchmarks=[{"name": "b", "path": str(bad), "id_column": "id"}],
                            output_dir=str(tmp_path / "o")))
    with pytest.raises(DataError, match=r"benchmark 'gone'.*file not found"):
        evaluate(EvalConfig(model="x", benchmarks=[{"name": "gone", "path": str(tmp_path / "gone.jsonl")}],
                            output_dir=str(tmp_path / "o")))
    with pytest.raises(EvalError, match=r"benchmark 'b': unknown key\(s\) \['question_col'\]"):
        evaluate(EvalConfig(model="x", benchmarks=[{"name": "b", "path": str(bad), "question_col": "q"}]))
    with pytest.raises(ValueError, match="Unknown thinking mode 'medium'"):
        evaluate(make_config(bench, tmp_path / "o", modes=["auto", "medium"]))


def test_broken_image_is_unscorable_not_wrong(tmp_path, red_image, vision_processor):
    red_image.save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but not really")
    write_jsonl(tmp_path / "img.jsonl", [
        {"id": "a", "question": "a: how many?", "answer": "1", "image": "ok.png"},
        {"id": "b", "question": "b: how many?", "answer": "2", "image": "broken.png"},
        {"id": "c", "question": "c: how many?", "answer": "3", "image": "missing.png"},
    ])
    script = {k: {m: ("\n\n</think>\n\n\\boxed{1}" if m != "non_thinking" else "\\boxed{1}", 4, True)
                  for m in ("auto", "thinking", "non_thinking")} for k in "abc"}
    backend = ScriptedBackend(script)
    cfg = EvalConfig(model="scripted", output_dir=str(tmp_path / "out"), modes=["auto", "short"],
                     benchmarks=[{"name": "img", "path": str(tmp_path / "img.jsonl"), "image_column": "image",
                                  "id_column": "id", "kind": "math"}])
    res = evaluate(cfg, backend=backend, processing_class=vision_processor, verifier=scripted_verifier())
    for mode in ("auto", "non_thinking"):
        m = res["benchmarks"]["img"][mode]
        assert (m["n"], m["n_unscorable"], m["n_scored"], m["n_generated"]) == (3, 2, 1, 1)
        assert m["accuracy"] == 1.0 and m["unscorable_reasons"] == {"image_error": 2}
    rows = {(r["mode"], r["item_id"]): r for r in read_jsonl(tmp_path / "out" / "generations.jsonl")}
    bad = rows[("auto", "b")]
    assert bad["correct"] is None and bad["num_tokens"] is None and bad["response"] is None
    assert "image_error" in bad["unscorable_reason"] and "item 'b'" in bad["unscorable_reason"]
    assert "cannot be decoded" in rows[("auto", "c")]["unscorable_reason"]
    assert all("a:" in p for p in backend.prompts)  # only the good item reached the model
    assert "image_error: 4" in (tmp_path / "out" / "report.md").read_text()


def test_resuming_with_other_settings_is_refused(bench, tmp_path, text_tokenizer):
    out = tmp_path / "out"
    evaluate(make_config(bench, out, modes=["short"]), backend=ScriptedBackend(), processing_class=text_tokenizer,
             verifier=scripted_verifier())
    with pytest.raises(EvalError, match="max_new_tokens"):
        evaluate(make_config(bench, out, modes=["short"], max_new_tokens=5), backend=ScriptedBackend(),
                 processing_class=text_tokenizer, verifier=scripted_verifier())
    with pytest.raises(EvalError, match=r"benchmark 'toy' \(question_template\)"):
        evaluate(make_config(bench, out, modes=["short"], spec={"question_template": "Q: {question}"}),
                 backend=ScriptedBackend(), processing_class=text_tokenizer, verifier=scripted_verifier())
    # A larger limit or another mode is fine (more items), and overwrite starts afresh.
    res = evaluate(make_config(bench, out, modes=["short", "auto"], max_new_tokens=5, overwrite=True),
                   backend=ScriptedBackend(), processing_class=text_tokenizer, verifier=scripted_verifier())
    assert res["settings"]["max_new_tokens"] == 5


def test_question_template_and_answer_lists(tmp_path, text_tokenizer):
    write_jsonl(tmp_path / "b.jsonl", [
        {"pid": "x1", "question": "x1: which?", "options": "A. 1  B. 2", "answers": ["B", "2"]},
    ])
    backend = ScriptedBackend({"x1": {m: ("\n\n</think>\n\n2" if m != "non_thinking" else "2", 2, True)
                                      for m in ("auto", "thinking", "non_thinking")}})
    cfg = EvalConfig(model="s", output_dir=str(tmp_path / "out"), modes=["short"], benchmarks=[{
        "name": "ocr", "path": str(tmp_path / "b.jsonl"), "id_column": "pid", "answer_column": "answers",
        "question_template": "{question}\nOptions: {options}", "kind": "exact"}])
    res = evaluate(cfg, backend=backend, processing_class=text_tokenizer, verifier=scripted_verifier())
    assert res["benchmarks"]["ocr"]["non_thinking"]["accuracy"] == 1.0  # "2" matches one of the golds
    row = read_jsonl(tmp_path / "out" / "generations.jsonl")[0]
    assert "x1: which?\nOptions: A. 1  B. 2" in row["prompt"] and row["gold"] == ["B", "2"]
    cfg.benchmarks[0]["question_template"] = "{question} {choices}"
    cfg.output_dir = str(tmp_path / "out2")
    with pytest.raises(DataError, match=r"row 1 \(id 'x1'\): question_template .* cannot be filled \(KeyError"):
        evaluate(cfg, backend=backend, processing_class=text_tokenizer)


def test_config_from_yaml_with_overrides(tmp_path):
    import yaml

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "model": "m", "modes": ["long", "short"], "max_new_tokens": 64, "prefixes": {"non_thinking": "<think></think>"},
        "benchmarks": [{"name": "b", "path": "x.jsonl", "group_column": "difficulty", "limit": 3}]}))
    cfg = parse_config(["--config", str(cfg_path), "--limit", "2", "--temperature", "0.5"])
    assert cfg.model == "m" and cfg.max_new_tokens == 64 and cfg.limit == 2 and cfg.temperature == 0.5
    assert [m.value for m in cfg.resolved_modes()] == ["thinking", "non_thinking"]
    assert cfg.resolved_prefixes().non_thinking == "<think></think>"
    assert cfg.specs()[0].group_column == "difficulty"
    assert EvalConfig().max_new_tokens == 8192 and EvalConfig().temperature == 0.0
    assert [m.value for m in EvalConfig(model="m").resolved_modes()] == ["auto", "thinking", "non_thinking"]
    cfg_path.write_text(yaml.safe_dump({"model": "m", "max_tokens": 3}))
    with pytest.raises(ValueError, match="max_tokens"):
        parse_config(["--config", str(cfg_path)])


def test_report_handles_missing_numbers():
    res = {"benchmarks": {"b": {"auto": {"n": 1, "n_unscorable": 1, "accuracy": None, "think_rate": None,
                                         "mean_tokens": None, "median_tokens": None, "truncation_rate": None,
                                         "accuracy_vs_thinking": None, "tokens_vs_thinking": None,
                                         "oracle_gap": None, "unscorable_reasons": {"image_error": 1}}}}}
    md = render_report(res)
    assert "| auto | 1 | 1 | – | – | – | – | – | – | – | – |" in md
    json.dumps(res)


class VariedBackend:
    """Deterministic, varied answers for the shipped text benchmark: thinking or not, right or wrong, finished or
    cut off, with varied token counts, all derived from a hash of the prompt."""

    def __init__(self, rows):
        self.rows = rows

    def generate(self, prompts, images=None, **kw):
        import hashlib

        out = []
        for p in prompts:
            mode = mode_of_prompt(p)
            row = next(r for r in self.rows if r["question"] in p)
            h = int(hashlib.sha256(p.encode()).hexdigest(), 16)
            answer = row["answer"] if (h >> 3) % 5 < 3 else row["answer"] + "1"
            finished = h % 7 != 0
            tokens = 5 + (h >> 8) % 60
            if mode == "non_thinking" or (mode == "auto" and h % 3 == 0):
                text = ("\n\n</think>\n\n" if mode == "auto" else "") + f"\\boxed{{{answer}}}"
            elif finished:
                text = ("\n" if mode == "auto" else "") + f"some reasoning\n</think>\n\n\\boxed{{{answer}}}"
            else:
                text = ("\n" if mode == "auto" else "") + "some reasoning that never ends"
            out.append([Generation(text, tokens, finished)])
        return out


def test_results_match_an_independent_recomputation(tmp_path, text_tokenizer):
    from eval_recompute import assert_same, recompute_all

    from r4b_trl.evaluation import BenchmarkSpec, prepare_benchmark
    from r4b_trl.rewards import verify

    path = str(ROOT / "r4b_trl" / "data" / "samples" / "bench_text_math.jsonl")
    rows = read_jsonl(path)
    unparseable = {r["answer"] for r in rows if r["id"].endswith("7")}  # pretend these golds cannot be parsed
    cfg = EvalConfig(model="varied", output_dir=str(tmp_path / "out"), batch_size=7, benchmarks=[
        {"name": "text_math", "path": path, "id_column": "id", "kind_column": "kind", "group_column": "difficulty"}])
    res = evaluate(cfg, backend=VariedBackend(rows), processing_class=text_tokenizer,
                   verifier=lambda a, g, k="auto": None if g in unparseable else verify(a, g, k))
    gens = read_jsonl(tmp_path / "out" / "generations.jsonl")
    assert len(gens) == 90
    bench = res["benchmarks"]["text_math"]
    # the scripted answers really are varied
    a = bench["auto"]
    assert 0 < a["accuracy"] < 1 and 0 < a["think_rate"] < 1 and 0 < a["truncation_rate"] < 1
    assert a["n_unscorable"] > 0 and a["oracle_gap"] is not None
    gate_rows = read_jsonl(tmp_path / "out" / "auto_gate.jsonl")
    assert len(gate_rows) == 30
    for mode, met in recompute_all(gens, gate_rows).items():
        assert_same(met, bench[mode], mode)
    difficulty = {r["id"]: r["difficulty"] for r in rows}
    for group in ("easy", "hard"):
        for mode, met in recompute_all([g for g in gens if difficulty[g["item_id"]] == group], gate_rows).items():
            assert_same(met, bench[mode]["groups"][group], f"{mode}.{group}")
    assert prepare_benchmark(BenchmarkSpec.from_dict(cfg.benchmarks[0])).items[0].group == "easy"


def test_choices_column_turns_option_text_into_letters(tmp_path, text_tokenizer):
    write_jsonl(tmp_path / "mv.jsonl", [
        {"pid": "m1", "query": "m1: angle?\nChoices:\n(A) 30°\n(B) 145°", "choices": ["30°", "145°"], "answer": "145°"},
        {"pid": "m2", "query": "m2: value?", "choices": None, "answer": "3"},
        {"pid": "m3", "query": "m3: which?", "choices": ["x", "y"], "answer": "z"},
    ])
    answers = {"m1": "The answer is B.", "m2": "\\boxed{3}", "m3": "A"}
    backend = ScriptedBackend({k: {m: (("\n\n</think>\n\n" if m != "non_thinking" else "") + v, 3, True)
                                   for m in ("auto", "thinking", "non_thinking")} for k, v in answers.items()})
    cfg = EvalConfig(model="s", output_dir=str(tmp_path / "out"), modes=["short"], benchmarks=[{
        "name": "mathvista", "path": str(tmp_path / "mv.jsonl"), "id_column": "pid", "question_column": "query",
        "choices_column": "choices", "kind": "math"}])
    res = evaluate(cfg, backend=backend, processing_class=text_tokenizer, verifier=scripted_verifier())
    rows = {r["item_id"]: r for r in read_jsonl(tmp_path / "out" / "generations.jsonl")}
    assert (rows["m1"]["gold"], rows["m1"]["kind"], rows["m1"]["correct"]) == ("B", "choice", True)
    assert (rows["m2"]["gold"], rows["m2"]["kind"], rows["m2"]["correct"]) == ("3", "math", True)
    assert rows["m3"]["correct"] is None and "neither one of the choices" in rows["m3"]["unscorable_reason"]
    assert rows["m3"]["response"] is not None  # still generated: think-rate and tokens count it
    m = res["benchmarks"]["mathvista"]["non_thinking"]
    assert (m["n"], m["n_scored"], m["accuracy"], m["n_generated"]) == (3, 2, 1.0, 3)
    cfg.benchmarks[0]["choices_column"] = "options"
    cfg.output_dir = str(tmp_path / "out2")
    with pytest.raises(DataError, match="choices column 'options' is not in the data"):
        evaluate(cfg, backend=backend, processing_class=text_tokenizer)


def test_refuses_to_run_as_several_processes(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(EvalError, match="one process"):
        evaluate(make_config(bench, tmp_path / "o"))


@pytest.mark.parametrize("name", ["bench_text_math", "bench_image"])
def test_shipped_sample_golds_are_scorable(name):
    from r4b_trl.evaluation import BenchmarkSpec, prepare_benchmark
    from r4b_trl.rewards import verify

    spec = BenchmarkSpec(name=name, path=str(ROOT / "r4b_trl" / "data" / "samples" / f"{name}.jsonl"),
                         id_column="id", kind_column="kind", image_column="image" if name == "bench_image" else None)
    items = prepare_benchmark(spec).items
    assert len(items) == (30 if name == "bench_text_math" else 20)
    for it in items:
        assert verify(f"\\boxed{{{it.gold}}}", it.gold, it.kind) is True, it.item_id
        assert verify("\\boxed{zzz}", it.gold, it.kind) is False, it.item_id
        if it.image_column:
            assert it.load_images(name)[0].size == (96, 96)
