//! Cross-crate and multi-process tests of Concord; the tests live in `tests/`.
