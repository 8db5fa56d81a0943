"""Curation: the heuristics' split on the shipped sample, failure reasons, verdict parsing, resume, outputs."""

import json
import shutil
from pathlib import Path

import pytest

from r4b_trl.data.curation import CurationConfig, curate, load_config, parse_verdict
from r4b_trl.data.io import DataError, read_jsonl, write_jsonl
from r4b_trl.modes import ModePrefixes, parse_response

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "r4b_trl" / "data" / "samples" / "curation_sample.jsonl"
FAKE_CFG = ROOT / "data_prep" / "configs" / "sample_fake.yaml"
FAKES = "r4b_trl.data.fake_annotators:"

EXPECTED = {  # id -> outcome for the shipped sample with the rule-based fakes (see r4b_trl/data/sample_set.py)
    **{f"m0{i}": "non_thinking" for i in range(1, 6)}, "m11": "non_thinking",
    **{f"m{i:02d}": "thinking" for i in range(6, 11)},
    "c01": "non_thinking", "c02": "thinking", "c03": "thinking",
    "s01": "non_thinking", "s02": "non_thinking", "s03": "thinking", "s04": "thinking", "s05": "non_thinking",
    "s06": "unparseable",
    "v01": "thinking", "v02": "thinking", "v03": "thinking", "v04": "non_thinking",
    "b01": "failed", "b02": "duplicate", "b03": "failed",
}


def _cfg(tmp_path, **kw):
    base = load_config(FAKE_CFG).to_dict()
    base.update(output_dir=str(tmp_path / "out"), dataset=str(SAMPLE))
    base.update(kw)
    return CurationConfig(**base)


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fake")
    cfg = _cfg(out)
    summary = curate(cfg, progress=False)
    return cfg, summary, Path(cfg.output_dir)


def test_sample_split_with_fakes(fake_run):
    _, summary, out = fake_run
    records = {r["id"]: r for r in read_jsonl(out / "curation.jsonl")}
    assert {i: r["outcome"] for i, r in records.items()} == EXPECTED
    assert summary["counts"] == {"thinking": 12, "non_thinking": 11, "failed": 2, "unparseable": 1, "duplicate": 1}
    reasons = {r["id"]: r["reason"] for r in summary["not_kept"]}
    assert "empty" in reasons["b01"] and "performance heuristic needs a reference answer" in reasons["b01"]
    assert "b03" in reasons["b03"] and "cannot be decoded" in reasons["b03"]
    assert reasons["b02"] == "duplicate of row id 'm01' (same question and images)"
    assert "VERDICT" in reasons["s06"]
    ev = records["m06"]["evidence"]
    assert ev["heuristic"] == "performance" and ev["pass_count"] == 0 and ev["n_samples"] == 8
    assert records["m01"]["evidence"]["pass_count"] >= 1
    assert records["s03"]["evidence"]["verdict"] == "REASONING" and records["s06"]["evidence"]["judge_raw"]


def test_curated_rows_are_exact_vocabulary(fake_run):
    _, _, out = fake_run
    rows = read_jsonl(out / "curated.jsonl")
    source_order = [r["id"] for r in read_jsonl(SAMPLE)]
    assert [r["id"] for r in rows] == [i for i in source_order if EXPECTED[i] in ("thinking", "non_thinking")]
    P = ModePrefixes()
    for r in rows:
        text = r["completion"][0]["content"]
        parsed = parse_response(text)
        assert parsed.mode == r["mode"]
        expect = P.thinking_answer(parsed.reasoning, parsed.answer) if r["mode"] == "thinking" else \
            P.non_thinking_answer(parsed.answer)
        assert text == expect
        assert r["prompt"][-1]["role"] == "user" and r["completion"][0]["role"] == "assistant"
        n_blocks = sum(b["type"] == "image" for b in r["prompt"][-1]["content"])
        assert n_blocks == len(r["images"])
        for img in r["images"]:
            assert (out / img).is_file()
    by_id = {r["id"]: r for r in rows}
    assert by_id["m01"]["completion"][0]["content"] == "<think>\n\n</think>\n\nThe answer is \\boxed{42}."
    assert by_id["m06"]["completion"][0]["content"].startswith("<think>\nLet me work through this step by step.")
    assert by_id["v04"]["completion"][0]["content"].endswith("The image is mostly red.")
    assert by_id["v01"]["images"] and by_id["v01"]["solution"] == "3"
    card = json.loads((out / "data_card.json").read_text())
    assert card["by_source"]["sample"]["thinking"] == 12 and card["pass_count_histogram"]["0"] == 10


def test_shipped_curated_sample_is_current(fake_run):
    """r4b_trl/data/samples/curated_sample is exactly what sample_fake.yaml produces."""
    _, _, out = fake_run
    shipped = ROOT / "r4b_trl" / "data" / "samples" / "curated_sample"
    assert (shipped / "curated.jsonl").read_bytes() == (out / "curated.jsonl").read_bytes()
    for img in (out / "images").iterdir():
        assert (shipped / "images" / img.name).read_bytes() == img.read_bytes()


def test_sample_set_rebuilds_identically(tmp_path):
    from r4b_trl.data.sample_set import write_sample

    write_sample(tmp_path)
    assert (tmp_path / "curation_sample.jsonl").read_bytes() == SAMPLE.read_bytes()
    for p in (tmp_path / "images").iterdir():
        assert p.read_bytes() == (SAMPLE.parent / "images" / p.name).read_bytes()


@pytest.mark.parametrize("text,verdict", [
    ("VERDICT: REASONING", "REASONING"),
    ("The query is simple.\nverdict: direct", "DIRECT"),
    ("**Verdict:** Reasoning", "REASONING"),
    ("Final verdict: \\boxed{DIRECT}", "DIRECT"),
    ("\\boxed{\\text{reasoning}}", "REASONING"),
    ("VERDICT: DIRECT ... on reflection, VERDICT: REASONING", "REASONING"),
    ("`VERDICT: DIRECT`", "DIRECT"),
    ("direct", "DIRECT"),
    ("Hard to say.", None),
    ("", None),
    (None, None),
    ("The answer needs direct reasoning", None),
    ("VERDICT: MAYBE", None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def _counting_annotator(state):
    from r4b_trl.data.fake_annotators import arithmetic_annotator

    def annotate(req):
        state["calls"] += 1
        if state.get("fail_at") and state["calls"] >= state["fail_at"]:
            raise KeyboardInterrupt("simulated kill")
        return arithmetic_annotator(req)

    return annotate


def test_interrupted_run_resumes_to_identical_output(tmp_path):
    clean = _cfg(tmp_path / "clean", chunk_size=4)
    curate(clean, progress=False)

    state = {"calls": 0, "fail_at": 9}
    ann = {"type": "python", "callable": _counting_annotator(state)}
    cfg = _cfg(tmp_path / "resumed", chunk_size=4, annotator=ann)
    with pytest.raises(KeyboardInterrupt):
        curate(cfg, progress=False)
    out = Path(cfg.output_dir)
    partial = read_jsonl(out / "curation.jsonl")
    assert 0 < len(partial) < 27 and len(partial) % 4 == 0  # whole chunks only
    assert not (out / "curated.jsonl").exists()
    # simulate a writer killed mid-line as well
    with open(out / "curation.jsonl", "a") as f:
        f.write('{"id": "zz", "trunc')
    state["fail_at"] = None
    calls_before = state["calls"]
    curate(_cfg(tmp_path / "resumed", chunk_size=4, annotator=ann), progress=False)
    redone = state["calls"] - calls_before
    assert redone < 27  # finished chunks were skipped
    assert (out / "curated.jsonl").read_bytes() == (Path(clean.output_dir) / "curated.jsonl").read_bytes()
    ids = [r["id"] for r in read_jsonl(out / "curation.jsonl")]
    assert sorted(set(ids)) == sorted(EXPECTED)


def test_resume_refuses_other_config_unless_overwrite(tmp_path):
    curate(_cfg(tmp_path, limit=6), progress=False)
    with pytest.raises(DataError, match=r"different configuration.*n_samples"):
        curate(_cfg(tmp_path, limit=6, n_samples=4), progress=False)
    summary = curate(_cfg(tmp_path, limit=6, n_samples=4), progress=False, overwrite=True)
    assert summary["rows"] == 6
    recs = read_jsonl(tmp_path / "out" / "curation.jsonl")
    assert len(recs) == 6 and all(r["evidence"]["n_samples"] in (4, None) for r in recs)
    # a larger limit continues the same run
    assert curate(_cfg(tmp_path, limit=10, n_samples=4), progress=False)["rows"] == 10


def _write(tmp_path, rows):
    p = tmp_path / "data.jsonl"
    write_jsonl(p, rows)
    return p


def test_failure_reasons(tmp_path):
    rows = [
        {"id": "a", "question": "What is 2 + 2?", "answer": "four-ish", "kind": "math"},  # gold unparseable
        {"id": "b", "question": "What is 3 + 3?", "answer": "6", "kind": "math"},  # annotator says nothing
        {"id": "c", "question": "Hard question one", "answer": "7", "kind": "math"},  # trace never closes
        {"id": "d", "question": "Hard question two", "answer": "8", "kind": "math"},  # trace disagrees
        {"id": "e", "question": "   ", "answer": "1", "kind": "math"},  # empty question
        {"id": "f", "question": "Hard question three", "answer": "9", "kind": "weird"},  # unknown kind
        {"id": "g", "question": "Hard question four", "answer": "5", "kind": "math"},  # dict trace, kept on try 2
    ]

    def annotator(req):
        return [] if req.id == "b" else ["The answer is \\boxed{0}."] * req.n

    def reasoner(req):
        if req.id == "c":
            return ["<think>\nstill thinking"] * req.n
        if req.id == "g":
            return [{"reasoning": "wrong path", "answer": "\\boxed{4}"}, {"reasoning": "5 it is", "answer": "\\boxed{5}"}]
        return ["<think>\nworking\n</think>\n\nThe answer is \\boxed{1}."] * req.n

    cfg = CurationConfig(dataset=str(_write(tmp_path, rows)), output_dir=str(tmp_path / "out"), n_samples=3,
                         columns={"id": "id", "kind": "kind"},
                         annotator={"type": "python", "callable": annotator},
                         reasoner={"type": "python", "callable": reasoner, "attempts": 2},
                         judge={"type": "python", "callable": FAKES + "keyword_judge"})
    summary = curate(cfg, progress=False)
    reasons = {r["id"]: r["reason"] for r in summary["not_kept"]}
    assert "'four-ish' cannot be parsed" in reasons["a"]
    assert "annotator returned no answer" in reasons["b"]
    assert "never closes </think>" in reasons["c"]
    assert "disagrees with the reference answer" in reasons["d"]
    assert "question column 'question' is empty" in reasons["e"]
    assert "unknown kind 'weird'" in reasons["f"]
    kept = read_jsonl(tmp_path / "out" / "curated.jsonl")
    assert [r["id"] for r in kept] == ["g"]
    assert kept[0]["completion"][0]["content"] == "<think>\n5 it is\n</think>\n\n\\boxed{5}"
    assert kept[0]["evidence"]["attempts"] == 2 and "images" not in kept[0]


def test_reference_target_and_subjective_with_reference(tmp_path):
    rows = [{"id": "1", "question": "What is 17 + 25?", "answer": "42"},
            {"id": "2", "question": "Write a limerick.", "answer": "There once was a model...", "kind": "subjective"}]
    cfg = CurationConfig(dataset=str(_write(tmp_path, rows)), output_dir=str(tmp_path / "out"), n_samples=2,
                         non_thinking_target="reference", columns={"id": "id", "kind": "kind"},
                         annotator={"type": "python", "callable": FAKES + "arithmetic_annotator"},
                         judge={"type": "python", "callable": FAKES + "keyword_judge"},
                         reasoner={"type": "python", "callable": FAKES + "oracle_reasoner"})
    curate(cfg, progress=False)
    kept = read_jsonl(tmp_path / "out" / "curated.jsonl")
    assert [r["completion"][0]["content"] for r in kept] == [
        "<think>\n\n</think>\n\n42", "<think>\n\n</think>\n\nThere once was a model..."]
    assert kept[0]["prompt"] == [{"role": "user", "content": "What is 17 + 25?"}]  # text-only: plain strings
    assert kept[1]["evidence"]["target_source"] == "reference"


def test_bad_inputs_are_named(tmp_path):
    p = _write(tmp_path, [{"q": "x"}])
    with pytest.raises(DataError, match="question column 'question' is not in the data"):
        curate(CurationConfig(dataset=str(p), output_dir=str(tmp_path / "o"),
                              annotator={"type": "python", "callable": FAKES + "arithmetic_annotator"}), progress=False)
    p = _write(tmp_path, [{"question": "x", "answer": "1", "id": "a"}, {"question": "y", "answer": "2", "id": "a"}])
    with pytest.raises(DataError, match="share the id 'a'"):
        curate(CurationConfig(dataset=str(p), output_dir=str(tmp_path / "o2"), columns={"id": "id"},
                              annotator={"type": "python", "callable": FAKES + "arithmetic_annotator"}), progress=False)
    with pytest.raises(DataError, match="unknown key"):
        CurationConfig(dataset="x", output_dir="y", annotator={"type": "python", "callable": "a:b", "temp": 1})
    with pytest.raises(DataError, match="type openai but no `base_url`"):
        CurationConfig(dataset="x", output_dir="y", annotator={"type": "openai", "model": "m"})
    with pytest.raises(DataError, match="no function 'nope'"):
        curate(CurationConfig(dataset=str(SAMPLE), output_dir=str(tmp_path / "o3"),
                              annotator={"type": "python", "callable": FAKES + "nope"}), progress=False)
    bad_prompt = tmp_path / "judge.txt"
    bad_prompt.write_text("Is this hard?")
    with pytest.raises(DataError, match="no {question} placeholder"):
        curate(_cfg(tmp_path, judge_prompt_file=str(bad_prompt)), progress=False)


def test_custom_judge_prompt_reaches_judge(tmp_path):
    seen = []

    def judge(req):
        seen.append(req.messages[-1]["content"])
        return "VERDICT: DIRECT"

    prompt = tmp_path / "judge.txt"
    prompt.write_text("Q={question}\nAnswer VERDICT: REASONING or VERDICT: DIRECT")
    rows = [{"question": "Write a poem about {braces}.", "answer": None}]
    cfg = CurationConfig(dataset=str(_write(tmp_path, rows)), output_dir=str(tmp_path / "out"),
                         judge_prompt_file=str(prompt), judge={"type": "python", "callable": judge},
                         annotator={"type": "python", "callable": FAKES + "arithmetic_annotator"})
    curate(cfg, progress=False)
    assert seen == ["Q=Write a poem about {braces}.\nAnswer VERDICT: REASONING or VERDICT: DIRECT"]
    assert read_jsonl(tmp_path / "out" / "curated.jsonl")[0]["evidence"]["verdict"] == "DIRECT"


def test_parquet_output_embeds_images(tmp_path):
    import datasets

    cfg = _cfg(tmp_path, output_format="both")
    curate(cfg, progress=False)
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "curated.parquet"), split="train")
    assert len(ds) == 23 and isinstance(ds.features["images"].feature, datasets.Image)
    row = ds[[r["id"] for r in ds.select_columns(["id"])].index("v01")]
    assert row["images"][0].size == (56, 56)
    # the JSONL output is loadable with datasets too
    js = datasets.load_dataset("json", data_files=str(tmp_path / "out" / "curated.jsonl"), split="train")
    assert js.column_names[:5] == ["id", "source", "mode", "prompt", "completion"]


def test_hub_style_dataset_with_image_feature(tmp_path, red_image):
    """Rows whose images are a datasets.Image feature (Parquet / Hub) are stored as bytes, not decoded."""
    import datasets

    ds = datasets.Dataset.from_dict({"question": ["How many red squares?", "What is 1 + 1?"], "answer": ["1", "2"],
                                     "image": [red_image, None]}).cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp_path / "d.parquet"))
    cfg = CurationConfig(dataset=str(tmp_path / "d.parquet"), output_dir=str(tmp_path / "out"), n_samples=2,
                         columns={"image": "image"},
                         annotator={"type": "python", "callable": FAKES + "arithmetic_annotator"},
                         reasoner={"type": "python", "callable": FAKES + "oracle_reasoner"})
    s = curate(cfg, progress=False)
    assert s["counts"]["thinking"] == 1 and s["counts"]["non_thinking"] == 1
    rows = read_jsonl(tmp_path / "out" / "curated.jsonl")
    assert rows[0]["images"][0].startswith("images/") and rows[1]["images"] == []
    shutil.rmtree(tmp_path / "out")
