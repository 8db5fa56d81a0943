"""BPO exactness, checked from outside the implementation: the prompts that actually reach the generation backend,
the rollout dump, TRL's buffered tensors, and advantages recomputed by hand."""

import math
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from bpo_helpers import (
    NO_THINK,
    THINK,
    GenerateRecorder,
    bpo_args,
    ends_with_ids,
    install_fake_vllm,
    length_reward,
    prefix_ids,
    read_dump,
    text_rows,
    torch_threads,
    vision_rows,
)

torch_threads(1)


def _trainer(model_path, tokenizer, args, rows, cls=None, vision=False):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from r4b_trl.bpo import BPOTrainer

    auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    cls = cls or BPOTrainer
    return cls(model=auto.from_pretrained(model_path), reward_funcs=[length_reward], args=args, train_dataset=rows,
               processing_class=tokenizer)


def _mode_of_prompt(ids, tok):
    if ends_with_ids(ids, prefix_ids(tok, NO_THINK)):
        return "non_thinking"
    if ends_with_ids(ids, prefix_ids(tok, THINK)):
        return "thinking"
    if ends_with_ids(ids, prefix_ids(tok, "<think>")):
        return "auto"
    return "none"


def _check_groups(modes_in_order, G, n_think):
    assert len(modes_in_order) % G == 0
    for g in range(0, len(modes_in_order), G):
        c = Counter(modes_in_order[g:g + G])
        assert c == {"thinking": n_think, "non_thinking": G - n_think}, (g, modes_in_order)


def _check_dump(output_dir, G, n_think, rows_per_step):
    dump = read_dump(output_dir)
    assert dump, "no rollout dump written"
    by_step = defaultdict(list)
    for r in dump:
        by_step[r["step"]].append(r)
    for step, rows in by_step.items():
        assert len(rows) == rows_per_step
        groups = defaultdict(list)
        for r in rows:
            groups[r["group_id"]].append(r)
        for gid, g in groups.items():
            assert len({r["prompt_id"] for r in g}) == 1, gid
            assert sorted(r["index_in_group"] for r in g) == list(range(G))
            assert Counter(r["forced_mode"] for r in g) == {"thinking": n_think, "non_thinking": G - n_think}
    return dump


def _recompute_advantages(dump):
    """GRPO's group-relative advantage, recomputed by hand: (r - mean) / (sample std + 1e-4) per group; unscorable
    rollouts (reward None) are left out of mean and std and get 0."""
    groups = defaultdict(list)
    for r in dump:
        groups[(r["step"], r["group_id"])].append(r)
    for rows in groups.values():
        rs = [r["reward"] for r in rows if r["reward"] is not None]
        m = sum(rs) / len(rs) if rs else 0.0
        sd = math.sqrt(sum((x - m) ** 2 for x in rs) / (len(rs) - 1)) if len(rs) > 1 else 0.0
        for r in rows:
            want = 0.0 if r["reward"] is None else (r["reward"] - m) / (sd + 1e-4)
            assert r["advantage"] == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("per_device,G,fraction", [(8, 4, 0.5), (6, 6, 1 / 3)])
def test_transformers_backend_groups_are_exactly_split(tiny_text_model, text_tokenizer, tmp_path, per_device, G, fraction):
    args = bpo_args(tmp_path, per_device_train_batch_size=per_device, num_generations=G, thinking_fraction=fraction)
    trainer = _trainer(tiny_text_model, text_tokenizer, args, text_rows())
    rec = GenerateRecorder(trainer.model, text_tokenizer.pad_token_id)
    trainer.train()
    n_think = round(G * fraction)
    assert len(rec.calls) == 2
    for prompts, _ in rec.calls:
        modes = [_mode_of_prompt(p, text_tokenizer) for p in prompts]
        _check_groups(modes, G, n_think)
        # All G rows of a group share the question: the prompt minus its forced prefix is identical.
        for g in range(0, len(prompts), G):
            stems = {text_tokenizer.decode(p).rsplit("assistant\n", 1)[0] for p in prompts[g:g + G]}
            assert len(stems) == 1
    dump = _check_dump(args.output_dir, G, n_think, per_device)
    _recompute_advantages(dump)


def test_prefix_in_prompt_ids_not_in_completion_ids(tiny_text_model, text_tokenizer, tmp_path):
    args = bpo_args(tmp_path, per_device_train_batch_size=4, max_steps=1)
    trainer = _trainer(tiny_text_model, text_tokenizer, args, text_rows())
    rec = GenerateRecorder(trainer.model, text_tokenizer.pad_token_id)
    trainer.train()
    buf = trainer._buffered_inputs[0]
    eos = text_tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompts = [row[m.bool()].tolist() for row, m in zip(buf["prompt_ids"], buf["prompt_mask"])]
    comps = [row[m.bool()].tolist() for row, m in zip(buf["completion_ids"], buf["completion_mask"])]
    assert Counter(_mode_of_prompt(p, text_tokenizer) for p in prompts) == {"thinking": 2, "non_thinking": 2}
    # Completion ids are exactly what the model generated after the (pre-filled) prompt.
    generated = []
    for tail in rec.calls[0][1]:
        generated.append(tail[: tail.index(eos) + 1] if eos in tail else tail)
    assert sorted(map(tuple, comps)) == sorted(map(tuple, generated))
    # ... and the prompt ids end with the prefix, which therefore never enters the loss (prompt tokens are not trained).
    for p, c in zip(prompts, comps):
        assert _mode_of_prompt(p, text_tokenizer) in ("thinking", "non_thinking")


def test_steps_per_generation_two(tiny_text_model, text_tokenizer, tmp_path):
    args = bpo_args(tmp_path, per_device_train_batch_size=4, steps_per_generation=2, max_steps=4)
    trainer = _trainer(tiny_text_model, text_tokenizer, args, text_rows())
    rec = GenerateRecorder(trainer.model, text_tokenizer.pad_token_id)
    trainer.train()
    assert len(rec.calls) == 2 and all(len(p) == 8 for p, _ in rec.calls)
    for prompts, _ in rec.calls:
        _check_groups([_mode_of_prompt(p, text_tokenizer) for p in prompts], 4, 2)
    dump = _check_dump(args.output_dir, 4, 2, 8)
    assert sorted({r["step"] for r in dump}) == [1, 3]
    _recompute_advantages(dump)


def test_vision_groups(tiny_vision_model, vision_processor, red_image, tmp_path):
    args = bpo_args(tmp_path, per_device_train_batch_size=8)
    trainer = _trainer(tiny_vision_model, vision_processor, args, vision_rows(red_image), vision=True)
    rec = GenerateRecorder(trainer.model, vision_processor.tokenizer.pad_token_id)
    trainer.train()
    image_pad = vision_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for prompts, _ in rec.calls:
        assert all(image_pad in p for p in prompts)
        _check_groups([_mode_of_prompt(p, vision_processor) for p in prompts], 4, 2)
    _recompute_advantages(_check_dump(args.output_dir, 4, 2, 8))


@pytest.mark.parametrize("vllm_mode", ["server", "colocate"])
@pytest.mark.parametrize("vision", [False, True])
def test_fake_vllm_paths(tiny_text_model, tiny_vision_model, text_tokenizer, vision_processor, red_image, tmp_path,
                         monkeypatch, vllm_mode, vision):
    pc = vision_processor if vision else text_tokenizer
    rows = vision_rows(red_image) if vision else text_rows()
    args = bpo_args(tmp_path, per_device_train_batch_size=8, max_steps=1)
    trainer = _trainer(tiny_vision_model if vision else tiny_text_model, pc, args, rows, vision=vision)
    backend = install_fake_vllm(trainer, vllm_mode, monkeypatch)
    trainer.train()
    call = backend.calls[0]
    if vllm_mode == "server":
        # One unique prompt per (group, mode): 2 groups x 2 modes, each sampled n = G/2 times.
        assert call["n"] == 2 and len(call["prompts"]) == 4
        assert [_mode_of_prompt(p, pc) for p in call["prompts"]] == ["thinking", "non_thinking"] * 2
        if vision:
            assert call["features"] is not None and len(call["features"]) == 4
    else:
        assert call["n"] == 1 and len(call["prompts"]) == 8
        _check_groups([_mode_of_prompt(p["prompt_token_ids"], pc) for p in call["prompts"]], 4, 2)
        if vision:
            assert all("multi_modal_data" in p for p in call["prompts"])
    dump = _check_dump(args.output_dir, 4, 2, 8)
    # The fake answers with the prompt's last tokens: each completion shows the pre-fill it was generated from.
    for r in dump:
        assert ("</think>" in r["completion"]) == (r["forced_mode"] == "non_thinking"), r


def test_server_dedup_trap_without_override(tiny_text_model, text_tokenizer, tmp_path, monkeypatch):
    """Negative control: TRL's own server path de-duplicates with [::G], so without BPO's override every rollout
    is generated from the first (thinking) prompt of its group."""
    from trl import GRPOTrainer

    from r4b_trl.bpo import BPOTrainer

    class NoOverride(BPOTrainer):
        _generate_single_turn = GRPOTrainer._generate_single_turn

    args = bpo_args(tmp_path, per_device_train_batch_size=8, max_steps=1)
    trainer = _trainer(tiny_text_model, text_tokenizer, args, text_rows(), cls=NoOverride)
    backend = install_fake_vllm(trainer, "server", monkeypatch)
    trainer.train()
    assert backend.calls[0]["n"] == 4 and len(backend.calls[0]["prompts"]) == 2
    dump = read_dump(args.output_dir)
    nothink = [r for r in dump if r["forced_mode"] == "non_thinking"]
    assert nothink and not any("</think>" in r["completion"] for r in nothink)


def test_vanilla_grpo_has_free_mode_choice(tiny_text_model, text_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    cfg = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=8, num_generations=4,
                     max_completion_length=6, max_steps=1, use_cpu=True, bf16=False, report_to=[],
                     gradient_checkpointing=False)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_text_model), reward_funcs=[length_reward],
                          args=cfg, train_dataset=text_rows(), processing_class=text_tokenizer)
    rec = GenerateRecorder(trainer.model, text_tokenizer.pad_token_id)
    trainer.train()
    header = text_tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    assert all(ends_with_ids(p, header) for p in rec.calls[0][0])  # nothing pre-filled: the model chooses
    # BPOConfig(force_modes=False): every rollout gets only the auto pre-fill <think>.
    args = bpo_args(tmp_path, per_device_train_batch_size=8, max_steps=1, force_modes=False)
    trainer = _trainer(tiny_text_model, text_tokenizer, args, text_rows())
    rec = GenerateRecorder(trainer.model, text_tokenizer.pad_token_id)
    trainer.train()
    assert {_mode_of_prompt(p, text_tokenizer) for p in rec.calls[0][0]} == {"auto"}
    assert {r["forced_mode"] for r in read_dump(args.output_dir)} == {"auto"}


def test_two_processes(tiny_text_model, tmp_path):
    """torchrun with 2 CPU processes: a group of 4 spans both ranks (2 rows each)."""
    script = Path(__file__).parent / "scripts" / "bpo_two_procs.py"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])]),
               OMP_NUM_THREADS="1")
    import socket

    with socket.socket() as sock:  # a free port: a fixed one collides with concurrent runs on a shared machine
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           str(script), tiny_text_model, str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    import json

    per_rank = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(len(x) == 2 for x in per_rank)  # 2 steps each
    for step in range(2):
        modes = per_rank[0][step] + per_rank[1][step]  # the global batch is the rank-ordered concatenation
        _check_groups(modes, 4, 2)
    _recompute_advantages(_check_dump(tmp_path / "out", 4, 2, 4))


# ------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kw,msg", [
    (dict(num_generations=5), "not a whole number"),
    (dict(num_generations=4, thinking_fraction=1.0), "leaves a mode with no rollouts"),
    (dict(num_generations=4, thinking_fraction=0.0), "leaves a mode with no rollouts"),
    (dict(num_generations=4, per_device_train_batch_size=6), "divisible"),
])
def test_bad_config(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        bpo_args(tmp_path, **kw)


def test_unadaptable_template_is_refused_before_training(tiny_text_model, text_tokenizer, tmp_path):
    # Pre-filling templates are adapted (tests/test_templates.py); one that pre-fills reasoning text is refused.
    import copy

    from r4b_trl.modes import ModeError

    tok = copy.deepcopy(text_tokenizer)
    tok.chat_template = ("{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
                         "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\nOkay, ' }}"
                         "{%- endif %}")
    args = bpo_args(tmp_path, chat_template_kwargs={"enable_thinking": False})
    with pytest.raises(ModeError, match=r"^BPO: The plain ChatML chat template cannot be adapted"):
        _trainer(tiny_text_model, tok, args, text_rows())


def test_special_think_tokens_are_refused(tmp_path):
    from tokenizers import AddedToken

    from r4b_trl.bpo import validate_processing_class
    from r4b_trl.modes import ModeError, ModePrefixes
    from r4b_trl.tiny_models import build_tokenizer

    tok = build_tokenizer()
    tok.add_tokens([AddedToken("<t>", special=True), AddedToken("</t>", special=True)], special_tokens=True)
    tok.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    p = ModePrefixes(open_tag="<t>", close_tag="</t>", auto="<t>", thinking="<t>\n", non_thinking="<t>\n\n</t>\n\n")
    with pytest.raises(ModeError, match="special token"):
        validate_processing_class(tok, p)


def test_rows_without_prompt_or_answer_are_named():
    from datasets import Dataset

    from r4b_trl.bpo import validate_train_rows
    from r4b_trl.data.io import DataError

    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": "a"}], "solution": "1"},
                            {"prompt": [{"role": "user", "content": "b"}], "solution": " "}])
    with pytest.raises(DataError, match="row 2: column 'solution' is empty"):
        validate_train_rows(ds, "solution")
    with pytest.raises(DataError, match="no 'prompt' column"):
        validate_train_rows(Dataset.from_list([{"question": "a"}]))


def test_decision_tokens_for_bpe_and_char_tokenizers(text_tokenizer):
    from r4b_trl.modes import decision_tokens

    d = decision_tokens(text_tokenizer)
    # Qwen-style BPE: "\n" vs "\n\n" right after <think>: both decisions sit inside the forced prefixes.
    assert d.position == 1 and d.thinking_in_prefix and d.non_thinking_in_prefix
    assert text_tokenizer.convert_tokens_to_string([d.thinking_token]) == "\n"
    assert text_tokenizer.convert_tokens_to_string([d.non_thinking_token]) == "\n\n"


@pytest.mark.parametrize("backend", ["transformers", "server", "colocate"])
@pytest.mark.parametrize("vision", [False, True])
def test_train_mode_token(tiny_text_model, tiny_vision_model, text_tokenizer, vision_processor, red_image, tmp_path,
                          monkeypatch, backend, vision):
    """The forced decision token moves into the completion (trained); the batch carries each forced row's log(mode
    share) for the estimator, and no extra forward pass computes old log-probs (TRL's on-policy shortcut stays)."""
    pc = vision_processor if vision else text_tokenizer
    tok = getattr(pc, "tokenizer", pc)
    args = bpo_args(tmp_path, per_device_train_batch_size=8, max_steps=1, train_mode_token=True,
                    num_generations=4, thinking_fraction=0.25)
    trainer = _trainer(tiny_vision_model if vision else tiny_text_model, pc, args,
                       vision_rows(red_image) if vision else text_rows(), vision=vision)
    if backend != "transformers":
        install_fake_vllm(trainer, backend, monkeypatch)
    trainer.train()
    buf = trainer._buffered_inputs[0]
    think_open = tok.convert_tokens_to_ids("<think>")
    nl, nlnl = prefix_ids(pc, THINK)[1], prefix_ids(pc, NO_THINK)[1]
    close = tok.convert_tokens_to_ids("</think>")
    seen = Counter()
    for i in range(buf["completion_ids"].shape[0]):
        prompt = buf["prompt_ids"][i][buf["prompt_mask"][i].bool()].tolist()
        comp = buf["completion_ids"][i].tolist()
        assert prompt[-1] == think_open  # only the auto part of the prefix stays in the prompt
        assert buf["bpo_decision_log_share"][i].item() == pytest.approx(
            math.log(0.25) if comp[0] == nl else math.log(0.75), abs=1e-6)
        assert buf["bpo_decision_thinking"][i].item() == float(comp[0] == nl)
        if comp[0] == nl:
            seen["thinking"] += 1
            assert buf["tool_mask"][i, 0].item() == 1
        else:
            assert comp[:3] == [nlnl, close, nlnl]
            assert buf["tool_mask"][i, :3].tolist() == [1, 0, 0]  # decision trained, forced rest not
            seen["non_thinking"] += 1
    assert seen == {"thinking": 2, "non_thinking": 6}
    if backend == "transformers":  # aligned, no vLLM: TRL needs no old log-probs and BPO adds no forward for them
        assert "old_per_token_logps" not in buf


def test_caller_tokenizer_is_not_modified(tiny_text_model, text_tokenizer, tmp_path):
    before = text_tokenizer.chat_template
    trainer = _trainer(tiny_text_model, text_tokenizer, bpo_args(tmp_path, max_steps=1), text_rows())
    assert text_tokenizer.chat_template == before and "r4b_prefix" not in before
    assert "r4b_prefix" in trainer.processing_class.chat_template
