"""The error convention: each bad input gives one ``error:`` line and exit 2 before any model weights load; ``--debug``
shows the traceback; row numbers are 1-based with the id; the top-level API; telemetry agrees with TRL."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from r4b_trl.errors import UsageError, cli, row_label, split_debug

ROOT = Path(__file__).resolve().parents[1]
CPU = ["--use_cpu", "true", "--bf16", "false", "--report_to", "none"]


def _recipe(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def broken_weights_model(tiny_text_model, tmp_path_factory):
    """The tiny model's config and tokenizer with weights that cannot be read: loading it fails loudly."""
    out = tmp_path_factory.mktemp("broken") / "model"
    shutil.copytree(tiny_text_model, out)
    for p in out.glob("*.safetensors"):
        p.write_bytes(b"not safetensors")
    return str(out)


@pytest.fixture
def no_model_load(monkeypatch):
    """Any weight loading through r4b-trl or transformers fails the test."""
    import transformers

    import r4b_trl.models

    calls = []

    def refuse(*a, **k):
        calls.append(a)
        raise AssertionError("model weights were loaded before the input was checked")

    monkeypatch.setattr(r4b_trl.models, "load_for_training", refuse)
    monkeypatch.setattr(r4b_trl.models, "load_model", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    return calls


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def _resume_cases(tmp_path):
    finished = tmp_path / "finished"  # a finished run's output_dir: the final model, no checkpoint
    finished.mkdir()
    (finished / "config.json").write_text("{}")
    return {
        "missing": (str(tmp_path / "nope"), "does not exist"),
        "empty": ("", "resume_from_checkpoint is empty"),
        "no checkpoint": (str(finished), "holds neither trainer_state.json nor checkpoint-* folders"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "no checkpoint"])
@pytest.mark.parametrize("recipe", ["bpo", "sft"])
def test_bad_resume_path_is_one_line_before_model_load(recipe, case, tmp_path, broken_weights_model, no_model_load,
                                                        capsys):
    path, expected = _resume_cases(tmp_path)[case]
    config = ROOT / "recipes" / "tiny" / recipe / "tiny.yaml"
    argv = ["--config", str(config), "--model_name_or_path", broken_weights_model, "--output_dir",
            str(tmp_path / "o"), "--resume_from_checkpoint", path, *CPU]
    rc = cli(_recipe(recipe).main, argv)
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and expected in line and "resume_from_checkpoint" in line
    assert no_model_load == []
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("recipe", ["bpo", "sft"])
def test_missing_model_path_is_one_line(recipe, tmp_path, no_model_load, capsys):
    argv = ["--config", str(ROOT / "recipes" / "tiny" / recipe / "tiny.yaml"), "--model_name_or_path",
            str(tmp_path / ".tiny_models" / "text"), "--output_dir", str(tmp_path / "o"), *CPU]
    assert cli(_recipe(recipe).main, argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "model_name_or_path: model path" in line and "does not exist" in line
    assert "python -m r4b_trl.tiny_models --out" in line and no_model_load == []


def test_debug_shows_the_traceback(tmp_path, broken_weights_model, no_model_load, monkeypatch):
    argv = ["--config", str(ROOT / "recipes" / "tiny" / "bpo" / "tiny.yaml"), "--model_name_or_path",
            broken_weights_model, "--resume_from_checkpoint", str(tmp_path / "nope"), *CPU]
    with pytest.raises(UsageError, match="does not exist"):
        cli(_recipe("bpo").main, argv + ["--debug"])
    monkeypatch.setenv("R4B_DEBUG", "1")
    with pytest.raises(UsageError, match="does not exist"):
        cli(_recipe("bpo").main, argv)
    # transformers' own --debug option (with a value) is left to TrainingArguments
    assert split_debug(["--debug", "underflow_overflow", "--x", "1"])[0] == ["--debug", "underflow_overflow", "--x", "1"]
    monkeypatch.delenv("R4B_DEBUG")
    assert split_debug(["--x", "1", "--debug"]) == (["--x", "1"], True)


def test_resume_accepts_a_run_folder_and_picks_its_last_checkpoint(tmp_path):
    from types import SimpleNamespace

    from r4b_trl.checkpoints import resolve_resume

    run = tmp_path / "run"
    for n in (2, 10, 9):
        (run / f"checkpoint-{n}").mkdir(parents=True)
        (run / f"checkpoint-{n}" / "trainer_state.json").write_text("{}")
    args = SimpleNamespace(output_dir=str(tmp_path / "other"), resume_from_checkpoint=str(run))
    assert resolve_resume(args) == str(run / "checkpoint-10")  # numeric order, not string order
    args.resume_from_checkpoint = str(run / "checkpoint-9")
    assert resolve_resume(args) == str(run / "checkpoint-9")
    args.resume_from_checkpoint, args.output_dir = "true", str(run)
    assert resolve_resume(args) == str(run / "checkpoint-10")
    args.resume_from_checkpoint = None
    assert resolve_resume(args) == str(run / "checkpoint-10") and resolve_resume(args, auto_resume=False) is None
    args.resume_from_checkpoint, args.output_dir = "true", str(tmp_path / "empty")
    with pytest.raises(UsageError, match="holds no checkpoint"):
        resolve_resume(args)


def test_bpo_recipe_bad_rows_are_one_line(tmp_path, broken_weights_model, no_model_load, capsys):
    data = tmp_path / "bad.jsonl"
    rows = [{"id": "a", "question": "1+1?", "answer": "2", "difficulty": "easy"},
            {"id": "b", "question": "2+2?", "answer": " ", "difficulty": "easy"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["--config", str(ROOT / "recipes" / "tiny" / "bpo" / "tiny.yaml"), "--model_name_or_path",
            broken_weights_model, "--output_dir", str(tmp_path / "o"), "--dataset_name", str(data), *CPU]
    assert cli(_recipe("bpo").main, argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "row 2 (id 'b'): the answer column 'answer' is empty" in line and ".." not in line
    assert no_model_load == []
    # an unknown config key is a config error: one line too
    (tmp_path / "typo.yaml").write_text((ROOT / "recipes" / "tiny" / "bpo" / "tiny.yaml").read_text()
                                        + "\nnum_generationz: 4\n")
    assert cli(_recipe("bpo").main, ["--config", str(tmp_path / "typo.yaml")]) == 2
    assert "num_generationz" in _one_error_line(capsys.readouterr().err)


def test_recipe_script_exits_2_without_traceback(tmp_path, broken_weights_model):
    """The real command line, in a fresh interpreter, with weights that would fail loudly if loaded."""
    finished = tmp_path / "finished"
    finished.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("R4B_DEBUG", None)
    res = subprocess.run([sys.executable, "recipes/sft.py", "--config", "recipes/tiny/sft/tiny.yaml",
                          "--model_name_or_path", broken_weights_model, "--output_dir", str(tmp_path / "o"),
                          "--resume_from_checkpoint", str(finished)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_error_line(res.stderr)
    assert str(finished) in line and "not a checkpoint" in line
    assert "safetensors" not in res.stderr.lower() and "missing keys" not in res.stderr.lower()


def test_bpo_trainer_checks_the_answer_column_before_loading(tmp_path, broken_weights_model):
    from datasets import Dataset

    from r4b_trl import BPOTrainer
    from r4b_trl.bpo import reward_columns
    from r4b_trl.data.io import DataError
    from r4b_trl.rewards import accuracy_reward
    from tests.bpo_helpers import bpo_args, length_reward

    args = bpo_args(tmp_path)
    prompt = [{"role": "user", "content": "1+1?"}]
    no_answers = Dataset.from_list([{"prompt": prompt, "prompt_id": "p1"}])
    # the model is a path whose weights cannot load: GRPOTrainer would fail loudly if it got that far
    with pytest.raises(DataError, match=r"no 'solution' column, which the reward function needs"):
        BPOTrainer(model=broken_weights_model, args=args, train_dataset=no_answers)
    empty = Dataset.from_list([{"prompt": prompt, "solution": "2", "prompt_id": "p1"},
                               {"prompt": prompt, "solution": "", "prompt_id": "p2"}])
    with pytest.raises(DataError, match=r"row 2 \(id 'p2'\): column 'solution' is empty"):
        BPOTrainer(model=broken_weights_model, reward_funcs=[accuracy_reward], args=args, train_dataset=empty)
    def by_prompt(completions, forced_mode, prompt_id, gold, weight=1.0, **kw):  # prompt_id: BPO supplies it
        return [0.0] * len(completions)

    assert reward_columns([accuracy_reward, length_reward, by_prompt, "org/reward-model"]) == ["solution", "gold"]


def test_row_labels_and_messages_end_in_one_period(tmp_path):
    from r4b_trl.data.formats import QuestionColumns, validate_question_rows
    from r4b_trl.data.io import DataError

    assert row_label(7, "q7") == "row 8 (id 'q7')" and row_label(0) == "row 1"
    (tmp_path / "bad.png").write_bytes(b"not a png")
    rows = [{"id": "a", "q": "x", "a": "1", "img": None}, {"id": "b", "q": "y", "a": "2", "img": "bad.png"}]
    cols = QuestionColumns(question="q", answer="a", image="img", id="id", image_base_dir=str(tmp_path))
    with pytest.raises(DataError) as e:
        validate_question_rows(rows, cols, source="d.jsonl", check_images=True)
    msg = str(e.value)
    assert msg.startswith("d.jsonl: row 2 (id 'b'), column 'img'[0]: the image cannot be decoded")
    assert msg.endswith(". Fix or drop these rows.") and ".." not in msg and "\n" not in msg


def test_sft_problems_are_one_line(tmp_path):
    from datasets import Dataset

    from r4b_trl.data.io import DataError
    from r4b_trl.sft import validate_sft_rows

    ds = Dataset.from_list([{"id": f"r{i}", "prompt": "q", "completion": "no think block"} for i in range(12)])
    with pytest.raises(DataError) as e:
        validate_sft_rows(ds, source="s.jsonl")
    msg = str(e.value)
    assert "\n" not in msg and "12 problem(s) in 12 rows" in msg and "row 1 (id 'r0')" in msg
    assert "row 10 (id 'r9')" in msg and "row 11" not in msg and "(12 in all)" in msg


def test_zero_spread_groups_agree_with_trl():
    import math

    import torch
    from trl.trainer.utils import nanstd

    from r4b_trl.bpo.telemetry import RolloutRecord, step_metrics

    nan = float("nan")
    groups = [[nan, nan, nan, nan], [1.0, nan, nan, nan], [1.0, 1.0, nan, 1.0], [0.0, 1.0, 1.0, 0.0],
              [0.5, 0.5, 0.5, 0.5]]
    rewards = [r for g in groups for r in g]
    records = [RolloutRecord("p", "thinking" if i % 4 < 2 else "non_thinking", "thinking", r, None, 3, False, "x")
               for i, r in enumerate(rewards)]
    ours = step_metrics(records, num_generations=4)["bpo/frac_zero_spread_groups"]
    # TRL's own computation (GRPOTrainer._generate_and_score_completions, scale_rewards="group")
    std = nanstd(torch.tensor(rewards).view(-1, 4), dim=1).repeat_interleave(4)
    trl_frac = torch.isclose(std, torch.zeros_like(std)).float().mean().item()
    assert math.isclose(ours, trl_frac, rel_tol=1e-6) and math.isclose(ours, 2 / 5)
    all_none = [RolloutRecord("p", "thinking", "thinking", nan, None, 3, False, "x") for _ in range(8)]
    assert step_metrics(all_none, num_generations=4)["bpo/frac_zero_spread_groups"] == 0.0


def test_top_level_api_is_lazy():
    import r4b_trl
    from r4b_trl.bpo import BPOConfig as config_cls
    from r4b_trl.bpo import BPOTrainer as trainer_cls

    from r4b_trl import BPOConfig, BPOTrainer, Mode, accuracy_reward, render_prompt  # noqa: F401

    assert BPOConfig is config_cls and BPOTrainer is trainer_cls and Mode.AUTO.value == "auto"
    assert all(getattr(r4b_trl, name) is not None for name in r4b_trl.__all__)
    with pytest.raises(AttributeError):
        r4b_trl.NoSuchName  # noqa: B018
    code = "import sys, r4b_trl; print(sorted(m for m in ('trl', 'r4b_trl.bpo', 'r4b_trl.sft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_mix_names_the_row_without_a_mode(tmp_path, capsys):
    from r4b_trl.data.io import write_jsonl

    ok = {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}],
          "mode": "non_thinking"}
    write_jsonl(tmp_path / "c.jsonl", [{"id": "a", **ok}, {"id": "b", "prompt": ok["prompt"],
                                                            "completion": ok["completion"]}])
    (tmp_path / "mix.yaml").write_text(f"sources:\n  - path: {tmp_path / 'c.jsonl'}\noutput_dir: {tmp_path / 'o'}\n")
    spec = importlib.util.spec_from_file_location("mix_cli", ROOT / "data_prep" / "mix.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--config", str(tmp_path / "mix.yaml")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "row 2 (id 'b') has no 'mode' field" in line and "data_prep/curate.py" in line
