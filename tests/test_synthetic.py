"""The demo's synthetic task (r4b_trl.data.synthetic) and the demo model (r4b_trl.tiny_models --kind demo)."""

import json

import pytest

from r4b_trl.data.synthetic import (
    TaskSpec,
    bimodal_rows,
    build_splits,
    make_question,
    parse_question,
    curation_reasoner,
    reasoner,
    solve_trace,
    write_task,
)
from r4b_trl.modes import ModePrefixes, parse_response

SMALL_POOLS = {"pretrain": 400, "curation": 300, "rl": 100}


@pytest.fixture(scope="module")
def splits():
    return build_splits(seed=0, n_test=100, pools=SMALL_POOLS)


def _digits(question):
    # Independent of the module's parser: every digit character before "=" is an operand.
    return [int(c) for c in question.split("=")[0] if c.isdigit()]


def test_generator_is_deterministic_per_seed(splits):
    again = build_splits(seed=0, n_test=100, pools=SMALL_POOLS)
    assert again == splits
    other = build_splits(seed=1, n_test=100, pools=SMALL_POOLS)
    assert [r["question"] for r in other["pretrain"]] != [r["question"] for r in splits["pretrain"]]
    assert [r["question"] for r in other["test"] if r["difficulty"] == "hard"] != \
        [r["question"] for r in splits["test"] if r["difficulty"] == "hard"]


def test_test_split_is_disjoint_from_every_training_pool(splits):
    held = [r for r in splits["test"] if r["held_out"]]
    assert {r["difficulty"] for r in held} == {"med", "hard"}
    test_q = {r["question"] for r in held}
    assert len(test_q) == len(held)  # distinct
    for name in SMALL_POOLS:
        assert not test_q & {r["question"] for r in splits[name]}, name
    # By default easy (100 distinct two-digit items) is tested on every item, all of them seen in training.
    easy_test = {r["question"] for r in splits["test"] if r["difficulty"] == "easy"}
    assert len(easy_test) == 100
    assert easy_test == {r["question"] for r in splits["pretrain"] if r["difficulty"] == "easy"}


def test_easy_holdout_keeps_held_out_pairs_out_of_every_pool():
    sp = build_splits(TaskSpec(easy_holdout=30), seed=0, n_test=50, pools=SMALL_POOLS)
    easy_test = {r["question"] for r in sp["test"] if r["difficulty"] == "easy"}
    assert len(easy_test) == 30 and all(r["held_out"] for r in sp["test"])
    for name in SMALL_POOLS:
        train_easy = {r["question"] for r in sp[name] if r["difficulty"] == "easy"}
        assert not easy_test & train_easy and len(train_easy) == 70
    with pytest.raises(ValueError):
        build_splits(TaskSpec(easy_holdout=60), seed=0, n_test=50, pools=SMALL_POOLS)


def test_split_sizes_difficulties_and_uniqueness(splits):
    spec = TaskSpec()
    counts = {}
    for r in splits["test"]:
        counts[r["difficulty"]] = counts.get(r["difficulty"], 0) + 1
    assert counts == {"easy": 100, "med": 100, "hard": 100}
    for name, n in SMALL_POOLS.items():
        rows = splits[name]
        assert len(rows) == 3 * n
        assert len({r["id"] for r in rows}) == len(rows)
        for level in ("med", "hard"):  # big levels: no repeats within a pool
            qs = [r["question"] for r in rows if r["difficulty"] == level]
            assert len(qs) == n and len(set(qs)) == n
    ks = {r["k"] for r in splits["pretrain"] if r["difficulty"] == "hard"}
    assert ks == set(range(spec.levels["hard"][0], spec.levels["hard"][1] + 1))


def test_solver_traces_and_answers_are_correct_for_every_item(splits):
    spec = TaskSpec()
    assert spec.style == "copy"
    for name, rows in splits.items():
        for r in rows:
            digits = _digits(r["question"])
            lo, hi = spec.levels[r["difficulty"]]
            assert lo <= len(digits) == r["k"] <= hi
            assert len(r["question"]) == 2 * spec.width and r["question"].endswith("=")
            running, total = [], 0
            for d in digits:
                total = (total + d) % 10
                running.append(f"{d}{total}")  # copy style: the operand, then the running sum
            assert r["trace"] == "".join(running), r
            assert r["answer"] == str(sum(digits) % 10) == r["trace"][-1]
            assert solve_trace(r["question"]) == r["trace"] == reasoner(r)


def test_sum_style_traces_are_running_sums():
    spec = TaskSpec(width=12, levels={"easy": (2, 2), "med": (4, 4), "hard": (8, 12)}, style="sum")
    sp = build_splits(spec, seed=0, n_test=50, pools={"pretrain": 100})
    for r in sp["test"] + sp["pretrain"]:
        digits = _digits(r["question"])
        assert len(r["question"]) == spec.width + 1 and "+" not in r["question"]
        running, total = "", 0
        for d in digits:
            total = (total + d) % 10
            running += str(total)
        assert r["trace"] == running == solve_trace(r["question"]) and r["answer"] == running[-1]


def test_curation_reasoner_hook_takes_a_request_or_a_row():
    from types import SimpleNamespace

    want = {"reasoning": "8864592134", "answer": "4"}
    assert curation_reasoner(SimpleNamespace(question="8+6+5+2+3______=", row={})) == want
    assert curation_reasoner({"question": "8+6+5+2+3______="}) == want
    assert curation_reasoner({"question": "86523_______="}) == {"reasoning": "84914", "answer": "4"}


def test_copy_style_restates_each_operand_at_a_constant_distance():
    spec = TaskSpec(width=8, levels={"easy": (2, 2), "med": (4, 4), "hard": (6, 8)}, style="copy")
    sp = build_splits(spec, seed=0, n_test=50, pools={"pretrain": 100})
    for r in sp["test"] + sp["pretrain"]:
        digits = _digits(r["question"])
        assert len(r["question"]) == 2 * spec.width and r["question"][1:2 * len(digits) - 1:2] == "+" * (len(digits) - 1)
        want, total = "", 0
        for d in digits:
            total = (total + d) % 10
            want += f"{d}{total}"
        assert r["trace"] == want == solve_trace(r["question"]) and r["answer"] == want[-1]
        assert parse_question(r["question"]) == digits
    assert make_question([8, 6, 5], 3, "copy") == "8+6+5=" and solve_trace("8+6+5__=") == "886459"


def test_question_helpers():
    assert make_question([8, 6, 5, 2, 3]) == "8+6+5+2+3______="
    assert solve_trace("8+6+5+2+3______=") == "8864592134"
    assert make_question([8, 6, 5, 2, 3], 12, "sum") == "86523_______="
    assert parse_question("86523_______=") == [8, 6, 5, 2, 3]
    assert solve_trace("86523_______=") == "84914"
    for bad in ("", "12", "1_2_________=", "ab=", "____________=", "8+66____=", "8++6____="):
        with pytest.raises(ValueError):
            parse_question(bad)
    with pytest.raises(ValueError):
        make_question([1] * 13)


def test_bimodal_set_formats(splits):
    p = ModePrefixes()
    rows = splits["pretrain"][:60]
    both = bimodal_rows(rows, "both", seed=0)
    assert len(both) == 2 * len(rows)
    by_id = {}
    for r in both:
        by_id.setdefault(r["id"], {})[r["mode"]] = r["completion"][0]["content"]
        assert r["prompt"] == [{"role": "user", "content": r["prompt"][0]["content"]}]
    src = {r["id"]: r for r in rows}
    for i, modes in by_id.items():
        assert modes["thinking"] == p.thinking_answer(src[i]["trace"], src[i]["answer"])
        assert modes["thinking"] == f"<think>\n{src[i]['trace']}\n</think>\n\n{src[i]['answer']}"
        assert modes["non_thinking"] == f"<think>\n\n</think>\n\n{src[i]['answer']}"
        assert parse_response(modes["thinking"]).answer == src[i]["answer"]
    half = bimodal_rows(splits["pretrain"], "half", seed=0)
    assert len(half) == len(splits["pretrain"])
    for level in ("easy", "med", "hard"):
        m = [r["mode"] for r in half if r["difficulty"] == level]
        assert m.count("thinking") == len(m) // 2
    assert bimodal_rows(rows, "half", seed=3) == bimodal_rows(rows, "half", seed=3)


def test_write_task_files(tmp_path):
    paths = write_task(tmp_path, seed=2, n_test=20, pools={"pretrain": 30, "curation": 20, "rl": 10})
    from r4b_trl.data.io import read_jsonl

    assert len(read_jsonl(paths["bimodal_sft"])) == 2 * 90
    assert len(read_jsonl(paths["curation"])) == 60
    meta = json.loads(paths["task"].read_text())
    assert meta["seed"] == 2 and meta["counts"]["test"] == 20 + 20 + 20


def test_cli_writes_the_files(tmp_path, capsys):
    from r4b_trl.data.io import read_jsonl
    from r4b_trl.data.synthetic import main

    main(["--out", str(tmp_path), "--seed", "3", "--test", "10", "--pretrain", "10", "--pretrain-easy", "30",
          "--curation", "5", "--rl", "5"])
    pre = read_jsonl(tmp_path / "pretrain.jsonl")
    assert sum(r["difficulty"] == "easy" for r in pre) == 30 and len(pre) == 50
    assert len(read_jsonl(tmp_path / "bimodal_sft.jsonl")) == 100
    assert json.loads((tmp_path / "task.json").read_text())["spec"]["style"] == "copy"


# --------------------------------------------------------------------------------------------------------------
# The demo tokenizer and model
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    from r4b_trl.tiny_models import build_demo_model

    return str(build_demo_model(tmp_path_factory.mktemp("demo") / "model"))


@pytest.fixture(scope="module")
def demo_tok(demo_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_model)


def test_demo_tokenizer_think_tags_and_template(demo_tok):
    from r4b_trl.modes import check_think_tokens
    from r4b_trl.templates import check_generation_prompt

    check_think_tokens(demo_tok)
    check_generation_prompt(demo_tok)
    for tag in ("<think>", "</think>", "user", "assistant", "<|im_start|>", "<|im_end|>"):
        ids = demo_tok.encode(tag, add_special_tokens=False)
        assert len(ids) == 1, tag
    for tag in ("<think>", "</think>"):
        assert demo_tok.decode(demo_tok.encode(tag, add_special_tokens=False), skip_special_tokens=True) == tag
    text = "8+6+5+2+3______=\n\n</think>"
    toks = demo_tok.convert_ids_to_tokens(demo_tok.encode(text, add_special_tokens=False))
    assert toks == list("8+6+5+2+3______=") + ["\n\n", "</think>"]
    assert demo_tok.convert_ids_to_tokens(demo_tok.encode("\n\n\n", add_special_tokens=False)) == ["\n\n", "\n"]
    assert demo_tok.decode(demo_tok.encode("a b\n1", add_special_tokens=False)) == "a b\n1"
    assert demo_tok.eos_token == "<|im_end|>" and demo_tok.pad_token == "<|endoftext|>"


def test_demo_decision_token_is_right_after_think_and_inside_both_prefixes(demo_tok, demo_model):
    from r4b_trl.modes import decision_tokens

    d = decision_tokens(demo_tok)
    # As with Qwen3's BPE: "<think>" then "\n" (thinking) or "\n\n" (non-thinking); both forced pre-fills hold it.
    assert d.position == 1 and demo_tok.convert_ids_to_tokens(d.thinking_ids[0]) == "<think>"
    assert (d.thinking_token, d.non_thinking_token) == ("\n", "\n\n")
    assert d.thinking_in_prefix and d.non_thinking_in_prefix
    saved = json.loads(open(f"{demo_model}/r4b_tiny.json").read())["decision_tokens"]
    assert saved == {"position": 1, "thinking": "\n", "non_thinking": "\n\n",
                     "in_prefix": {"thinking": True, "non_thinking": True}}


def test_pure_char_tokenizer_would_not_force_thinking():
    """Why the demo tokenizer pairs newlines: one token per character makes "<think>\\n" a token prefix of the
    non-thinking pre-fill, so the decision falls after the thinking pre-fill and "forced thinking" forces nothing."""
    from r4b_trl.modes import decision_tokens
    from r4b_trl.tiny_models import build_char_tokenizer

    d = decision_tokens(build_char_tokenizer(pair_newlines=False))
    assert d.position == 2 and d.thinking_token is None
    assert not d.thinking_in_prefix and d.non_thinking_in_prefix


def test_demo_model_builds_and_generates_in_every_mode(demo_model, demo_tok):
    from transformers import AutoModelForCausalLM

    from r4b_trl.generation import TransformersBackend, generate_in_mode

    model = AutoModelForCausalLM.from_pretrained(demo_model)
    n = sum(p.numel() for p in model.parameters())
    assert 150_000 < n < 300_000
    assert model.config.model_type == "qwen3" and model.config.num_hidden_layers == 4
    backend = TransformersBackend(model, demo_tok, batch_size=8)
    convs = [[{"role": "user", "content": q}] for q in ("8+6+5+2+3______=", "1+2____________=")]
    for mode, prefix in (("auto", "<think>"), ("thinking", "<think>\n"), ("non_thinking", "<think>\n\n</think>\n\n")):
        out = generate_in_mode(backend, demo_tok, convs, mode, max_new_tokens=4, temperature=1.0, n=2, seed=0)
        assert len(out) == 2 and all(len(r) == 2 for r in out)
        for row in out:
            for text, g in row:
                assert text.startswith(prefix) and 1 <= g.num_tokens <= 4


def test_demo_sft_row_trains_the_whole_completion(demo_model, demo_tok, tmp_path):
    """TRL's prompt/completion tokenisation with the char tokenizer: the labels are exactly the assistant turn."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from r4b_trl.data.synthetic import question_row, sft_row

    row = question_row([8, 6, 5, 2, 3], "med", "x")
    ds = Dataset.from_list([{k: v for k, v in sft_row(row, m).items() if k in ("prompt", "completion")}
                            for m in ("thinking", "non_thinking")])
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=1, use_cpu=True, bf16=False,
                     report_to=[], shuffle_dataset=False, gradient_checkpointing=False)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(demo_model), args=args, train_dataset=ds,
                         processing_class=demo_tok)
    batch = next(iter(trainer.get_train_dataloader()))
    texts = sorted((demo_tok.decode([int(i) for i, l in zip(ids, labels) if int(l) != -100])
                    for ids, labels in zip(batch["input_ids"], batch["labels"])), key=len, reverse=True)
    assert texts == ["<think>\n8864592134\n</think>\n\n4<|im_end|>\n", "<think>\n\n</think>\n\n4<|im_end|>\n"]
