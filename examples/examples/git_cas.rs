//! Two agents on two nodes commit to one real git repository; a holder
//! whose lease expired has its compare-and-swap refused by git.
//!
//! Run with `cargo run -p concord-examples --example git_cas`.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), concord_examples::ExampleError> {
    let report = concord_examples::git_cas::run(Duration::from_millis(1_500)).await?;
    print!("{report}");
    Ok(())
}
