//! The OpenAPI 3.1 description of the whole API, generated from the code so it cannot drift:
//! each handler's `#[utoipa::path(...)]` (method, path, parameters, body, answers) and the
//! wire types' `ToSchema` (procman-common's `openapi` feature; doc comments become
//! descriptions, serde's renames, flattening and skipped fields are followed). Served at
//! `GET /api/openapi.json`, checked in as `docs/openapi.json`.
//!
//! A new endpoint: `#[utoipa::path(...)]` on its handler and the handler in `paths(...)` of
//! [`ApiDoc`]; a new wire type: `#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]`.
//! The tests below fail until both are there and `docs/openapi.json` is regenerated
//! (`cargo xtask openapi`).
//!
//! What every route shares is added here, not on each handler: the refusals of the access
//! check ([`super::guard`]) and the bearer token of the TCP listener.
use axum::{http::header, response::IntoResponse};
use procman_common::api::ApiError;
use std::sync::OnceLock;
use utoipa::{
    openapi::{
        path::{Operation, PathItem},
        security::{Http, HttpAuthScheme, SecurityScheme},
        ContentBuilder, Ref, RefOr, ResponseBuilder,
    },
    Modify, OpenApi, ToSchema,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "procman",
        description = "procman-agent's HTTP API: processes, their history and tree, system \
            totals, events, slices and limits, placement, audit. It answers on the agent's \
            Unix socket (`/run/procman/procman.sock`; the caller's peer credentials decide \
            what it may do) and, when `[api] listen` is set, on TCP with a bearer token. \
            Every error is `{\"success\": false, \"error\": \"...\"}` (with `pid` on the \
            routes of one process)."
    ),
    paths(
        super::status,
        super::whoami,
        super::dashboard::index,
        super::dashboard::script,
        super::dashboard::style,
        super::events::events,
        super::processes::processes,
        super::processes::process,
        super::processes::process_tree,
        super::processes::process_history,
        super::processes::whole_tree,
        super::processes::system,
        super::audit_log,
        super::enforce::slices,
        super::enforce::ensure,
        super::enforce::remove,
        super::enforce::unlimit,
        super::enforce::freeze,
        super::enforce::thaw,
        super::enforce::limit,
        super::enforce::freeze_process,
        super::enforce::thaw_process,
        super::enforce::placement,
        super::metrics::metrics,
        super::policy::list,
        super::policy::explain,
        super::policy::test,
        super::services::list,
        super::services::one,
        super::services::start,
        super::services::stop,
        super::services::restart,
        super::services::create,
        super::services::remove,
        super::services::logs,
        super::actions::kill,
        super::actions::renice,
        super::actions::ionice,
        super::actions::kill_slice,
        super::actions::stream,
        document,
    ),
    components(schemas(ApiError)),
    modifiers(&Shared),
    security((), ("bearer" = [])),
    tags(
        (name = "status", description = "The agent itself."),
        (name = "processes", description = "The read side: processes, their history and tree."),
        (name = "system", description = "Host totals."),
        (name = "events", description = "The live event stream."),
        (name = "enforcement", description = "Slices, limits, freezing, placement (cgroup v2)."),
        (name = "audit", description = "The audit log of changes and refusals."),
        (name = "metrics", description = "Prometheus metrics."),
        (name = "policies", description = "`[[policy]]` rules: state, explain, dry test."),
        (name = "services", description = "Supervised services, their commands and logs."),
        (name = "actions", description = "Kill, renice, ionice (through pidfds), slice kill, the action stream."),
        (name = "meta", description = "This document."),
        (name = "dashboard", description = "The web dashboard (static files; no token needed)."),
    )
)]
pub struct ApiDoc;

/// The parts every route shares: the access check's refusals and the TCP bearer token.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "TCP only (`[api] listen`): `Authorization: Bearer TOKEN`, the token \
                         of `[api] token_file`. On the Unix socket no token is needed: the \
                         caller's peer credentials decide.",
                    ))
                    .build(),
            ),
        );
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(ApiError::name())))
                        .build(),
                )
                .build()
        };
        let shared = [
            (
                "401",
                "Unauthorized",
                "TCP only: the bearer token is missing or wrong.",
            ),
            (
                "403",
                "Forbidden",
                "The caller may not do this (`[[access]]` grants; reads are open to all).",
            ),
            (
                "500",
                "Internal",
                "The agent failed to answer (the message says why).",
            ),
        ];
        let too_large = (
            "413",
            "PayloadTooLarge",
            "The request body is larger than 64 KiB.",
        );
        for (_, name, description) in shared.iter().chain([&too_large]) {
            components
                .responses
                .insert(name.to_string(), RefOr::T(error(description)));
        }
        let response_ref =
            |name: &str| RefOr::Ref(Ref::new(format!("#/components/responses/{name}")));
        for item in doc.paths.paths.values_mut() {
            for (method, op) in operations(item) {
                if let Some(body) = op.request_body.as_mut() {
                    optional_body_is_absent_not_null(body);
                }
                let answers = &mut op.responses.responses;
                for (status, name, _) in &shared {
                    answers
                        .entry(status.to_string())
                        .or_insert_with(|| response_ref(name));
                }
                if method != "GET" {
                    answers
                        .entry(too_large.0.to_string())
                        .or_insert_with(|| response_ref(too_large.1));
                }
            }
        }
    }
}

/// An optional body (`Option<T>` in `request_body`) is left out, not sent as JSON `null`
/// (which the handlers refuse): its schema is `T`'s, the body is not `required`.
fn optional_body_is_absent_not_null(body: &mut utoipa::openapi::request_body::RequestBody) {
    if body.required == Some(utoipa::openapi::Required::True) {
        return;
    }
    for content in body.content.values_mut() {
        let Some(schema) = content.schema.as_mut() else {
            continue;
        };
        let Ok(serde_json::Value::Object(mut v)) = serde_json::to_value(&*schema) else {
            continue;
        };
        let Some(serde_json::Value::Array(one_of)) = v.remove("oneOf") else {
            continue;
        };
        let mut rest: Vec<_> = one_of
            .into_iter()
            .filter(|s| *s != serde_json::json!({"type": "null"}))
            .collect();
        if rest.len() == 1 {
            if let Ok(t) = serde_json::from_value(rest.remove(0)) {
                *schema = t;
            }
        }
    }
}

/// The operations of a path item with their methods (upper case).
fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("GET", item.get.as_mut()),
        ("PUT", item.put.as_mut()),
        ("POST", item.post.as_mut()),
        ("DELETE", item.delete.as_mut()),
        ("OPTIONS", item.options.as_mut()),
        ("HEAD", item.head.as_mut()),
        ("PATCH", item.patch.as_mut()),
        ("TRACE", item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// The document as served and checked in: pretty JSON with a final newline.
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut s = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        s.push('\n');
        s
    })
}

/// This document: the OpenAPI 3.1 description of the whole API.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document (as `docs/openapi.json`).", body = Object)))]
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::BTreeSet, path::PathBuf};

    /// How to bring `docs/openapi.json` up to date.
    const REGENERATE: &str =
        "cargo xtask openapi   (or: PROCMAN_BLESS=1 cargo test -p procman-agent openapi)";

    fn checked_in() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
    }

    /// The generated document is the checked-in one (`PROCMAN_BLESS=1` rewrites the file).
    #[test]
    fn openapi_document_matches_docs_openapi_json() {
        let path = checked_in();
        let now = document_json();
        if std::env::var_os("PROCMAN_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(&path, now).unwrap();
            return;
        }
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if old != now {
            let (line, (a, b)) = old
                .lines()
                .chain(std::iter::repeat(""))
                .zip(now.lines().chain(std::iter::repeat("")))
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .unwrap_or((0, ("", "")));
            panic!(
                "{} is not the API's current description (first difference at line {}:\n  \
                 checked in: {a}\n  generated:  {b}\n). Regenerate it with\n  {REGENERATE}\n\
                 and commit it.",
                path.display(),
                line + 1
            );
        }
    }

    #[test]
    fn openapi_info_names_procman_and_its_version() {
        let doc = ApiDoc::openapi();
        assert_eq!(doc.info.title, "procman");
        assert_eq!(doc.info.version, env!("CARGO_PKG_VERSION"));
        let v: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        assert!(
            v["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            v["openapi"]
        );
        assert_eq!(
            v["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }

    /// Every route the router registers (every `.route("PATH", method(handler)...)` in the
    /// `api` module's sources, so a new module is covered too) is described, and every
    /// described operation is routed.
    #[test]
    fn openapi_describes_every_route_and_only_routes() {
        let routed = routes_in_sources();
        assert!(
            routed.contains(&("GET".into(), "/api/openapi.json".into())),
            "{routed:?}"
        );
        let mut doc = ApiDoc::openapi();
        let described: BTreeSet<(String, String)> = doc
            .paths
            .paths
            .iter_mut()
            .flat_map(|(path, item)| {
                operations(item)
                    .into_iter()
                    .map(|(m, _)| (m.to_string(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let undescribed: Vec<_> = routed.difference(&described).collect();
        let unrouted: Vec<_> = described.difference(&routed).collect();
        assert!(
            undescribed.is_empty() && unrouted.is_empty(),
            "routes without a description in the OpenAPI document: {undescribed:?}\n\
             described but not routed: {unrouted:?}\n\
             Put #[utoipa::path(...)] on the handler, list it in `paths(...)` of \
             procman-agent/src/api/openapi.rs, then regenerate docs/openapi.json with\n  \
             {REGENERATE}"
        );
    }

    /// (METHOD, path) of every `.route(...)` call in `src/api/*.rs`, outside unit tests.
    fn routes_in_sources() -> BTreeSet<(String, String)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        files.sort();
        let mut out = BTreeSet::new();
        for f in files {
            let code = without_comments(&std::fs::read_to_string(&f).unwrap());
            // the router code, not the unit tests (at the end of the file, by convention)
            let code = code.split("#[cfg(test)]").next().unwrap_or_default();
            for unsupported in [".nest(", ".nest_service(", ".route_service("] {
                assert!(
                    !code.contains(unsupported),
                    "{}: `{unsupported}` is not understood by this test: register routes with \
                     `.route(\"/api/...\", method(handler))`",
                    f.display()
                );
            }
            for (path, methods) in route_calls(code) {
                let path = path.unwrap_or_else(|| {
                    panic!(
                        "{}: a `.route(` whose path is not a string literal: write the path \
                         literally, as the OpenAPI test reads it from the source",
                        f.display()
                    )
                });
                assert!(
                    !methods.is_empty(),
                    "{}: `.route({path:?}, ...)` with no get/post/put/delete/patch",
                    f.display()
                );
                for m in methods {
                    assert!(
                        m != "ANY",
                        "{}: `any(...)` on {path}: name the methods",
                        f.display()
                    );
                    out.insert((m, path.clone()));
                }
            }
        }
        out
    }

    /// The source without comments (string and char literals kept as they are).
    fn without_comments(src: &str) -> String {
        let b = src.as_bytes();
        let mut out = String::with_capacity(src.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                }
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                    i = end;
                }
                b'"' => {
                    let start = i;
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    i = (i + 1).min(b.len());
                    out.push_str(&src[start..i]);
                }
                b'r' if src[i..].starts_with("r#\"") => {
                    let end = src[i + 3..].find("\"#").map_or(b.len(), |e| i + 3 + e + 2);
                    out.push_str(&src[i..end]);
                    i = end;
                }
                // a char literal ('"', '\''); a lifetime ('a) is left alone
                b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                    let end = src[i + 1..]
                        .char_indices()
                        .skip(1)
                        .find(|(_, c)| *c == '\'')
                        .map_or(b.len(), |(e, _)| i + 1 + e + 1);
                    out.push_str(&src[i..end]);
                    i = end;
                }
                _ => {
                    let c = src[i..].chars().next().unwrap();
                    out.push(c);
                    i += c.len_utf8();
                }
            }
        }
        out
    }

    /// Each `.route(` call: its literal path (None when not a literal) and the methods of
    /// its method router (`get(h)`, `post(h).delete(h2)`, ...: calls at the top level of the
    /// arguments).
    fn route_calls(code: &str) -> Vec<(Option<String>, Vec<String>)> {
        const METHODS: [&str; 9] = [
            "get", "post", "put", "delete", "patch", "head", "options", "trace", "any",
        ];
        let mut out = Vec::new();
        for (at, _) in code.match_indices(".route(") {
            let args = &code[at + ".route(".len()..];
            // the arguments: up to the parenthesis that closes `.route(`
            let (mut depth, mut in_str, mut end) = (0i32, false, args.len());
            let bytes = args.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if in_str => i += 1,
                    b'"' => in_str = !in_str,
                    b'(' | b'[' | b'{' if !in_str => depth += 1,
                    b')' | b']' | b'}' if !in_str => {
                        if depth == 0 {
                            end = i;
                            break;
                        }
                        depth -= 1;
                    }
                    _ => {}
                }
                i += 1;
            }
            let args = &args[..end];
            let trimmed = args.trim_start();
            let path = trimmed
                .strip_prefix('"')
                .and_then(|r| r.split_once('"'))
                .map(|(p, _)| p.to_string());
            // identifiers directly followed by `(`, at depth 0 of the arguments
            let mut methods = Vec::new();
            let (mut depth, mut in_str) = (0i32, false);
            let bytes = args.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                let c = bytes[i];
                if c == b'\\' && in_str {
                    i += 2;
                    continue;
                }
                if c == b'"' {
                    in_str = !in_str;
                } else if !in_str && c == b'(' {
                    if depth == 0 {
                        let ident_start = args[..i]
                            .rfind(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                            .map_or(0, |p| p + 1);
                        let ident = &args[ident_start..i];
                        if METHODS.contains(&ident) {
                            methods.push(ident.to_ascii_uppercase());
                        }
                    }
                    depth += 1;
                } else if !in_str && c == b')' {
                    depth -= 1;
                }
                i += 1;
            }
            out.push((path, methods));
        }
        out
    }

    #[test]
    fn route_calls_are_read_from_formatted_source() {
        let code = without_comments(
            r#"Router::new()
                .route("/api/a", get(x::a)) // .route("/api/commented", get(c))
                .route(
                    "/api/b/{name}",
                    post(b).delete(|p: Path<String>| async move { get(p) }),
                )
                /* .route("/api/c", get(c)) */
                .route(PATH, get(d))
                .route_layer(mw)"#,
        );
        assert_eq!(
            route_calls(&code),
            vec![
                (Some("/api/a".into()), vec!["GET".into()]),
                (
                    Some("/api/b/{name}".into()),
                    vec!["POST".into(), "DELETE".into()]
                ),
                (None, vec!["GET".into()]),
            ]
        );
        assert_eq!(without_comments("let c = '\"'; // x\n"), "let c = '\"'; \n");
        assert_eq!(
            without_comments("fn f<'a>(s: &'a str) {}"),
            "fn f<'a>(s: &'a str) {}"
        );
    }
}
