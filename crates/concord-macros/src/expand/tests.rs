//! The expansion and its error messages, on token streams.
#![allow(clippy::unwrap_used)]

use quote::quote;

use super::coordinate;

fn expanded(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
    coordinate(attr, item).to_string()
}

#[test]
fn a_step_takes_the_space_and_runs_under_its_lock() {
    let out = expanded(
        quote!(agent = "researcher", lock = "openai_api", ttl_ms = 5000),
        quote!(
            async fn research(ctx: concord::StepContext, topic: String) -> Result<u32, String> {
                Ok(1)
            }
        ),
    );
    assert!(
        out.contains("async fn research (space : & :: concord :: Space"),
        "{out}"
    );
    assert!(out.contains("__concord_arg1 : String"), "{out}");
    assert!(out.contains(". coordinate (\"researcher\")"), "{out}");
    assert!(out.contains(". lock (\"openai_api\")"), "{out}");
    assert!(out.contains("from_millis (5000)"), "{out}");
    assert!(out.contains("StepError < String >"), "{out}");
    assert!(
        out.contains("__concord_step (ctx , __concord_arg1)"),
        "{out}"
    );
    assert!(!out.contains("compile_error"), "{out}");
}

#[test]
fn without_arguments_the_agent_is_the_fn_and_no_lock_is_taken() {
    let out = expanded(
        quote!(),
        quote!(
            async fn summarize(text: &str) -> Result<String, std::io::Error> {
                Ok(text.into())
            }
        ),
    );
    assert!(out.contains(". coordinate (\"summarize\")"), "{out}");
    assert!(!out.contains(". lock"), "{out}");
    assert!(
        out.contains("move | _ : :: concord :: StepContext"),
        "{out}"
    );
}

#[test]
fn misuse_is_a_compile_error_that_says_why() {
    let cases = [
        (
            quote!(),
            quote!(
                fn f() -> Result<(), ()> {
                    Ok(())
                }
            ),
            "async fn",
        ),
        (
            quote!(),
            quote!(
                async fn f(&self) -> Result<(), ()> {
                    Ok(())
                }
            ),
            "not a method",
        ),
        (
            quote!(),
            quote!(
                async fn f() -> u32 {
                    1
                }
            ),
            "Result<T, E>",
        ),
        (
            quote!(),
            quote!(
                async fn f() {}
            ),
            "Result<T, E>",
        ),
        (
            quote!(agent = "a", agent = "b"),
            quote!(
                async fn f() -> Result<(), ()> {
                    Ok(())
                }
            ),
            "given twice",
        ),
        (
            quote!(lock = 3),
            quote!(
                async fn f() -> Result<(), ()> {
                    Ok(())
                }
            ),
            "wrong type",
        ),
        (
            quote!(locks = "x"),
            quote!(
                async fn f() -> Result<(), ()> {
                    Ok(())
                }
            ),
            "unknown argument",
        ),
        (
            quote!(lock),
            quote!(
                async fn f() -> Result<(), ()> {
                    Ok(())
                }
            ),
            "expected `agent",
        ),
        (
            quote!(),
            quote!(
                async fn f(x: u8, ctx: StepContext) -> Result<(), ()> {
                    Ok(())
                }
            ),
            "first parameter",
        ),
    ];
    for (attr, item, why) in cases {
        let out = expanded(attr, item.clone());
        assert!(out.contains("compile_error"), "{item}: {out}");
        assert!(out.contains(why), "{item}: expected {why:?} in {out}");
    }
}
