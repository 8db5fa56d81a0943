"""Generation backends and the shared data I/O helpers on the tiny models."""

import json

import pytest

from r4b_trl.data.io import DataError, images_of, load_image, load_table, read_jsonl, user_prompt, write_jsonl
from r4b_trl.generation import TransformersBackend, generate_in_mode
from r4b_trl.modes import parse_response


@pytest.fixture(scope="module")
def text_backend(tiny_text_model):
    return TransformersBackend.from_pretrained(tiny_text_model, batch_size=3)


def test_transformers_backend_batches_match_single(text_backend, text_tokenizer):
    convs = [user_prompt(q) for q in ["What is 2+3?", "Compute 10*10 and then add one more", "x?", "sum 1 2 3 4"]]
    batched = generate_in_mode(text_backend, text_tokenizer, convs, "thinking", max_new_tokens=6)
    single = [generate_in_mode(text_backend, text_tokenizer, [c], "thinking", max_new_tokens=6)[0] for c in convs]
    assert [b[0][0] for b in batched] == [s[0][0] for s in single]  # greedy: padding must not change results
    for row in batched:
        full, gen = row[0]
        assert full.startswith("<think>\n") and full == "<think>\n" + gen.text
        assert 1 <= gen.num_tokens <= 6
        assert gen.finished == (gen.num_tokens < 6 or gen.finished)


def test_token_counts_and_truncation(text_backend, text_tokenizer):
    out = text_backend.generate(["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"], max_new_tokens=3,
                                temperature=1.0, n=4, seed=0)
    assert len(out) == 1 and len(out[0]) == 4
    for g in out[0]:
        assert g.num_tokens <= 3
        if not g.finished:
            assert g.num_tokens == 3


def test_vision_backend_generates_with_images(tiny_vision_model, vision_processor, red_image):
    backend = TransformersBackend.from_pretrained(tiny_vision_model, batch_size=4)
    convs = [user_prompt("How many?", 1), user_prompt("And now?", 0), user_prompt("Two images?", 2)]
    imgs = [[red_image], [], [red_image, red_image]]
    out = generate_in_mode(backend, vision_processor, convs, "non_thinking", images=imgs, max_new_tokens=4)
    assert len(out) == 3
    for row in out:
        assert parse_response(row[0][0]).mode in ("non_thinking", "thinking", "truncated")
        assert row[0][0].startswith("<think>\n\n</think>\n\n")


def test_load_table_local_formats(tmp_path):
    rows = [{"question": "1+1?", "answer": "2"}, {"question": "2+2?", "answer": "4"}]
    write_jsonl(tmp_path / "a.jsonl", rows)
    assert load_table(str(tmp_path / "a.jsonl"))["answer"] == ["2", "4"]
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "b.parquet"))
    assert load_table(str(tmp_path / "b.parquet"))["question"] == ["1+1?", "2+2?"]
    with pytest.raises(DataError, match="not found"):
        load_table(str(tmp_path / "missing.jsonl"))


def test_jsonl_resume_drops_partial_line(tmp_path):
    p = tmp_path / "out.jsonl"
    write_jsonl(p, [{"i": 0}, {"i": 1}])
    with open(p, "a") as f:
        f.write('{"i": 2, "trunc')  # a writer killed mid-line
    assert [r["i"] for r in read_jsonl(p)] == [0, 1]
    write_jsonl(p, [{"i": 2}], append=True)
    assert [json.loads(line)["i"] for line in p.read_text().splitlines()] == [0, 1, 2]


def test_images_are_decoded_or_named(tmp_path, red_image):
    red_image.save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert load_image("ok.png", tmp_path).size == (40, 30)
    with pytest.raises(DataError, match="row 7, column 'image'"):
        images_of({"image": "bad.png"}, "image", tmp_path, where="row 7")
    assert images_of({"image": None}, "image") == []


def test_validate_question_rows_names_row_and_column(tmp_path):
    from r4b_trl.data.formats import QuestionColumns, to_prompt_row, validate_question_rows

    rows = [{"q": "1+1?", "a": "2"}, {"q": "  ", "a": "3"}, {"q": "x", "a": ""}]
    cols = QuestionColumns(question="q", answer="a")
    with pytest.raises(DataError, match=r"row 2: the question column 'q' is empty; row 3: the answer column 'a'"):
        validate_question_rows(rows, cols)
    with pytest.raises(DataError, match="answer column 'answer' is not in the data"):
        validate_question_rows(rows, QuestionColumns(question="q"))
    validate_question_rows(rows[:1], cols)
    assert to_prompt_row(rows[0], 0, cols) == {
        "prompt": [{"role": "user", "content": "1+1?"}], "prompt_id": "0", "solution": "2"}
