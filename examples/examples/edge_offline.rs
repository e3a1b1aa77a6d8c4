//! An edge node cut off from the hub keeps writing, rejoins, converges, and
//! its conflicting intent is resolved by the channel's policy.
//!
//! Run with `cargo run -p concord-examples --example edge_offline`.

#[tokio::main]
async fn main() -> Result<(), concord_examples::ExampleError> {
    let report = concord_examples::edge_offline::run().await?;
    print!("{report}");
    Ok(())
}
