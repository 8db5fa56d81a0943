"""Chat templates shipped with r4b-trl.

* ``DEFAULT_CHAT_TEMPLATE``: ChatML with images and R-4B's ``thinking_mode`` switch, for models that have no
  template. Its ``{% generation %}`` markers make SFT's assistant-only loss cover the whole assistant turn.
* ``QWEN3_CHAT_TEMPLATE``: the official Qwen3 template as shipped inside TRL (byte-identical, so TRL
  recognises it and swaps in its training variant for ``assistant_only_loss``).
"""

from importlib import resources

DEFAULT_CHAT_TEMPLATE = resources.files(__name__).joinpath("r4b_default.jinja").read_text(encoding="utf-8")


def _trl_template(name: str) -> str:
    return resources.files("trl").joinpath("chat_templates", name).read_text(encoding="utf-8")


def qwen3_chat_template() -> str:
    return _trl_template("qwen3.jinja")


def qwen3_training_chat_template() -> str:
    return _trl_template("qwen3_training.jinja")
