//! Bearer JWTs (HS256 and RS256): issuer, audience, expiry and signature are checked, scopes
//! decide the event types; per-client rate limits answer 429.

use std::time::{SystemTime, UNIX_EPOCH};

use eventline_common::config::Secret;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{order_event, order_id, send, spawn_app_with, Db, TestApp};

const SECRET: &str = "a shared secret of reasonable length";
const PRIVATE: &str = include_str!("../keys/test-rs256-private.pem");
const PUBLIC: &str = include_str!("../keys/test-rs256-public.pem");
const OTHER_PRIVATE: &str = include_str!("../keys/other-rs256-private.pem");

async fn spawn(rate: Option<(f64, u32)>) -> TestApp {
    spawn_app_with(Db::Sqlite, |s| {
        s.auth.enabled = true;
        s.auth.hs256_secret = Secret::new(SECRET);
        s.auth.rs256_public_key = PUBLIC.to_owned();
        s.auth.issuer = "https://id.example".into();
        s.auth.audience = "ingest".into();
        if let Some((requests_per_second, burst)) = rate {
            s.rate_limit.requests_per_second = requests_per_second;
            s.rate_limit.burst = burst;
        }
    })
    .await
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(sub: &str, scope: &str) -> Value {
    json!({"sub": sub, "scope": scope, "iss": "https://id.example", "aud": "ingest", "exp": now() + 600, "iat": now()})
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn rs256(claims: &Value, private_pem: &str) -> String {
    encode(&Header::new(Algorithm::RS256), claims, &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap()).unwrap()
}

async fn publish_with(app: &TestApp, token: Option<&str>, body: &Value, batch: bool) -> crate::helpers::Reply {
    let mut request = app.post(if batch { "/v1/events:batch" } else { "/v1/events" }).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_hs256_and_rs256_tokens_publish_what_their_scopes_allow() {
    let app = spawn(None).await;
    let (event, _) = order_event(&order_id());
    let hs = hs256(&claims("checkout", "openid publish:OrderPlaced"), SECRET);
    assert_eq!(publish_with(&app, Some(&hs), &event, false).await.status, 201);
    let rs = rs256(&claims("warehouse", "publish:orders/*"), PRIVATE);
    assert_eq!(publish_with(&app, Some(&rs), &event, false).await.status, 201);
    let mut listed = claims("ops", "");
    listed["scope"] = json!(["openid", "publish:*"]);
    let everything = hs256(&listed, SECRET);
    assert_eq!(publish_with(&app, Some(&everything), &event, false).await.status, 201, "scope as a list works too");
    assert_eq!(app.messages("orders").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_fail_a_check_are_401_with_the_reason_and_publish_nothing() {
    let app = spawn(None).await;
    let (event, _) = order_event(&order_id());
    let scope = "publish:*";
    let mut expired = claims("c", scope);
    expired["exp"] = json!(now() - 3600);
    let mut wrong_issuer = claims("c", scope);
    wrong_issuer["iss"] = json!("https://evil.example");
    let mut wrong_audience = claims("c", scope);
    wrong_audience["aud"] = json!("billing");
    let mut no_subject = claims("c", scope);
    no_subject.as_object_mut().unwrap().remove("sub");
    let mut not_yet = claims("c", scope);
    not_yet["nbf"] = json!(now() + 3600);
    let hs384 =
        encode(&Header::new(Algorithm::HS384), &claims("c", scope), &EncodingKey::from_secret(SECRET.as_bytes()))
            .unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("HS256 expired", hs256(&expired, SECRET), "expired"),
        ("RS256 expired", rs256(&expired, PRIVATE), "expired"),
        ("HS256 wrong issuer", hs256(&wrong_issuer, SECRET), "issuer"),
        ("RS256 wrong issuer", rs256(&wrong_issuer, PRIVATE), "issuer"),
        ("HS256 wrong audience", hs256(&wrong_audience, SECRET), "audience"),
        ("RS256 wrong audience", rs256(&wrong_audience, PRIVATE), "audience"),
        ("HS256 bad signature", hs256(&claims("c", scope), "another secret entirely"), "signature"),
        ("RS256 bad signature", rs256(&claims("c", scope), OTHER_PRIVATE), "signature"),
        ("no sub", hs256(&no_subject, SECRET), "sub"),
        ("not valid yet", hs256(&not_yet, SECRET), "not valid yet"),
        ("HS384", hs384, "HS384"),
        ("not a JWT", "not.a.jwt".to_owned(), "not"),
    ];
    for (name, token, says) in &cases {
        for batch in [false, true] {
            let body = if batch { json!([event]) } else { event.clone() };
            let reply = publish_with(&app, Some(token), &body, batch).await;
            let detail = reply.assert_problem(401, "unauthorized");
            assert!(detail.contains(says), "{name}: {detail}");
            let challenge = reply.header("www-authenticate").unwrap_or_else(|| panic!("{name}: no WWW-Authenticate"));
            assert!(
                challenge.starts_with("Bearer realm=\"eventline-ingest\", error=\"invalid_token\""),
                "{name}: {challenge}"
            );
            assert!(!reply.text.contains(token.as_str()), "{name}: the token must not be echoed");
        }
    }
    let missing = publish_with(&app, None, &event, false).await;
    missing.assert_problem(401, "unauthorized");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer realm=\"eventline-ingest\""));
    let basic = send(app.post("/v1/events").header("authorization", "Basic dXNlcjpwdw==").json(&event)).await;
    basic.assert_problem(401, "unauthorized");
    assert_eq!(app.all_messages().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_that_does_not_cover_the_type_is_403_and_in_a_batch_per_event() {
    let app = spawn(None).await;
    let (event, _) = order_event(&order_id());
    let payments_only = rs256(&claims("billing", "publish:payments/* publish:CustomerRegistered"), PRIVATE);
    let reply = publish_with(&app, Some(&payments_only), &event, false).await;
    assert!(reply.assert_problem(403, "forbidden").contains("publish:OrderPlaced"));
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"publish:OrderPlaced\""),
        "{challenge}"
    );

    let payment = json!({"type": "PaymentFailed", "data": {"order_id": "o-9", "payment_id": "p-1", "reason": "declined",
                                                           "failed_at": "2026-11-23T10:00:00Z"}});
    let batch = publish_with(&app, Some(&payments_only), &json!([event, payment]), true).await;
    assert_eq!(batch.status, 207, "{batch:#?}");
    assert_eq!(batch.body["results"][0]["status"], 403);
    assert_eq!(batch.body["results"][0]["problem"], "urn:eventline:problem:forbidden");
    assert_eq!(batch.body["results"][1]["status"], 201);
    let none = rs256(&claims("nobody", "openid profile"), PRIVATE);
    let all_refused = publish_with(&app, Some(&none), &json!([event, event]), true).await;
    all_refused.assert_problem(403, "batch-rejected");
    assert_eq!((app.messages("orders").await, app.messages("payments").await), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_has_its_own_rate_limit_answered_with_429_and_retry_after() {
    let app = spawn(Some((0.5, 3))).await;
    let (event, _) = order_event(&order_id());
    let busy = hs256(&claims("busy", "publish:*"), SECRET);
    for _ in 0..3 {
        assert_eq!(publish_with(&app, Some(&busy), &event, false).await.status, 201);
    }
    let limited = publish_with(&app, Some(&busy), &event, false).await;
    limited.assert_problem(429, "rate-limited");
    let wait: u64 = limited.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&wait), "one token every 2 s: {wait}");
    let calm = hs256(&claims("calm", "publish:*"), SECRET);
    assert_eq!(publish_with(&app, Some(&calm), &event, false).await.status, 201, "another client is not limited");
    assert_eq!(app.messages("orders").await, 4);
}
