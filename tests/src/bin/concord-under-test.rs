//! The `concord` program built inside this package, so that its tests get
//! it from `CARGO_BIN_EXE_concord-under-test`: built by the same cargo
//! invocation, with the same features, before any test runs.

fn main() {
    concord_cli::main();
}
