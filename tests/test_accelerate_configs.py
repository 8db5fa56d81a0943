"""The shipped Accelerate configs parse with accelerate's own loader, pass `accelerate launch`'s validation, and
produce the intended DeepSpeed / FSDP plugins (all on CPU: nothing is launched)."""

from pathlib import Path

import pytest

CONFIG_DIR = Path(__file__).resolve().parents[1] / "accelerate_configs"

# name -> (distributed_type, num_machines, num_processes, zero_stage or None, fsdp_version or None)
EXPECTED = {
    "single_gpu": ("NO", 1, 1, None, None),
    "multi_gpu": ("MULTI_GPU", 1, 8, None, None),
    "zero2": ("DEEPSPEED", 1, 8, 2, None),
    "zero3": ("DEEPSPEED", 1, 8, 3, None),
    "fsdp2": ("FSDP", 1, 8, None, 2),
    "multi_node": ("DEEPSPEED", 2, 16, 3, None),
}


def test_every_config_is_covered():
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_with_accelerate(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    dist, machines, procs, zero, fsdp = EXPECTED[name]
    cfg = load_config_from_file(str(CONFIG_DIR / f"{name}.yaml"))
    assert isinstance(cfg, ClusterConfig)
    assert cfg.distributed_type.value == dist
    assert cfg.num_machines == machines
    assert cfg.num_processes == procs
    assert cfg.use_cpu is False
    # Precision is left to the recipe (TrainingArguments bf16/fp16), see the comment in each file.
    assert cfg.mixed_precision == "no"
    if zero is not None:
        assert cfg.deepspeed_config["zero_stage"] == zero
        # Left to the recipe: DeepSpeed takes "auto" and transformers fills it from TrainingArguments.
        assert "gradient_accumulation_steps" not in cfg.deepspeed_config
        assert "gradient_clipping" not in cfg.deepspeed_config
    else:
        assert cfg.deepspeed_config == {}
    if fsdp is not None:
        assert cfg.fsdp_config["fsdp_version"] == fsdp
    else:
        assert cfg.fsdp_config == {}


def _launch_env(name, monkeypatch):
    """Run `accelerate launch`'s own argument validation on the config and return the environment it would give
    the training processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(CONFIG_DIR / f"{name}.yaml"), "recipes/bpo.py", "--config", "x.yaml"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:
        # what accelerate.commands.launch.launch_command does before calling the DeepSpeed launcher
        fields = list(defaults.deepspeed_config.keys()) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    elif args.use_fsdp or args.multi_gpu:
        env = prepare_multi_gpu_env(args)
    else:
        env = {}
    for key, value in env.items():
        if key.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.setenv(key, value)
    return args, env


@pytest.mark.parametrize("name", ["zero2", "zero3", "multi_node"])
def test_deepspeed_plugin_from_launch_env(name, monkeypatch):
    from accelerate.utils import DeepSpeedPlugin

    args, env = _launch_env(name, monkeypatch)
    assert args.use_deepspeed
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in env
    plugin = DeepSpeedPlugin()
    zero = EXPECTED[name][3]
    assert plugin.zero_stage == zero
    assert plugin.deepspeed_config["zero_optimization"]["stage"] == zero
    # filled from the recipe's TrainingArguments at run time
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"
    assert plugin.deepspeed_config["gradient_clipping"] == "auto"
    if zero == 3:
        assert plugin.zero3_init_flag is True
        assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_multi_node_placeholder_and_launch_args(monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(CONFIG_DIR / "multi_node.yaml"))
    assert cfg.main_process_ip == "MAIN_NODE_HOSTNAME"  # documented placeholder, overridden by the launcher
    assert cfg.main_process_port == 29500
    assert cfg.deepspeed_config["deepspeed_multinode_launcher"] == "standard"
    text = (CONFIG_DIR / "multi_node.yaml").read_text()
    assert "PLACEHOLDER" in text and "--main_process_ip" in text
    args, _ = _launch_env("multi_node", monkeypatch)
    assert args.num_machines == 2 and args.num_processes == 16


def test_fsdp2_plugin_from_launch_env(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin

    args, env = _launch_env("fsdp2", monkeypatch)
    assert args.use_fsdp
    assert env["FSDP_VERSION"] == "2"
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True
    assert plugin.cpu_ram_efficient_loading is True
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    assert plugin.activation_checkpointing is False


def test_multi_gpu_launch_env(monkeypatch):
    args, env = _launch_env("multi_gpu", monkeypatch)
    assert args.multi_gpu and args.num_processes == 8
    assert "ACCELERATE_USE_DEEPSPEED" not in env and "ACCELERATE_USE_FSDP" not in env


def test_single_gpu_launch_args(monkeypatch):
    args, _ = _launch_env("single_gpu", monkeypatch)
    assert not (args.multi_gpu or args.use_deepspeed or args.use_fsdp)
    assert args.num_processes == 1
