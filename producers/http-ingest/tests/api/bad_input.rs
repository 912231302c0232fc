//! Bad input: every malformed body gets a 4xx problem that says what is wrong, nothing is
//! published, and the service stays up. A property test sends random JSON and bytes.

use std::sync::atomic::{AtomicI64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::helpers::{send, spawn_app_with, Db, TestApp};

const MAX_BODY: usize = 64 * 1024;
const MAX_BATCH: usize = 5;

async fn spawn() -> TestApp {
    spawn_app_with(Db::Sqlite, |s| {
        s.max_body_bytes = MAX_BODY;
        s.max_batch = MAX_BATCH;
    })
    .await
}

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
    status: u16,
    slug: &'static str,
    /// Words the answer must contain (in `detail` or `errors`).
    says: &'static [&'static str],
}

fn case(
    name: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    slug: &'static str,
    says: &'static [&'static str],
) -> Case {
    Case {
        name,
        path: "/v1/events",
        content_type: Some("application/json"),
        headers: &[],
        body: body.into(),
        status,
        slug,
        says,
    }
}

fn order_data() -> Value {
    json!({"order_id": "o-1", "customer_id": "c-1", "currency": "EUR", "total_minor": 100,
           "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 100}], "placed_at": "2026-11-23T10:00:00Z"})
}

fn cases() -> Vec<Case> {
    let event = |data: Value| json!({"type": "OrderPlaced", "data": data}).to_string();
    let mut missing = order_data();
    missing.as_object_mut().unwrap().remove("customer_id");
    let mut wrong = order_data();
    wrong["lines"][0]["quantity"] = json!("two");
    wrong["placed_at"] = json!("yesterday");
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    vec![
        case("truncated JSON", "{\"type\": \"OrderPlaced\",\n \"data\": ", 400, "malformed-json", &["line 2", "EOF"]),
        case("empty body", "", 400, "malformed-json", &["EOF"]),
        case("not UTF-8", b"{\"type\": \"\xff\"}".to_vec(), 400, "malformed-json", &["UTF-8"]),
        case("trailing garbage", "{} {}", 400, "malformed-json", &["trailing"]),
        case("nested too deep", deep, 400, "malformed-json", &["recursion"]),
        case("an array to the single route", "[]", 422, "invalid-event", &["event object"]),
        case("a string", "\"OrderPlaced\"", 422, "invalid-event", &["event object"]),
        case("empty object", "{}", 422, "invalid-event", &["$.type", "$.data", "missing"]),
        case(
            "unknown type",
            r#"{"type": "OrderTeleported", "data": {}}"#,
            422,
            "unknown-event-type",
            &["OrderTeleported"],
        ),
        case("type not a string", r#"{"type": 7, "data": {}}"#, 422, "invalid-event", &["$.type"]),
        case("missing field", event(missing), 422, "invalid-event", &["$.data.customer_id"]),
        case(
            "wrong types",
            event(wrong),
            422,
            "invalid-event",
            &["$.data.lines[0].quantity", "int", "$.data.placed_at"],
        ),
        case("unknown field", event(json!({"order_idd": "x"})), 422, "invalid-event", &["$.data.order_idd"]),
        case(
            "bad envelope",
            json!({"type": "OrderPlaced", "id": "nope", "time": "noon", "extra": 1, "data": order_data()}).to_string(),
            422,
            "invalid-event",
            &["$.id", "UUID", "$.time", "$.extra"],
        ),
        Case {
            content_type: Some("text/plain"),
            ..case("text/plain", "{}", 415, "unsupported-media-type", &["text/plain"])
        },
        Case {
            content_type: Some("application/x-www-form-urlencoded"),
            ..case("a form", "a=b", 415, "unsupported-media-type", &["application/json"])
        },
        Case {
            content_type: Some("application/x-ndjson"),
            ..case("NDJSON to the single route", "{}\n", 415, "unsupported-media-type", &["batch"])
        },
        Case {
            headers: &[("idempotency-key", "has spaces")],
            ..case("bad Idempotency-Key", "{}", 400, "malformed-request", &["Idempotency-Key"])
        },
        Case {
            headers: &[("x-correlation-id", "")],
            ..case("empty correlation id", "{}", 400, "malformed-request", &["X-Correlation-Id"])
        },
        Case { path: "/v1/events:batch", ..case("batch not an array", "{}", 400, "malformed-request", &["array"]) },
        Case { path: "/v1/events:batch", ..case("empty batch", "[]", 400, "malformed-request", &["no events"]) },
        Case {
            path: "/v1/events:batch",
            ..case("batch too large", "[{},{},{},{},{},{}]", 413, "batch-too-large", &["6", "5"])
        },
        Case {
            path: "/v1/events:batch",
            content_type: Some("application/x-ndjson"),
            ..case("NDJSON batch too large", "{}\n{}\n{}\n{}\n{}\n{}\n", 413, "batch-too-large", &["6"])
        },
        Case {
            path: "/v1/events:batch",
            ..case("nothing valid in the batch", "[1, {}]", 422, "batch-rejected", &["$.type", "event object"])
        },
        Case {
            path: "/v1/events:batch",
            content_type: Some("application/x-ndjson"),
            ..case(
                "NDJSON lines not JSON",
                "nope\n{\"a\":\n",
                400,
                "batch-rejected",
                &["line 1", "line 2", "malformed-json"],
            )
        },
        Case { path: "/v1/nothing", ..case("unknown route", "{}", 404, "not-found", &["/v1/nothing"]) },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_body_gets_a_useful_4xx_and_nothing_is_published() {
    let app = spawn().await;
    for case in cases() {
        let mut request = app.post(case.path).body(case.body.clone());
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in case.headers {
            request = request.header(*name, *value);
        }
        let reply = send(request).await;
        assert_eq!(reply.status, case.status, "{}: {reply:#?}", case.name);
        reply.assert_problem(case.status, case.slug);
        for word in case.says {
            assert!(reply.text.contains(word), "{}: the answer should mention `{word}`: {}", case.name, reply.text);
        }
    }
    let wrong_method = app.get("/v1/events").await;
    wrong_method.assert_problem(405, "method-not-allowed");
    assert_eq!(app.all_messages().await, 0);
    assert_eq!(app.get("/health/live").await.status, 200, "the service is still up");
    let (event, _) = crate::helpers::order_event("still-works");
    assert_eq!(app.publish(&event).await.status, 201, "and still publishes");
}

/// A body over the limit is refused from its `Content-Length`, before it is read. (Sent by hand:
/// a client still writing the body when the 413 arrives would see a broken pipe instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_before_it_is_read() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = spawn().await;
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/events:batch HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"[{").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(crate::helpers::WAIT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is answered and closed, not left waiting for the body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.to_lowercase().contains("content-type: application/problem+json"), "{text}");
    assert!(text.contains("urn:eventline:problem:body-too-large") && text.contains("65536 bytes"), "{text}");
    assert_eq!(app.all_messages().await, 0);
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-zA-Z0-9_ :.\\-]{0,12}".prop_map(Value::from),
        prop_oneof![Just("OrderPlaced"), Just("PaymentFailed"), Just("2026-11-23T10:00:00Z"), Just("EUR")]
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("data".to_owned()),
                    Just("id".to_owned()),
                    Just("order_id".to_owned()),
                    Just("lines".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies: any JSON, events of a real type with random data, or random bytes; to either route.
fn arb_request() -> impl Strategy<Value = (bool, Vec<u8>)> {
    let body = prop_oneof![
        arb_json().prop_map(|v| v.to_string().into_bytes()),
        (prop_oneof![Just("OrderPlaced"), Just("OrderShipped"), Just("CustomerRegistered")], arb_json())
            .prop_map(|(t, data)| json!({"type": t, "data": data}).to_string().into_bytes()),
        prop::collection::vec(arb_json(), 1..4).prop_map(|v| Value::from(v).to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
        "[a-z0-9]{1,12}".prop_map(|id| {
            let mut data = order_data();
            data["order_id"] = json!(id);
            json!({"type": "OrderPlaced", "data": data}).to_string().into_bytes()
        }),
    ];
    (any::<bool>(), body)
}

#[test]
fn random_bodies_get_2xx_or_4xx_never_5xx_and_only_2xx_publishes() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = runtime.block_on(spawn());
    let published = AtomicI64::new(0);
    let mut runner = TestRunner::new(Config { cases: 200, failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&arb_request(), |(batch, body)| {
        let path = if batch { "/v1/events:batch" } else { "/v1/events" };
        let reply =
            runtime.block_on(send(app.post(path).header("content-type", "application/json").body(body.clone())));
        let shown = String::from_utf8_lossy(&body).into_owned();
        if reply.status >= 500 || reply.status < 200 || (300..400).contains(&reply.status) {
            return Err(TestCaseError::fail(format!("{path} {shown} → {reply:#?}")));
        }
        if reply.status >= 400 && reply.header("content-type") != Some("application/problem+json") {
            return Err(TestCaseError::fail(format!("{path} {shown}: a 4xx without problem+json: {reply:#?}")));
        }
        let count = if batch { reply.body["published"].as_i64().unwrap_or(0) } else { i64::from(reply.status == 201) };
        published.fetch_add(count, Ordering::SeqCst);
        Ok(())
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
    let published = published.load(Ordering::SeqCst);
    assert!(published > 0, "some generated events are valid, so publishing is exercised too");
    assert_eq!(runtime.block_on(app.all_messages()), published, "only answered successes are on the topics");
    assert_eq!(runtime.block_on(app.get("/health/live")).status, 200);
}
