//! [`Executor`]: what runs an external operation, under its lease's
//! fencing token.
//!
//! This module owns the trait only; it never takes a lease or records an
//! outcome (the [`super::Coordinator`] does both around it).

use std::future::Future;

use concord_lease::FencingToken;
use futures::future::BoxFuture;
use serde_json::Value;

use super::Operation;

/// Runs one external operation (a git push, an SQL update, an API call)
/// with the fencing token of the lease it runs under: pass the token to the
/// outside system, so that it can refuse a stale holder.
///
/// An async closure `Fn(Operation, FencingToken) -> Result<Value, String>`
/// is one; a struct implements it for state of its own:
///
/// ```
/// use concord::FencingToken;
/// use concord::coordinator::{Executor, Operation};
/// use futures::FutureExt;
/// use futures::future::BoxFuture;
///
/// struct Echo;
///
/// impl Executor for Echo {
///     fn execute(
///         &self,
///         op: Operation,
///         token: FencingToken,
///     ) -> BoxFuture<'static, Result<serde_json::Value, String>> {
///         async move { Ok(serde_json::json!({"id": op.id, "token": token.get()})) }.boxed()
///     }
/// }
///
/// let op = Operation {
///     id: "op-1".into(),
///     kind: "echo".into(),
///     resource: Some("db".into()),
///     payload: Default::default(),
/// };
/// let result = futures::executor::block_on(Echo.execute(op, FencingToken::new(7)));
/// assert_eq!(result.unwrap()["token"], 7);
/// ```
pub trait Executor: Send + Sync + 'static {
    /// Runs `op` under `token`; the `Ok` value is recorded as the outcome,
    /// the `Err` text as the failure.
    fn execute(
        &self,
        op: Operation,
        token: FencingToken,
    ) -> BoxFuture<'static, Result<Value, String>>;
}

impl<F, Fut> Executor for F
where
    F: Fn(Operation, FencingToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    fn execute(
        &self,
        op: Operation,
        token: FencingToken,
    ) -> BoxFuture<'static, Result<Value, String>> {
        Box::pin(self(op, token))
    }
}
