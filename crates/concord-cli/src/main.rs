//! The `concord` binary; everything lives in the `concord_cli` library.

fn main() {
    concord_cli::main();
}
