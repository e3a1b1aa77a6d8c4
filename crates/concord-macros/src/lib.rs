//! # concord-macros — `#[concord::coordinate]`
//!
//! Turns an async fn into a coordinated step of an agent, the one-line
//! form of `space.coordinate(agent).lock(resource).run(..)`; use it through
//! the `concord` crate, which re-exports it and documents it with runnable
//! examples.
//!
//! This crate owns the syntax only: it never decides what a step does (the
//! generated code calls `concord::Space::coordinate`) and it reports every
//! misuse as a compile error pointing at the offending code, never a panic.

use proc_macro::TokenStream;

mod expand;

/// Makes an async fn a coordinated step (see `concord::coordinate`).
#[proc_macro_attribute]
pub fn coordinate(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::coordinate(attr.into(), item.into()).into()
}
