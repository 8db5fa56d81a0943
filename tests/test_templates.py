"""The chat-template adaptation over every thinking-capable template TRL ships, every mode, with a Qwen-style BPE
tokenizer (r4b-trl's tiny one: Qwen2's pre-tokeniser regex, "\\n" and "\\n\\n" distinct tokens); the same checks with
the real Qwen vocabularies are in test_templates_real_qwen.py.

Expected texts are built from facts about each template (its assistant header, and the conversation it renders
without a generation prompt under its own switch), not from the code under test."""

import copy
import glob
import logging
import os

import pytest

import trl
from r4b_trl.chat_templates import DEFAULT_CHAT_TEMPLATE
from r4b_trl.generation import chat_prompt_in_mode
from r4b_trl.modes import PREFIX_MARKER, Mode, ModeError, ModePrefixes, with_prefix
from r4b_trl.templates import render_prompt
from r4b_trl.templates import (
    check_template,
    hook_template,
    inference_template,
    mode_plan,
    template_family,
)

P = ModePrefixes()
TRL_DIR = os.path.join(os.path.dirname(trl.__file__), "chat_templates")
ALL = sorted(glob.glob(os.path.join(TRL_DIR, "*.jinja")))
THINKING = [os.path.basename(f)[:-6] for f in ALL if P.open_tag in open(f, encoding="utf-8").read()]
SKIPPED = [os.path.basename(f)[:-6] for f in ALL if P.open_tag not in open(f, encoding="utf-8").read()]
#: The assistant header of each family, read off the templates' sources.
HEADERS = {"deepseek": "<｜Assistant｜>", "glm4moe": "<|assistant|>"}
SINGLE = [{"role": "user", "content": "What is 2+3?"}]
MULTI = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "<think>\nTwo plus two is four.\n</think>\n\n4"},
    {"role": "user", "content": "And 3+3?"},
]


def _template(name: str) -> str:
    with open(os.path.join(TRL_DIR, name + ".jinja"), encoding="utf-8") as f:
        return f.read()


def _header(name: str) -> str:
    for key, header in HEADERS.items():
        if name.startswith(key):
            return header
    return "<|im_start|>assistant\n"


def _switch(name: str, template: str, mode: Mode) -> dict:
    if name.startswith("glm4moe"):  # its non-thinking pre-fill "<think></think>" is not Qwen's: thinking-on rendering
        return {"enable_thinking": True}
    return {"enable_thinking": mode is not Mode.NON_THINKING} if "enable_thinking" in template else {}


@pytest.fixture(scope="module")
def tok(text_tokenizer):
    return copy.deepcopy(text_tokenizer)


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_the_loop_covers_the_families_the_issue_names():
    for name in ("qwen3", "qwen3_5_think", "qwen3_5_nothink", "qwen3_6", "qwen3_8", "deepseek_r1_distill",
                 "nemotron_3_nano", "glm4moe"):
        assert name in THINKING
    assert "qwen2_5" in SKIPPED and "qwen3_vl" in SKIPPED and len(THINKING) >= 25


@pytest.mark.parametrize("name", THINKING)
def test_every_mode_ends_with_exactly_its_prefill(tok, name):
    template = _template(name)
    byte = {"\n": tok.convert_tokens_to_ids("Ċ"), "\n\n": tok.convert_tokens_to_ids("ĊĊ")}
    think, close = tok.convert_tokens_to_ids("<think>"), tok.convert_tokens_to_ids("</think>")
    want_ids = {Mode.AUTO: [think], Mode.THINKING: [think, byte["\n"]],
                Mode.NON_THINKING: [think, byte["\n\n"], close, byte["\n\n"]]}
    for conv in (SINGLE, MULTI):
        for mode in Mode:
            text = render_prompt(tok, conv, mode, chat_template=template)
            base = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=False, chat_template=template,
                                           **_switch(name, template, mode))
            assert text == base + _header(name) + P.prefix(mode), (name, mode, text[-80:])
            ids = _ids(tok, text)
            assert ids[-len(want_ids[mode]):] == want_ids[mode]
            assert ids[:-len(want_ids[mode])] == _ids(tok, base + _header(name))  # no merge across the pre-fill
            assert tok.decode(ids) == text


@pytest.mark.parametrize("name", THINKING)
def test_bpo_hook_and_saved_template_render_what_inference_renders(tok, name):
    template = _template(name)
    pc = copy.deepcopy(tok)
    pc.chat_template = template
    check_template(pc, stage="bpo")
    hooked = hook_template(pc)
    saved = inference_template(pc)
    for conv in (SINGLE, MULTI):
        for mode in Mode:
            want = render_prompt(pc, conv, mode)
            assert pc.apply_chat_template(with_prefix(conv, P.prefix(mode)), tokenize=False,
                                          add_generation_prompt=True, chat_template=hooked) == want
            # The saved template: thinking_mode reaches every mode (what vLLM's chat_template_kwargs pass) ...
            assert pc.apply_chat_template(conv, tokenize=False, add_generation_prompt=True, chat_template=saved,
                                          thinking_mode=mode.r4b_name) == want
        # ... and without it, the model's own template renders exactly as before.
        for kw in ({}, {"enable_thinking": True}, {"enable_thinking": False}):
            for gen in (True, False):
                assert pc.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen, chat_template=saved,
                                              **kw) == pc.apply_chat_template(conv, tokenize=False,
                                                                              add_generation_prompt=gen, **kw)
    # A model saved with the adapted template renders every mode through its own switch from then on.
    pc.chat_template = saved
    assert {pl.how for pl in mode_plan(pc).values()} == {"switch"}
    assert template_family(saved) == name


@pytest.mark.parametrize("name", THINKING)
def test_chat_request_renders_like_the_rendered_prompt(tok, name):
    pc = copy.deepcopy(tok)
    pc.chat_template = _template(name)
    for mode in Mode:
        cp = chat_prompt_in_mode(pc, MULTI, mode)
        assert cp.render(pc) == render_prompt(pc, MULTI, mode)
        assert cp.prefix == P.prefix(mode)


def test_chat_request_for_auto_on_qwen3_does_not_double_the_block(tok):
    # The bug the issue reports: an assistant pre-fill "<think>" through Qwen3's template renders
    # "<think>\n\n</think>\n\n<think>". The request sends the adapted template instead.
    pc = copy.deepcopy(tok)
    pc.chat_template = _template("qwen3")
    cp = chat_prompt_in_mode(pc, SINGLE, "auto")
    assert cp.prefill is None and cp.chat_template is not None and cp.chat_template_kwargs == {"thinking_mode": "auto"}
    assert cp.render(pc).endswith("<|im_start|>assistant\n<think>") and cp.render(pc).count("<think>") == 1
    nt = chat_prompt_in_mode(pc, SINGLE, "non_thinking")
    assert nt.chat_template is None and nt.chat_template_kwargs == {"enable_thinking": False}


def test_patch_is_logged_once(tok, caplog):
    import r4b_trl.templates as t

    t._LOGGED.clear()
    t._CACHE.clear()
    with caplog.at_level(logging.INFO, logger="r4b_trl.templates"):
        for _ in range(3):
            render_prompt(tok, SINGLE, "auto", chat_template=_template("qwen3_5_think"))
    lines = [r.getMessage() for r in caplog.records if "cut to the assistant header" in r.getMessage()]
    assert len(lines) == 1 and "qwen3_5_think" in lines[0] and "auto" in lines[0]


# ---- R-4B's own template, in the two shapes its model card allows ------------------------------------------------

#: Shape 1: thinking_mode undefined pre-fills "<think>" ("default is auto-thinking").
R4B_UNDEFINED_AUTO = DEFAULT_CHAT_TEMPLATE.replace(
    "    {%- endif %}\n{%- endif %}",
    "    {%- else %}\n        {{- '<think>' }}\n    {%- endif %}\n{%- endif %}")
#: Shape 2: thinking_mode="auto" pre-fills nothing (the model opens the block itself).
R4B_AUTO_EMPTY = DEFAULT_CHAT_TEMPLATE.replace(
    "{%- if thinking_mode is defined and thinking_mode == 'auto' %}\n        {{- '<think>' }}\n    {%- elif",
    "{%- if thinking_mode is defined and thinking_mode == 'auto' %}\n    {%- elif")


@pytest.mark.parametrize("shape", [R4B_UNDEFINED_AUTO, R4B_AUTO_EMPTY], ids=["undefined_prefills_think",
                                                                            "auto_prefills_nothing"])
def test_r4b_template_shapes(tok, shape):
    assert shape != DEFAULT_CHAT_TEMPLATE
    pc = copy.deepcopy(tok)
    pc.chat_template = shape
    plain = tok.apply_chat_template(SINGLE, tokenize=False, add_generation_prompt=True, chat_template=shape)
    assert plain.endswith("assistant\n<think>" if shape is R4B_UNDEFINED_AUTO else "assistant\n")
    for stage in ("bpo", "sft", "evaluate"):
        check_template(pc, stage=stage)
    for conv in (SINGLE, MULTI):
        base = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=False, chat_template=shape)
        for mode in Mode:
            assert render_prompt(pc, conv, mode) == base + "<|im_start|>assistant\n" + P.prefix(mode)
    hooked = hook_template(pc)
    for mode in Mode:
        got = pc.apply_chat_template(with_prefix(MULTI, P.prefix(mode)), tokenize=False, add_generation_prompt=True,
                                     chat_template=hooked)
        assert got == render_prompt(pc, MULTI, mode)
    saved = inference_template(pc)
    for mode in Mode:
        assert pc.apply_chat_template(MULTI, tokenize=False, add_generation_prompt=True, chat_template=saved,
                                      thinking_mode=mode.r4b_name) == render_prompt(pc, MULTI, mode)


# ---- bad input: one line naming the family and what to pass instead ----------------------------------------------


def test_unadaptable_templates_get_one_line_naming_the_family(tok):
    pc = copy.deepcopy(tok)
    # GLM-4-MoE's original template closes assistant turns with nothing: SFT could not teach it to stop.
    pc.chat_template = _template("glm4moe")
    check_template(pc, stage="evaluate")  # rendering prompts is fine
    with pytest.raises(ModeError) as e:
        check_template(pc, stage="sft")
    msg = str(e.value)
    assert "\n" not in msg and "glm4moe" in msg and "glm4moe_training.jinja" in msg and msg.startswith("SFT: ")
    # A template that pre-fills reasoning text.
    reasoning = _template("qwen3_5_think").replace("{{- '<think>\\n' }}", "{{- '<think>\\nLet me think. ' }}")
    assert reasoning != _template("qwen3_5_think")
    pc.chat_template = reasoning
    for stage in ("bpo", "sft", "evaluate", "curate"):
        with pytest.raises(ModeError, match=r"^" + stage.upper() + r": The Qwen3-style \(enable_thinking\) ChatML chat "
                                            r"template cannot be adapted.*pre-fills more than a think block.*Pass "):
            check_template(pc, stage=stage)


def test_prefix_marker_is_inert_in_the_model_template(tok):
    # A conversation carrying the marker renders exactly as without it in the saved template (no marker → no change).
    pc = copy.deepcopy(tok)
    pc.chat_template = _template("qwen3_5_think")
    saved = inference_template(pc)
    plain = pc.apply_chat_template(SINGLE, tokenize=False, add_generation_prompt=False, chat_template=saved)
    marked = pc.apply_chat_template(with_prefix(SINGLE, "<think>"), tokenize=False, add_generation_prompt=False,
                                    chat_template=saved)
    assert plain == marked and PREFIX_MARKER not in SINGLE[-1]


# ---- every recipe refuses an unadaptable template before any weights load ----------------------------------------

REASONING_PREFILL = (
    "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\nOkay, ' }}{%- endif %}")


@pytest.fixture(scope="module")
def bad_template_model(tiny_text_model, tmp_path_factory):
    """The tiny text model's config and tokenizer with a template that pre-fills reasoning text, and *no weights*:
    loading the model would fail, so a refusal proves the check ran first."""
    import shutil

    out = tmp_path_factory.mktemp("bad") / "model"
    out.mkdir()
    for name in os.listdir(tiny_text_model):
        if not name.endswith(".safetensors"):
            shutil.copy(os.path.join(tiny_text_model, name), out / name)
    (out / "chat_template.jinja").write_text(REASONING_PREFILL)
    return str(out)


def _load_recipe(name):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(f"r4b_{name}_recipe_t", root / "recipes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ONE_LINE = r"The plain ChatML chat template cannot be adapted to r4b-trl's thinking modes: .*pre-fills more than"


def test_recipes_refuse_before_loading_weights(bad_template_model, tmp_path, capsys, monkeypatch):
    from pathlib import Path

    from r4b_trl.data.io import write_jsonl

    root = Path(__file__).resolve().parents[1]
    cpu = ["--use_cpu", "true", "--bf16", "false", "--report_to", "none"]
    sft_data = root / "r4b_trl" / "data" / "samples" / "curated_sample"
    with pytest.raises(ModeError, match="^SFT: " + ONE_LINE):
        _load_recipe("sft").main(["--model_name_or_path", bad_template_model, "--dataset_name", str(sft_data),
                                  "--skip_image_rows", "true", "--output_dir", str(tmp_path / "s"), *cpu])
    from trl import ModelConfig, TrlParser

    from r4b_trl.bpo import BPOConfig
    from r4b_trl.bpo.recipe import BPOScriptArguments, main as bpo_main

    args = TrlParser((BPOScriptArguments, BPOConfig, ModelConfig)).parse_args_and_config(
        ["--config", str(root / "recipes/tiny/bpo/tiny.yaml"), "--model_name_or_path", bad_template_model,
         "--output_dir", str(tmp_path / "b"), "--dataset_name", str(root / "r4b_trl/data/samples/math_tiny.jsonl")])
    with pytest.raises(ModeError, match="^BPO: " + ONE_LINE):
        bpo_main(*args)
    from r4b_trl.evaluation import main as eval_main

    monkeypatch.chdir(root)  # the tiny eval config's benchmark paths are relative to the repository root
    with pytest.raises(SystemExit):
        eval_main(["--config", "recipes/tiny/eval/tiny.yaml", "--model", bad_template_model,
                   "--output_dir", str(tmp_path / "e"), "--limit", "2"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("[r4b-eval]")]
    assert len(err) == 1 and err[0].startswith("error: EVALUATE: The plain ChatML chat template"), err
    from r4b_trl.data.curation import CurationConfig, curate
    from r4b_trl.data.io import DataError

    write_jsonl(tmp_path / "q.jsonl", [{"id": "a", "question": "1+1?", "answer": "2"}])
    cfg = CurationConfig(dataset=str(tmp_path / "q.jsonl"), output_dir=str(tmp_path / "c"),
                         columns={"id": "id"}, annotator={"type": "transformers", "model": bad_template_model})
    with pytest.raises(DataError, match="^CURATE: " + ONE_LINE):
        curate(cfg, progress=False)
    from r4b_trl.chat import main as chat_main

    capsys.readouterr()
    assert chat_main(["--model", bad_template_model, "hi"]) == 2
    assert capsys.readouterr().err.startswith("error: CHAT: The plain ChatML chat template")
