//! Runnable examples of Concord live in `examples/`; this library is empty.
