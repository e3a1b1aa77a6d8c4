//! Researcher, analyzer and summarizer chained with `space.when(..)` across
//! three nodes, calling a fake model on loopback.
//!
//! Run with `cargo run -p concord-examples --example agent_pipeline`.

#[tokio::main]
async fn main() -> Result<(), concord_examples::ExampleError> {
    let report = concord_examples::agent_pipeline::run("leases with fencing tokens").await?;
    print!("{report}");
    Ok(())
}
