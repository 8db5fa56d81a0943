"""r4b-trl: auto-thinking training (bi-mode annealing + BPO) on Hugging Face TRL."""

__version__ = "0.1.0"

from .modes import Mode, ModeError, ModePrefixes, get_prefixes, parse_response, render_prompt, resolve_mode  # noqa: E402,F401


def _register_processors() -> None:
    # Image-only Qwen-VL processors (no torchvision needed) must be known to AutoProcessor before loading a
    # tiny vision model; registering is cheap once transformers is imported.
    try:
        from .tiny_models import register_image_only_processors

        register_image_only_processors()
    except Exception:  # pragma: no cover - transformers missing or too old: loading will say so
        pass


_register_processors()
