"""Shared fixtures: offline tiny models are built once per test session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `make test-gpu` on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory):
    from r4b_trl.tiny_models import build_text_model

    return str(build_text_model(tmp_path_factory.mktemp("tiny") / "text"))


@pytest.fixture(scope="session")
def tiny_vision_model(tmp_path_factory):
    from r4b_trl.tiny_models import build_vision_model

    return str(build_vision_model(tmp_path_factory.mktemp("tiny") / "vision"))


@pytest.fixture(scope="session")
def text_tokenizer(tiny_text_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_text_model)


@pytest.fixture(scope="session")
def vision_processor(tiny_vision_model):
    from transformers import AutoProcessor

    import r4b_trl  # noqa: F401  (registers the image-only processor)

    return AutoProcessor.from_pretrained(tiny_vision_model)


@pytest.fixture
def red_image():
    from PIL import Image

    return Image.new("RGB", (40, 30), (200, 10, 10))
