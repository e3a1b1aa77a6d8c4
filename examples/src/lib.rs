//! The logic of Concord's runnable examples (`examples/*.rs` are thin
//! `main`s that run a scenario and print its report), kept here so that
//! the tests in `tests/` run the same scenarios and check their claims.
//!
//! This crate owns example scenarios only; nothing here is API.

pub mod reconcile;
