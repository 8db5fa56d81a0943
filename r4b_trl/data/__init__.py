"""Data: reading and validating rows, curation, mixing, and the demo's synthetic task."""

from .io import DataError, images_of, load_image, load_table, read_jsonl, require_columns, user_prompt, write_jsonl  # noqa: F401
