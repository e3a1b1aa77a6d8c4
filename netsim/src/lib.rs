//! Deterministic simulator for Concord (work in progress).
