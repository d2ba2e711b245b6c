//! Cross-crate end-to-end scenarios. The scenarios live in `tests/`, one binary per feature area.
