//! The OpenAPI document (`src/api/openapi.json`) against the real server: `/openapi.json` serves
//! exactly that file, the document lists exactly the routes the server has (its route table, and
//! what probing each path with each method shows), and the server's real answers match it: each
//! status is documented for its operation, each documented header is there and well-formed, and
//! each body validates against the response's schema (JSON Schema 2020-12).

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DOC_FILE: &[u8] = include_bytes!("../src/api/openapi.json");
/// The keys of a path item that are operations.
const OPERATIONS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// Methods every path is probed with.
const PROBED: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
const SECRET: &str = "an-openapi-secret-of-at-least-32-bytes";

fn doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_slice(DOC_FILE).expect("the document is JSON"))
}

/// What a local `$ref` (`#/components/...`) names; anything else as it is.
fn resolve(v: &Value) -> &Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = r
                .strip_prefix('#')
                .and_then(|p| doc().pointer(p))
                .unwrap_or_else(|| panic!("unresolved $ref {r}"));
            resolve(target)
        }
        None => v,
    }
}

/// Compiles one of the document's schemas. Its `$ref`s point into the document's components, so
/// it is compiled as a subschema of a root that holds them.
fn validator(schema: &Value) -> jsonschema::Validator {
    let root = json!({"components": doc()["components"], "allOf": [schema]});
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}: {schema}"))
}

fn violations(schema: &Value, instance: &Value) -> Vec<String> {
    validator(schema)
        .iter_errors(instance)
        .map(|e| format!("{} (at {})", e, e.instance_path()))
        .collect()
}

/// A response of `components/responses`, which must exist.
fn component_response(name: &str) -> &'static Value {
    let r = &doc()["components"]["responses"][name];
    assert!(r.is_object(), "components/responses/{name} is missing");
    r
}

fn operation(template: &str, method: &str) -> &'static Value {
    let op = &doc()["paths"][template][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {template} is not documented");
    op
}

/// Checks a real answer to `method template` against the document and returns it.
fn conforms(template: &str, method: &str, r: Reply) -> Reply {
    let responses = &operation(template, method)["responses"];
    let what = format!(
        "{method} {template} -> {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let documented = responses
        .get(r.status.to_string())
        .unwrap_or_else(|| panic!("undocumented status: {what}"));
    matches_response(resolve(documented), &r, &what);
    r
}

/// Documented headers present (when required) and valid; the body as the response's content says.
fn matches_response(response: &Value, r: &Reply, what: &str) {
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        let header = resolve(header);
        let Some(value) = r.header(name) else {
            assert_ne!(header["required"], true, "{what}: no {name} header");
            continue;
        };
        let schema = &header["schema"];
        let value = match value.parse::<i64>() {
            Ok(n) if schema["type"] == "integer" => Value::from(n),
            _ => Value::from(value),
        };
        let bad = violations(schema, &value);
        assert!(bad.is_empty(), "{what}: header {name} {value}: {bad:?}");
    }
    match response["content"].get("application/json") {
        None => assert!(
            r.body.is_empty(),
            "{what}: a body the document does not have"
        ),
        Some(media) => {
            let ct = r.header("content-type").unwrap_or("");
            assert!(ct.starts_with("application/json"), "{what}: {ct}");
            let body: Value = serde_json::from_slice(&r.body)
                .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
            let bad = violations(&media["schema"], &body);
            assert!(bad.is_empty(), "{what}: {bad:#?}");
        }
    }
}

/// One request on a fresh connection: the request line, `Host`, the given header lines, a
/// `Content-Length` when there is a body, and the body.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if let Some(b) = body {
        req.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body.unwrap_or_default());
    raw_call(addr, method, &req)
}

fn raw_call(addr: SocketAddr, method: &str, bytes: &[u8]) -> Reply {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    read_reply_to(&mut s, method).unwrap()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A JSON request whose answer must have status `want` and conform to the document.
fn expect(
    addr: SocketAddr,
    template: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    want: u16,
) -> Reply {
    expect_with(addr, template, method, path, &[JSON], body, want)
}

fn expect_with(
    addr: SocketAddr,
    template: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    want: u16,
) -> Reply {
    let r = call(addr, method, path, headers, body.map(str::as_bytes));
    assert_eq!(
        r.status,
        want,
        "{method} {path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    conforms(template, method, r)
}

fn auction_body(seller: i64, extra: &str) -> String {
    format!(r#"{{"title":"lot","seller_id":{seller},"start_price":"10.00"{extra}}}"#)
}

fn create(addr: SocketAddr, seller: i64, extra: &str) -> i64 {
    let body = auction_body(seller, extra);
    let r = expect(
        addr,
        "/api/auctions",
        "POST",
        "/api/auctions",
        Some(&body),
        201,
    );
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/auctions/{id}").as_str())
    );
    id
}

/// The (path template, METHOD) pairs the document describes.
fn documented_operations() -> BTreeSet<(String, String)> {
    doc()["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| OPERATIONS.contains(&k.as_str()))
                .map(move |m| (path.clone(), m.to_ascii_uppercase()))
        })
        .collect()
}

#[test]
fn the_served_document_is_the_one_in_the_repo() {
    let addr = shared();
    let r = call(addr, "GET", "/openapi.json", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.body == DOC_FILE,
        "/openapi.json differs from src/api/openapi.json"
    );
    let openapi = doc()["openapi"].as_str().unwrap();
    assert!(openapi.starts_with("3.1."), "{openapi}");
    conforms("/openapi.json", "GET", r);
    let r = conforms(
        "/openapi.json",
        "HEAD",
        call(addr, "HEAD", "/openapi.json", &[], None),
    );
    assert_eq!(r.status, 200);
    let len = DOC_FILE.len().to_string();
    assert_eq!(r.header("content-length"), Some(len.as_str()));
}

#[test]
fn the_document_lists_exactly_the_routes_of_the_router() {
    let routed: BTreeSet<(String, String)> = gavel::api::ROUTES
        .iter()
        .flat_map(|r| r.methods().map(|m| (r.path.to_owned(), m.to_owned())))
        .collect();
    assert_eq!(documented_operations(), routed);
}

/// Every `$ref` in the document, as (where, target).
fn refs<'a>(v: &'a Value, at: &str, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push((at.to_owned(), x.as_str().unwrap_or("")));
                } else {
                    refs(x, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| refs(x, &format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// Every schema of the document: the components' and those inline under a `schema` key.
fn schemas<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "schema" {
                    out.push(x);
                } else {
                    schemas(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| schemas(x, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_well_formed() {
    let d = doc();
    assert!(d["info"]["title"].is_string() && d["info"]["version"].is_string());

    let mut all = Vec::new();
    refs(d, "#", &mut all);
    assert!(!all.is_empty());
    for (at, target) in &all {
        let found = target.strip_prefix('#').and_then(|p| d.pointer(p));
        assert!(found.is_some(), "{at}: $ref {target} resolves to nothing");
    }

    let mut found = Vec::new();
    schemas(&d["paths"], &mut found);
    schemas(&d["components"]["parameters"], &mut found);
    schemas(&d["components"]["headers"], &mut found);
    schemas(&d["components"]["responses"], &mut found);
    found.extend(d["components"]["schemas"].as_object().unwrap().values());
    for s in found {
        if let Err(e) = jsonschema::draft202012::meta::validate(s) {
            panic!("not a JSON Schema 2020-12 schema ({e}): {s}");
        }
        validator(s);
    }

    let mut ids = BTreeSet::new();
    for (path, method) in documented_operations() {
        let op = operation(&path, &method);
        let id = op["operationId"].as_str().unwrap();
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        let what = format!("{method} {path}");
        for (status, response) in op["responses"].as_object().unwrap() {
            let response = resolve(response);
            let x = resolve(&response["headers"]["X-Request-Id"]);
            assert_eq!(x["required"], true, "{what} {status}: X-Request-Id");
            if method == "HEAD" {
                assert!(response.get("content").is_none(), "{what} {status}");
            }
        }
        // Path parameters: exactly the template's names.
        let in_template: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        let item = &d["paths"][&path];
        let declared: BTreeSet<String> = item["parameters"]
            .as_array()
            .into_iter()
            .chain(op["parameters"].as_array())
            .flatten()
            .map(resolve)
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(in_template, declared, "{what}");
        if method == "POST" {
            assert_eq!(op["security"], json!([{"bearerAuth": []}]), "{what}");
            for status in ["201", "400", "401", "413", "415", "422", "503"] {
                assert!(op["responses"].get(status).is_some(), "{what}: {status}");
            }
            let params: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| resolve(p)["name"].as_str().unwrap())
                .collect();
            assert!(params.contains(&"Idempotency-Key"), "{what}");
        }
    }
    let scheme = &d["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"], &scheme["bearerFormat"]),
        (&json!("http"), &json!("bearer"), &json!("JWT"))
    );
}

/// The error codes of the document are those of the contract's table plus the HTTP-layer ones
/// the README names.
/// `| 409 | `bid_too_low` | ...` rows of an error-code table: (status, code).
fn error_code_rows(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let status_cell = cells.get(1)?;
            let code = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            (status_cell.len() == 3 && status_cell.bytes().all(|b| b.is_ascii_digit()))
                .then(|| ((*status_cell).to_owned(), code.to_owned()))
        })
        .collect()
}

/// The repository's own reference (docs/API.md) lists exactly the codes the OpenAPI document
/// does; where the published contract sits beside the checkout, every one of its codes is there
/// with the same status.
#[test]
fn the_error_codes_are_the_contracts() {
    let documented: BTreeSet<String> = doc()["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md"))
        .expect("docs/API.md");
    let rows = error_code_rows(&reference);
    let codes: BTreeSet<String> = rows.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(rows.len(), codes.len(), "a code listed twice: {rows:?}");
    assert_eq!(documented, codes);
    let contract = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/API.md");
    let Ok(text) = std::fs::read_to_string(contract) else {
        eprintln!("{contract} not found: docs/API.md is not compared with it");
        return;
    };
    let published = error_code_rows(&text);
    assert!(published.len() >= 15, "{published:?}");
    let missing: Vec<_> = published.difference(&rows).collect();
    assert!(missing.is_empty(), "docs/API.md lacks {missing:?}");
}

/// A concrete path for a template, its IDs filled in with `id`.
fn fill(template: &str, id: i64) -> String {
    template
        .split('/')
        .map(|s| {
            if s.starts_with('{') {
                id.to_string()
            } else {
                s.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn each_path_serves_exactly_its_documented_methods() {
    let addr = shared();
    let auction = create(addr, 901, r#","duration_seconds":3600"#);
    let ops = documented_operations();
    let paths: BTreeSet<&String> = ops.iter().map(|(p, _)| p).collect();
    for template in paths {
        let path = fill(template, auction);
        let allowed: BTreeSet<&str> = ops
            .iter()
            .filter(|(p, _)| p == template)
            .map(|(_, m)| m.as_str())
            .collect();
        for method in PROBED {
            let body = match template.as_str() {
                "/api/bids" => {
                    format!(r#"{{"auction_id":{auction},"amount":"10","bidder_id":902}}"#)
                }
                _ => auction_body(901, r#","duration_seconds":3600"#),
            };
            let body = (*method == "POST").then_some(body.as_bytes());
            let r = call(addr, method, &path, &[JSON], body);
            let what = format!("{method} {path}: {}", r.status);
            if allowed.contains(method) {
                assert!(![404, 405].contains(&r.status), "{what}");
                conforms(template, method, r);
            } else {
                assert_eq!(r.status, 405, "{what}");
                let allow: BTreeSet<&str> = r.header("allow").unwrap().split(", ").collect();
                assert_eq!(allow, allowed, "{what}");
                let name = if *method == "HEAD" {
                    "MethodNotAllowedHead"
                } else {
                    "MethodNotAllowed"
                };
                matches_response(component_response(name), &r, &what);
            }
        }
    }
    let not_found = component_response("NotFound");
    for path in [
        "/",
        "/api",
        "/api/auction",
        "/api/auctions/",
        "/api/auctions/0",
        "/api/auctions/abc",
        "/api/auctions/1e3",
        "/api/bids/1/x",
        "/health/",
        "/openapi.yaml",
        "/docs",
    ] {
        for method in ["GET", "POST", "DELETE"] {
            let r = call(addr, method, path, &[], None);
            let what = format!("{method} {path}: {}", r.status);
            assert_eq!(r.status, 404, "{what}");
            matches_response(not_found, &r, &what);
        }
    }
}

#[test]
fn real_answers_match_the_document() {
    let addr = shared();
    let seller = 911;
    let closing = create(addr, seller, r#","duration_seconds":1"#);
    let closing_at = Instant::now() + Duration::from_millis(1100);

    // Probes.
    for m in ["GET", "HEAD"] {
        expect(addr, "/health", m, "/health", None, 200);
        let r = expect(addr, "/ready", m, "/ready", None, 200);
        if m == "GET" {
            assert_eq!(r.json()["redis"], "disabled");
        }
        expect(addr, "/openapi.json", m, "/openapi.json", None, 200);
    }

    // Auctions.
    let a = "/api/auctions";
    let auction = create(
        addr,
        seller,
        r#","min_increment":5,"duration_seconds":3600,"extension_seconds":30"#,
    );
    create(
        addr,
        seller,
        r#","starts_at":"2099-12-31T00:00:00z","ends_at":"2100-01-01T00:00:00+02:00","duration_seconds":null"#,
    );
    let scheduled = create(
        addr,
        seller,
        r#","starts_at":"2100-01-01T00:00:00Z","duration_seconds":60"#,
    );
    for bad in [
        "{",
        "[]",
        "",
        r#"{"title":"a","title":"b"}"#,
        r#"{"seller_id":1,"start_price":"1","duration_seconds":5}"#,
        r#"{"title":"x","seller_id":"1","start_price":"1","duration_seconds":5}"#,
        r#"{"title":"x","seller_id":1,"start_price":"1.234","duration_seconds":5}"#,
        r#"{"title":"x","seller_id":1,"start_price":"1","duration_seconds":5,"ends_at":"2100-01-01T00:00:00Z"}"#,
        r#"{"title":"x","seller_id":1,"start_price":"1"}"#,
        r#"{"title":"x","seller_id":1,"start_price":"1","duration_seconds":5,"extension_seconds":3601}"#,
    ] {
        let r = expect(addr, a, "POST", a, Some(bad), 400);
        let code = r.code();
        assert!(code == "invalid_json" || code == "invalid_field", "{bad}");
    }
    let ok = auction_body(seller, r#","duration_seconds":60"#);
    let text = [("Content-Type", "text/plain")];
    expect_with(addr, a, "POST", a, &text, Some(&ok), 415);
    let huge = format!("{{\"title\":\"{}\"}}", "x".repeat(70_000));
    expect(addr, a, "POST", a, Some(&huge), 413);

    for m in ["GET", "HEAD"] {
        let page = expect(addr, a, m, "/api/auctions", None, 200);
        let cursor = expect(addr, a, m, "/api/auctions?limit=1", None, 200);
        if m == "GET" {
            assert!(!page.json()["auctions"].as_array().unwrap().is_empty());
            assert!(cursor.json()["next_after_id"].is_i64());
        }
        expect(
            addr,
            a,
            m,
            "/api/auctions?status=scheduled&after_id=0",
            None,
            200,
        );
        for bad in [
            "limit=0",
            "limit=201",
            "status=bogus",
            "after_id=-1",
            "limit=1.5",
        ] {
            expect(addr, a, m, &format!("/api/auctions?{bad}"), None, 400);
        }
        let one = "/api/auctions/{id}";
        expect(addr, one, m, &format!("/api/auctions/{auction}"), None, 200);
        expect(addr, one, m, "/api/auctions/9223372036854775807", None, 404);
    }

    // Bids.
    let b = "/api/bids";
    let bid = |amount: &str, bidder: i64| {
        format!(r#"{{"auction_id":{auction},"amount":{amount},"bidder_id":{bidder}}}"#)
    };
    let r = expect(addr, b, "POST", b, Some(&bid("\"9.99\"", 1)), 409);
    assert!(r.json()["error"]["current_price"].is_null());
    expect(addr, b, "POST", b, Some(&bid("10", 1)), 201);
    let r = expect(addr, b, "POST", b, Some(&bid("12.5", 2)), 409);
    assert_eq!(r.json()["error"]["current_price"], "10.00");
    expect(addr, b, "POST", b, Some(&bid("15.00", 2)), 201);
    expect(addr, b, "POST", b, Some(&bid("100", seller)), 403);
    let unknown = r#"{"auction_id":9223372036854775807,"amount":"1","bidder_id":1}"#;
    expect(addr, b, "POST", b, Some(unknown), 404);
    let early = format!(r#"{{"auction_id":{scheduled},"amount":"50","bidder_id":1}}"#);
    let r = expect(addr, b, "POST", b, Some(&early), 409);
    assert_eq!(r.json()["error"]["status"], "scheduled");
    for bad in [
        "{",
        "1",
        r#"{"auction_id":1,"amount":"1"}"#,
        r#"{"auction_id":1,"amount":"-1","bidder_id":1}"#,
        r#"{"auction_id":0,"amount":"1","bidder_id":1}"#,
    ] {
        expect(addr, b, "POST", b, Some(bad), 400);
    }
    expect_with(addr, b, "POST", b, &text, Some(&bid("20", 3)), 415);
    expect(addr, b, "POST", b, Some(&huge), 413);

    // Idempotent retries: the first answer, its replay (with the documented marker), a reused key
    // (422) and malformed keys (400 naming the header), on both POSTs.
    let key = format!("openapi-{}", std::process::id());
    let keyed = [JSON, ("Idempotency-Key", key.as_str())];
    let bid_body = bid("30", 4);
    let first = expect_with(addr, b, "POST", b, &keyed, Some(&bid_body), 201);
    let again = expect_with(addr, b, "POST", b, &keyed, Some(&bid_body), 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let r = expect_with(addr, b, "POST", b, &keyed, Some(&bid("31", 4)), 422);
    assert_eq!(r.code(), "idempotency_mismatch");
    let created = auction_body(seller, r#","duration_seconds":60"#);
    expect_with(addr, a, "POST", a, &keyed, Some(&created), 201);
    let again = expect_with(addr, a, "POST", a, &keyed, Some(&created), 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = auction_body(seller, r#","duration_seconds":61"#);
    expect_with(addr, a, "POST", a, &keyed, Some(&other), 422);
    let long = "k".repeat(256);
    for bad_key in ["a b", long.as_str()] {
        let headers = [JSON, ("Idempotency-Key", bad_key)];
        for (template, body) in [(a, &created), (b, &bid_body)] {
            let r = expect_with(addr, template, "POST", template, &headers, Some(body), 400);
            assert_eq!(r.json()["error"]["field"], "Idempotency-Key");
        }
    }

    let list = "/api/bids/{auction_id}";
    for m in ["GET", "HEAD"] {
        let r = expect(
            addr,
            list,
            m,
            &format!("/api/bids/{auction}?limit=1"),
            None,
            200,
        );
        if m == "GET" {
            assert!(r.json()["next_before_id"].is_i64());
        }
        expect(
            addr,
            list,
            m,
            &format!("/api/bids/{auction}?before_id=1"),
            None,
            200,
        );
        for bad in ["limit=0", "limit=501", "before_id=0", "before_id=x"] {
            expect(
                addr,
                list,
                m,
                &format!("/api/bids/{auction}?{bad}"),
                None,
                400,
            );
        }
        expect(addr, list, m, "/api/bids/9223372036854775807", None, 404);
    }

    // Refused by the HTTP layer, on any route.
    let many: String = (0..70).map(|i| format!("X-Filler-{i}: y\r\n")).collect();
    for (template, method) in [("/health", "GET"), (b, "POST"), (a, "GET")] {
        let head = format!("{method} {template} HTTP/1.1\r\nHost: t\r\n{many}\r\n");
        let r = conforms(template, method, raw_call(addr, method, head.as_bytes()));
        assert_eq!(r.status, 431);
        let bad_length =
            format!("{method} {template} HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n");
        let r = conforms(
            template,
            method,
            raw_call(addr, method, bad_length.as_bytes()),
        );
        assert_eq!(r.status, 400);
        let coding =
            format!("{method} {template} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n");
        let r = conforms(template, method, raw_call(addr, method, coding.as_bytes()));
        assert_eq!(r.status, 501);
        let line = format!(
            "{method} {template}?q={} HTTP/1.1\r\n\r\n",
            "q".repeat(9_000)
        );
        let r = conforms(template, method, raw_call(addr, method, line.as_bytes()));
        assert_eq!(r.status, 414);
    }
    let r = call(addr, "GET", "/health", &[], Some(huge.as_bytes()));
    assert_eq!(conforms("/health", "GET", r).status, 413);
    let r = call(
        addr,
        "GET",
        "/health",
        &[("X-Request-Id", "trace-42")],
        None,
    );
    assert_eq!(
        conforms("/health", "GET", r).header("x-request-id"),
        Some("trace-42")
    );

    // The short auction has closed by now (or soon).
    if let Some(left) = closing_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
    let late = format!(r#"{{"auction_id":{closing},"amount":"50","bidder_id":1}}"#);
    let r = expect(addr, b, "POST", b, Some(&late), 409);
    assert_eq!(r.json()["error"]["status"], "closed");
    let r = expect(
        addr,
        "/api/auctions/{id}",
        "GET",
        &format!("/api/auctions/{closing}"),
        None,
        200,
    );
    assert_eq!(r.json()["status"], "closed");
}

fn with(authorization: &str) -> [(&str, &str); 2] {
    [JSON, ("Authorization", authorization)]
}

fn token(sub: i64, role: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args([
            "token",
            "--sub",
            &sub.to_string(),
            "--role",
            role,
            "--ttl",
            "1h",
        ])
        .env("GAVEL_AUTH_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn answers_with_authentication_on_match_the_document() {
    let server = spawn_server(
        &test_db_name("openapi_auth"),
        &[("GAVEL_AUTH_SECRET", SECRET)],
    );
    let addr = server.addr;
    let (a, b) = ("/api/auctions", "/api/bids");
    let as_ = |t: &str| format!("Bearer {t}");
    let (seller, bidder, admin) = (
        as_(&token(21, "seller")),
        as_(&token(22, "bidder")),
        as_(&token(1, "admin")),
    );
    let body = auction_body(21, r#","duration_seconds":3600"#);
    for auth in [None, Some("Bearer nope"), Some("Basic x")] {
        let mut headers = vec![JSON];
        headers.extend(auth.map(|v| ("Authorization", v)));
        expect_with(addr, a, "POST", a, &headers, Some(&body), 401);
        expect_with(addr, b, "POST", b, &headers, Some("{}"), 401);
    }
    let r = expect_with(addr, a, "POST", a, &with(&seller), Some(&body), 201);
    let auction = r.json()["id"].as_i64().unwrap();
    expect_with(addr, a, "POST", a, &with(&bidder), Some(&body), 403);
    let other = auction_body(99, r#","duration_seconds":3600"#);
    expect_with(addr, a, "POST", a, &with(&seller), Some(&other), 403);
    expect_with(addr, a, "POST", a, &with(&admin), Some(&other), 201);
    let bid = format!(r#"{{"auction_id":{auction},"amount":"10"}}"#);
    expect_with(addr, b, "POST", b, &with(&seller), Some(&bid), 403);
    let r = expect_with(addr, b, "POST", b, &with(&bidder), Some(&bid), 201);
    assert_eq!(r.json()["bidder_id"], 22);
    let theirs = format!(r#"{{"auction_id":{auction},"amount":"20","bidder_id":23}}"#);
    expect_with(addr, b, "POST", b, &with(&bidder), Some(&theirs), 403);
    expect(
        addr,
        "/api/auctions/{id}",
        "GET",
        &format!("/api/auctions/{auction}"),
        None,
        200,
    );
}

#[test]
fn answers_during_a_database_outage_match_the_document() {
    let direct = shared();
    let auction = create(direct, 31, r#","duration_seconds":3600"#);
    let proxy = Proxy::start(upstream());
    let db = test_db_name("openapi");
    let url = format!("postgres://postgres@{}/{db}", proxy.addr);
    let server = spawn_server(&db, &[("DATABASE_URL", url.as_str())]);
    let addr = server.addr;
    expect(addr, "/ready", "GET", "/ready", None, 200);
    proxy.set(REFUSE);
    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(addr, "GET", "/ready", &[], None).status != 503 {
        assert!(Instant::now() < deadline, "/ready never said 503");
        std::thread::sleep(Duration::from_millis(50));
    }
    for m in ["GET", "HEAD"] {
        let r = expect(addr, "/ready", m, "/ready", None, 503);
        if m == "GET" {
            assert_eq!(r.json()["status"], "unavailable");
        }
        let one = format!("/api/auctions/{auction}");
        expect(addr, "/api/auctions/{id}", m, &one, None, 503);
        expect(addr, "/api/auctions", m, "/api/auctions", None, 503);
        let bids = format!("/api/bids/{auction}");
        expect(addr, "/api/bids/{auction_id}", m, &bids, None, 503);
    }
    let bid = format!(r#"{{"auction_id":{auction},"amount":"10","bidder_id":32}}"#);
    expect(addr, "/api/bids", "POST", "/api/bids", Some(&bid), 503);
    let body = auction_body(31, r#","duration_seconds":60"#);
    expect(
        addr,
        "/api/auctions",
        "POST",
        "/api/auctions",
        Some(&body),
        503,
    );
    expect(addr, "/health", "GET", "/health", None, 200);
}

/// The checks above can fail: the document's schemas refuse what they should.
#[test]
fn the_schemas_refuse_what_the_document_forbids() {
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let auction = doc()["components"]["schemas"]["Auction"]["examples"][0].clone();
    assert_eq!(
        violations(&schema("Auction"), &auction),
        Vec::<String>::new()
    );
    let mut wrong = Vec::new();
    for (key, value) in [
        ("extra", json!(1)),
        ("start_price", json!("100.0")),
        ("start_price", json!(100)),
        ("current_price", json!(120)),
        ("leader_id", json!(0)),
        ("leader_id", json!("42")),
        ("status", json!("paused")),
        ("created_at", json!("2026-11-27T11:59:58Z")),
        ("ends_at", json!("2026-13-27T13:00:00.000000Z")),
        ("title", json!("")),
        ("extension_seconds", json!(3601)),
    ] {
        let mut a = auction.clone();
        a[key] = value;
        wrong.push(a);
    }
    let mut missing = auction.clone();
    missing.as_object_mut().unwrap().remove("min_next_bid");
    wrong.push(missing);
    for a in &wrong {
        assert!(!violations(&schema("Auction"), a).is_empty(), "{a}");
    }
    let mut open = auction.clone();
    open["current_price"] = Value::Null;
    open["leader_id"] = Value::Null;
    assert!(violations(&schema("Auction"), &open).is_empty());

    let conflict = &doc()["paths"]["/api/bids"]["post"]["responses"]["409"]["content"]
        ["application/json"]["schema"];
    let good = json!({"error":{"code":"bid_too_low","message":"m","current_price":null,"min_next_bid":"1.00"}});
    assert!(violations(conflict, &good).is_empty());
    for bad in [
        json!({"error":{"code":"not_found","message":"m"}}),
        json!({"error":{"code":"bid_too_low","message":"m"}}),
        json!({"error":{"code":"bid_too_low","message":"m","current_price":null,"min_next_bid":"1.00","x":1}}),
        json!({"error":{"code":"auction_not_open","message":"m","status":"open"}}),
        json!({"code":"auction_not_open","message":"m","status":"closed"}),
    ] {
        assert!(!violations(conflict, &bad).is_empty(), "{bad}");
    }
    let not_found =
        &resolve(component_response("NotFound"))["content"]["application/json"]["schema"];
    assert!(violations(
        not_found,
        &json!({"error":{"code":"not_found","message":"m"}})
    )
    .is_empty());
    assert!(!violations(
        not_found,
        &json!({"error":{"code":"not_found","message":"m","field":"x"}})
    )
    .is_empty());

    let create = schema("AuctionCreate");
    let base = json!({"title":"t","seller_id":1,"start_price":"1"});
    let with = |extra: Value| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    assert!(violations(&create, &with(json!({"duration_seconds": 5}))).is_empty());
    assert!(violations(
        &create,
        &with(json!({"ends_at": "2100-01-01T00:00:00Z", "duration_seconds": null}))
    )
    .is_empty());
    for bad in [
        json!({}),
        json!({"ends_at": "2100-01-01T00:00:00Z", "duration_seconds": 5}),
        json!({"duration_seconds": 0}),
        json!({"duration_seconds": 5, "start_price": "1.234"}),
        json!({"duration_seconds": 5, "extension_seconds": -1}),
        json!({"duration_seconds": 5, "seller_id": 0}),
    ] {
        assert!(!violations(&create, &with(bad.clone())).is_empty(), "{bad}");
    }
}

/// A head that never ends is answered 408 once the header timeout (10 s) has passed.
#[test]
fn a_request_timeout_matches_the_document() {
    let mut s = connect(shared());
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n").unwrap();
    let r = conforms("/health", "GET", read_reply(&mut s).unwrap());
    assert_eq!(r.status, 408);
}
