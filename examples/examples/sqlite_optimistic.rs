//! Agents on three nodes update SQLite rows with version checks and
//! fencing tokens: no update is lost, and a stale token is refused.
//!
//! Run with `cargo run -p concord-examples --example sqlite_optimistic`.

#[tokio::main]
async fn main() -> Result<(), concord_examples::ExampleError> {
    let config = concord_examples::sqlite_optimistic::Config::default();
    let report = concord_examples::sqlite_optimistic::run(config).await?;
    print!("{report}");
    Ok(())
}
