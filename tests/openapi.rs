//! The OpenAPI document (`specs/openapi.json`) against the real route table,
//! the document the server serves, and real response bodies: a route added,
//! removed or re-permissioned without the contract fails here.

mod common;

use antaca::http::routes::{routes, Access};
use antaca::http::sessions::Role;
use antaca::manage::error::ErrorCode;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const PASSWORD: &str = "correct horse battery";

fn spec_text() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/openapi.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn spec() -> Value {
    serde_json::from_str(&spec_text()).expect("specs/openapi.json is JSON")
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// (METHOD, path) of every operation of the document.
fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    let paths = spec["paths"].as_object().expect("paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> &'a Value {
    &spec["paths"][path][method.to_lowercase()]
}

fn role_names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|r| format!("{r:?}")).collect()
}

#[test]
fn the_document_has_exactly_the_routes_of_the_route_table() {
    let spec = spec();
    let table: BTreeSet<(String, String)> = routes()
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.pattern.to_string()))
        .collect();
    assert_eq!(
        table.len(),
        routes().len(),
        "the route table has duplicates"
    );
    let documented = documented(&spec);
    let undocumented: Vec<_> = table.difference(&documented).collect();
    let not_routed: Vec<_> = documented.difference(&table).collect();
    assert!(
        undocumented.is_empty() && not_routed.is_empty(),
        "specs/openapi.json and routes() differ.\n  routes missing from the document: {undocumented:?}\n  \
         documented operations that are not routes: {not_routed:?}"
    );
}

#[test]
fn the_served_document_is_the_file() {
    assert_eq!(
        antaca::http::OPENAPI,
        spec_text(),
        "antaca::http::OPENAPI is not specs/openapi.json"
    );
    let spec = spec();
    let version = spec["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "OpenAPI {version}");
}

#[test]
fn every_operation_is_complete_and_matches_its_access() {
    let spec = spec();
    let mut problems = Vec::new();
    let mut operation_ids = BTreeSet::new();
    for route in routes() {
        let method = route.method.as_str();
        let path = route.pattern;
        let op = operation(&spec, method, path);
        let name = format!("{method} {path}");
        if op.is_null() {
            problems.push(format!("{name}: not documented"));
            continue;
        }
        match op["operationId"].as_str() {
            Some(id) if !id.is_empty() => {
                if !operation_ids.insert(id.to_string()) {
                    problems.push(format!("{name}: operationId {id} is not unique"));
                }
            }
            _ => problems.push(format!("{name}: no operationId")),
        }
        for field in ["summary", "description"] {
            if op[field].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{name}: no {field}"));
            }
        }
        if op["tags"].as_array().is_none_or(Vec::is_empty) {
            problems.push(format!("{name}: no tags"));
        }
        let responses = op["responses"].as_object().cloned().unwrap_or_default();
        if !responses.keys().any(|s| s.starts_with('2')) {
            problems.push(format!("{name}: no 2xx response"));
        }
        let exempt = matches!(path, "/health" | "/openapi.json");
        if !exempt && !responses.keys().any(|s| s.starts_with('4')) {
            problems.push(format!("{name}: no 4xx response"));
        }
        for (status, response) in &responses {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                if schema != "#/components/schemas/Error" {
                    problems.push(format!("{name}: {status} is not the Error schema"));
                }
                let described = response["description"].as_str().unwrap_or("");
                if !described.contains("Codes: `") {
                    problems.push(format!("{name}: {status} lists no codes"));
                }
            }
        }
        // Path parameters: exactly the {names} of the pattern.
        let in_pattern: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if in_pattern != declared {
            problems.push(format!(
                "{name}: path parameters {declared:?}, the pattern has {in_pattern:?}"
            ));
        }
        // Security and roles.
        let security = op["security"].clone();
        let (expected_security, tag) = match route.access {
            Access::Public => (json!([]), None),
            Access::Customer => (json!([{"sessionToken": []}]), Some("Customer app")),
            Access::Admin(_) => (json!([{"adminSession": []}]), Some("Administration")),
            Access::Partner => (json!([{"partnerCertificate": []}]), Some("Partner server")),
        };
        if security != expected_security {
            problems.push(format!(
                "{name}: security {security}, access {:?} wants {expected_security}",
                route.access
            ));
        }
        if let Some(tag) = tag {
            if op["tags"] != json!([tag]) {
                problems.push(format!("{name}: tags {}, expected [{tag:?}]", op["tags"]));
            }
        }
        match route.access {
            Access::Admin(roles) => {
                let expected = json!(role_names(roles));
                if op["x-roles"] != expected {
                    problems.push(format!(
                        "{name}: x-roles {}, the route table says {expected}",
                        op["x-roles"]
                    ));
                }
                let matrix = &spec["x-role-matrix"]["operations"][&name];
                if matrix["roles"] != expected || matrix["operationId"] != op["operationId"] {
                    problems.push(format!("{name}: x-role-matrix says {matrix}"));
                }
                for role in role_names(roles) {
                    if !op["description"]
                        .as_str()
                        .unwrap_or("")
                        .contains(role.as_str())
                    {
                        problems.push(format!("{name}: the description does not name {role}"));
                    }
                }
            }
            _ => {
                if !op["x-roles"].is_null() {
                    problems.push(format!("{name}: x-roles on a non-admin route"));
                }
            }
        }
    }
    // The matrix has nothing else, and its per-role view agrees.
    let admin_routes: Vec<_> = routes()
        .into_iter()
        .filter_map(|r| match r.access {
            Access::Admin(roles) => Some((format!("{} {}", r.method, r.pattern), roles)),
            _ => None,
        })
        .collect();
    let matrix_ops = spec["x-role-matrix"]["operations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if matrix_ops.len() != admin_routes.len() {
        problems.push(format!(
            "x-role-matrix has {} operations, the route table {} admin routes",
            matrix_ops.len(),
            admin_routes.len()
        ));
    }
    for role in [Role::Admin, Role::Manager, Role::Employee] {
        let role_name = format!("{role:?}");
        let expected: Vec<Value> = admin_routes
            .iter()
            .filter(|(_, roles)| roles.contains(&role))
            .map(|(name, _)| matrix_ops[name.as_str()]["operationId"].clone())
            .collect();
        if spec["x-role-matrix"]["roles"][&role_name] != json!(expected) {
            problems.push(format!(
                "x-role-matrix.roles.{role_name} is not {expected:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Every `$ref` of the document points at something.
#[test]
fn every_reference_resolves() {
    fn walk(node: &Value, root: &Value, missing: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    let pointer = target.strip_prefix('#').unwrap_or("<external>");
                    if root.pointer(pointer).is_none() {
                        missing.push(target.clone());
                    }
                }
                map.values().for_each(|v| walk(v, root, missing));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, root, missing)),
            _ => {}
        }
    }
    let spec = spec();
    let mut missing = Vec::new();
    walk(&spec, &spec, &mut missing);
    assert!(missing.is_empty(), "unresolved $ref: {missing:?}");
}

/// The codes a response description names after "Codes:", in backticks.
fn codes_named_in(description: &str) -> Vec<String> {
    let Some((_, tail)) = description.split_once("Codes:") else {
        return Vec::new();
    };
    tail.split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| {
            word.starts_with(|c: char| c.is_ascii_uppercase())
                && word
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_string)
        .collect()
}

/// The error-code list of the document (the Error schema's `code` enum) is
/// exactly `ErrorCode::ALL`, and every code a response names is in it: a code
/// in the code and not in the document, or the other way round, fails here.
#[test]
fn the_error_codes_of_the_document_are_the_error_code_enum() {
    let spec = spec();
    let listed: BTreeSet<String> = spec["components"]["schemas"]["Error"]["properties"]["code"]
        ["enum"]
        .as_array()
        .expect("the Error schema's code has an enum")
        .iter()
        .map(|v| v.as_str().expect("codes are strings").to_string())
        .collect();
    let known: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    let missing: Vec<&String> = known.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "ErrorCodes not in the document's list: {missing:?}"
    );
    let unknown: Vec<&String> = listed.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "listed codes that are no ErrorCode: {unknown:?}"
    );

    let mut named = Vec::new();
    let paths = spec["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().cloned().unwrap_or_default();
            for (status, response) in &responses {
                let description = response["description"].as_str().unwrap_or("");
                for code in codes_named_in(description) {
                    if ErrorCode::from_wire(&code).is_none() {
                        named.push(format!("{method} {path} {status}: {code}"));
                    }
                }
            }
        }
    }
    assert!(
        named.is_empty(),
        "responses name codes that are no ErrorCode: {named:?}"
    );
}

/// Checks a value against a schema of the document: types, required
/// properties, closed objects, enums, array items. Returns the mismatches.
fn check(spec: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(target) = schema["$ref"].as_str() {
        let pointer = target.strip_prefix('#').expect("local $ref");
        let resolved = spec.pointer(pointer).expect("resolvable $ref");
        return check(spec, resolved, value, at, problems);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let type_of = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let actual = type_of(value);
    let fits = types.is_empty()
        || types.contains(&actual)
        || (actual == "integer" && types.contains(&"number"));
    if !fits {
        problems.push(format!("{at}: {actual}, the schema says {types:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Value::Object(map) = value {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().expect("required names");
            if !map.contains_key(name) {
                problems.push(format!("{at}: required property {name} is missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, v) in map {
            match properties.and_then(|p| p.get(name)) {
                Some(sub) => check(spec, sub, v, &format!("{at}.{name}"), problems),
                None if schema["additionalProperties"] == false => {
                    problems.push(format!("{at}: property {name} is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(spec, item_schema, item, &format!("{at}[{i}]"), problems);
        }
    }
}

/// The schema of one response of one operation.
fn response_schema<'a>(spec: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let schema = &operation(spec, method, path)["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} documents no JSON {status} response"
    );
    schema
}

/// Checks a real reply against the operation's documented response.
fn conforms(spec: &Value, method: &str, path: &str, reply: &HttpReply, problems: &mut Vec<String>) {
    let documented: Vec<String> = operation(spec, method, path)["responses"]
        .as_object()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    if !documented.contains(&reply.status.to_string()) {
        problems.push(format!(
            "{method} {path}: status {} is not documented ({documented:?}): {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ));
        return;
    }
    let schema = response_schema(spec, method, path, reply.status);
    let value = reply.json();
    check(
        spec,
        schema,
        &value,
        &format!("{method} {path} {}", reply.status),
        problems,
    );
    if reply.status >= 400 {
        let code = value["code"].as_str().unwrap_or("");
        let description = operation(spec, method, path)["responses"][reply.status.to_string()]
            ["description"]
            .as_str()
            .unwrap_or("");
        if !description.contains(&format!("`{code}`")) {
            problems.push(format!(
                "{method} {path} {}: code {code} is not listed",
                reply.status
            ));
        }
    }
}

#[test]
fn the_server_serves_the_document() {
    let server = TestServer::start("iso87ascii");
    let reply = http(server.running().http_addr, "GET", "/openapi.json", &[], b"");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        String::from_utf8(reply.body).expect("utf-8"),
        spec_text(),
        "GET /openapi.json is not specs/openapi.json"
    );
}

#[test]
fn real_responses_match_their_schemas() {
    let server = TestServer::start("iso87ascii");
    server.add_admin("mark", PASSWORD, Role::Manager);
    server.add_admin("emma", PASSWORD, Role::Employee);
    let addr = server.running().http_addr;
    let spec = spec();
    let mut problems = Vec::new();
    let mut case = |method: &str, pattern: &str, reply: HttpReply| {
        conforms(&spec, method, pattern, &reply, &mut problems);
        reply
    };

    case("GET", "/health", http(addr, "GET", "/health", &[], b""));
    let login = case(
        "POST",
        "/admin/login",
        http_json(
            addr,
            "POST",
            "/admin/login",
            None,
            json!({"login": "mark", "password": PASSWORD}),
        ),
    );
    assert_eq!(login.status, 200);
    let mark = login.json()["sessionToken"]
        .as_str()
        .expect("token")
        .to_string();
    let emma = server.admin_token("emma", PASSWORD);
    let bearer = format!("Bearer {mark}");

    // A reload with an Idempotency-Key, then the balance, history and summary.
    let reload = case(
        "POST",
        "/admin/balances/{balanceId}/reload",
        http(
            addr,
            "POST",
            "/admin/balances/b-ok/reload",
            &[
                ("Authorization", bearer.as_str()),
                ("Idempotency-Key", "openapi-1"),
            ],
            json!({"amount": "150.00", "currency": "EUR"})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(
        reload.status,
        200,
        "{}",
        String::from_utf8_lossy(&reload.body)
    );
    assert_eq!(reload.json()["available"], "1150.00");
    let get = |path: &str, token: &str| http_json(addr, "GET", path, Some(token), json!(null));
    let balance = case(
        "GET",
        "/admin/balances/{balanceId}",
        get("/admin/balances/b-ok", &emma),
    );
    assert!(
        balance.json()["cards"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "b-ok has cards, so the Card schema is exercised"
    );
    case(
        "GET",
        "/admin/balances/{balanceId}/transactions",
        get("/admin/balances/b-ok/transactions?limit=5", &emma),
    );
    case(
        "GET",
        "/admin/cards/{cardId}/transactions",
        get("/admin/cards/ok/transactions", &emma),
    );
    case(
        "GET",
        "/admin/customers/{customerId}",
        get("/admin/customers/u-ok", &emma),
    );
    case(
        "GET",
        "/admin/customers/{customerId}/balances",
        get("/admin/customers/u-ok/balances", &emma),
    );
    case("GET", "/admin/summary", get("/admin/summary", &emma));
    case(
        "GET",
        "/admin/kyc",
        get("/admin/kyc?status=IN_PROGRESS", &emma),
    );

    // Errors: each documented status, with a listed code, in the Error schema.
    let errors = [
        (
            "POST",
            "/admin/balances/{balanceId}/reload",
            http(
                addr,
                "POST",
                "/admin/balances/b-ok/reload",
                &[("Authorization", bearer.as_str())],
                br#"{"amount": "1.001", "currency": "EUR"}"#,
            ),
            400,
        ),
        (
            "POST",
            "/admin/balances/{balanceId}/reload",
            http(
                addr,
                "POST",
                "/admin/balances/b-ok/reload",
                &[("Authorization", format!("Bearer {emma}").as_str())],
                br#"{"amount": "1.00", "currency": "EUR"}"#,
            ),
            403,
        ),
        (
            "GET",
            "/admin/balances/{balanceId}",
            get("/admin/balances/nope", &emma),
            404,
        ),
        (
            "GET",
            "/admin/kyc",
            get("/admin/kyc?status=MAYBE", &emma),
            400,
        ),
        (
            "GET",
            "/customers/me",
            http(addr, "GET", "/customers/me", &[], b""),
            401,
        ),
        (
            "GET",
            "/secure/customers/{customerId}",
            http(addr, "GET", "/secure/customers/u-ok", &[], b""),
            403,
        ),
        (
            "POST",
            "/customers/me/devices",
            http_json(
                addr,
                "POST",
                "/customers/me/devices",
                None,
                json!({"pairingCode": "nope", "deviceId": "phone-1"}),
            ),
            401,
        ),
        (
            "POST",
            "/admin/login",
            http(
                addr,
                "POST",
                "/admin/login",
                &[("Content-Type", "text/plain")],
                b"mark",
            ),
            415,
        ),
    ];
    for (method, pattern, reply, status) in errors {
        assert_eq!(
            reply.status,
            status,
            "{method} {pattern}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        case(method, pattern, reply);
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
