//! The expansion of `#[coordinate(agent = "..", lock = "..", ttl_ms = ..)]`.
//!
//! ```text
//! #[coordinate(agent = "researcher", lock = "openai_api")]
//! async fn research(ctx: StepContext, topic: String) -> Result<T, E> { body }
//! ```
//! becomes
//! ```text
//! async fn research(space: &Space, topic: String) -> Result<T, StepError<E>> {
//!     async fn step(ctx: StepContext, topic: String) -> Result<T, E> { body }
//!     space.coordinate("researcher").lock("openai_api")
//!         .run(move |ctx| step(ctx, topic)).await
//! }
//! ```
//! The `StepContext` parameter is optional; without `agent` the fn's name is
//! the agent. This module owns that rewrite and its error messages only.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Expr, ExprLit, FnArg, GenericArgument, ItemFn, Lit, Meta, PathArguments, ReturnType, Token,
    Type,
};

/// The macro's arguments.
#[derive(Default)]
struct Args {
    agent: Option<syn::LitStr>,
    lock: Option<syn::LitStr>,
    ttl_ms: Option<syn::LitInt>,
}

/// Expands the attribute, or a `compile_error!` saying what is wrong.
pub(crate) fn coordinate(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr, item) {
        Ok(tokens) => tokens,
        Err(e) => e.to_compile_error(),
    }
}

fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args = parse_args(attr)?;
    let func: ItemFn = syn::parse2(item)?;
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "#[concord::coordinate] goes on an `async fn`",
        ));
    }
    if let Some(receiver) = sig.receiver() {
        return Err(syn::Error::new(
            receiver.span(),
            "#[concord::coordinate] goes on a free async fn, not a method",
        ));
    }
    let (ok, err) = result_types(&sig.output)?;
    let agent = args
        .agent
        .unwrap_or_else(|| syn::LitStr::new(&sig.ident.to_string(), sig.ident.span()));

    // The outer fn takes the space first, then the step's own parameters
    // but the context, under names of its own.
    let mut takes_context = false;
    let mut outer_params = Vec::new();
    let mut call_args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(param) = input else {
            continue;
        };
        if i == 0 && is_step_context(&param.ty) {
            takes_context = true;
            call_args.push(quote!(ctx));
            continue;
        }
        if is_step_context(&param.ty) {
            return Err(syn::Error::new(
                param.ty.span(),
                "the StepContext must be the first parameter",
            ));
        }
        let name = format_ident!("__concord_arg{}", i);
        let ty = &param.ty;
        outer_params.push(quote!(#name: #ty));
        call_args.push(quote!(#name));
    }

    let attrs = &func.attrs;
    let vis = &func.vis;
    let ident = &sig.ident;
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let turbofish = sig.generics.split_for_impl().1.as_turbofish();
    let mut inner_sig = sig.clone();
    inner_sig.ident = format_ident!("__concord_step");
    let block = &func.block;
    let lock = args.lock.map(|lock| quote!(.lock(#lock)));
    let ttl = args
        .ttl_ms
        .map(|ms| quote!(.ttl(::std::time::Duration::from_millis(#ms))));
    let context = if takes_context {
        quote!(ctx)
    } else {
        quote!(_)
    };
    let span = Span::call_site();
    Ok(quote_spanned! {span=>
        #(#attrs)*
        #vis async fn #ident #generics (
            space: &::concord::Space,
            #(#outer_params),*
        ) -> ::core::result::Result<#ok, ::concord::StepError<#err>> #where_clause {
            #[allow(clippy::needless_pass_by_value)]
            #inner_sig #block
            space
                .coordinate(#agent)
                #lock
                #ttl
                .run(move |#context: ::concord::StepContext| __concord_step #turbofish (#(#call_args),*))
                .await
        }
    })
}

fn parse_args(attr: TokenStream) -> syn::Result<Args> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
    let mut args = Args::default();
    for meta in metas {
        let Meta::NameValue(nv) = &meta else {
            return Err(syn::Error::new(
                meta.span(),
                "expected `agent = \"..\"`, `lock = \"..\"` or `ttl_ms = ..`",
            ));
        };
        let Expr::Lit(ExprLit { lit, .. }) = &nv.value else {
            return Err(syn::Error::new(nv.value.span(), "expected a literal"));
        };
        let key = nv.path.get_ident().map(ToString::to_string);
        match (key.as_deref(), lit) {
            (Some("agent"), Lit::Str(s)) if args.agent.is_none() => args.agent = Some(s.clone()),
            (Some("lock"), Lit::Str(s)) if args.lock.is_none() => args.lock = Some(s.clone()),
            (Some("ttl_ms"), Lit::Int(n)) if args.ttl_ms.is_none() => {
                args.ttl_ms = Some(n.clone());
            }
            (Some(key @ ("agent" | "lock" | "ttl_ms")), _) => {
                return Err(syn::Error::new(
                    nv.span(),
                    format!(
                        "`{key}` given twice, or of the wrong type (agent and lock are strings, ttl_ms an integer)"
                    ),
                ));
            }
            _ => {
                return Err(syn::Error::new(
                    nv.path.span(),
                    "unknown argument: expected `agent`, `lock` or `ttl_ms`",
                ));
            }
        }
    }
    Ok(args)
}

/// `T` and `E` of a return type `Result<T, E>`.
fn result_types(output: &ReturnType) -> syn::Result<(&Type, &Type)> {
    let wrong = |span| {
        syn::Error::new(
            span,
            "#[concord::coordinate] needs a fn returning `Result<T, E>` (T is the step's output, E its error)",
        )
    };
    let ReturnType::Type(_, ty) = output else {
        return Err(wrong(output.span()));
    };
    let Type::Path(path) = &**ty else {
        return Err(wrong(ty.span()));
    };
    let Some(last) = path.path.segments.last() else {
        return Err(wrong(ty.span()));
    };
    let PathArguments::AngleBracketed(generic) = &last.arguments else {
        return Err(wrong(ty.span()));
    };
    let types: Vec<&Type> = generic
        .args
        .iter()
        .filter_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    match (last.ident == "Result", types.as_slice()) {
        (true, [ok, err]) => Ok((ok, err)),
        _ => Err(wrong(ty.span())),
    }
}

/// Whether `ty` names `StepContext` (with or without its path).
fn is_step_context(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "StepContext"))
}

#[cfg(test)]
mod tests;
