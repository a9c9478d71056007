//! The policy's limits: request rates under concurrent bursts (never overshooting), token
//! windows and budgets from the responses' usage, concurrency of requests and streams, per
//! identity and per group — in process, and shared by two gateways through the machine's
//! real Redis; and what happens when Redis is unreachable.

use crate::harness::*;
use http::Method;
use std::time::Duration;

/// A limit id no earlier run used (Redis keys outlive a test run).
fn fresh_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{}x{nanos}", std::process::id())
}

fn policy(limits: &str) -> String {
    format!("version: 1\ngroups:\n  default: {{}}\n  eng: {{}}\nlimits:\n{limits}")
}

/// Start a burst well inside a minute window, so it is counted in one window. (Waiting, not
/// asserting on time.)
async fn fresh_minute() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let into = now.as_secs() % 60;
    if into > 45 {
        tokio::time::sleep(Duration::from_secs(61 - into)).await;
    }
}

async fn send(h: &Harness, token: &str, stream: bool) -> (u16, http::HeaderMap, String) {
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let body = if stream { STREAM } else { SIMPLE };
    let (code, headers, bytes) = h.call(Method::POST, "/v1/messages", &headers, body).await;
    (code.as_u16(), headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn mint(h: &Harness, subject: &str, groups: &[&str]) -> String {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    h.keys.mint(subject, &groups, 600, now()).unwrap().token
}

/// `n` requests at once through `gateways` in turn; how many were answered 200 and the
/// refusals' (status, headers, body).
async fn burst(
    gateways: &[&Harness],
    token: &str,
    n: usize,
) -> (usize, Vec<(u16, http::HeaderMap, String)>) {
    let calls = (0..n).map(|i| send(gateways[i % gateways.len()], token, false));
    let answers = futures_util::future::join_all(calls).await;
    let ok = answers.iter().filter(|(c, _, _)| *c == 200).count();
    (ok, answers.into_iter().filter(|(c, _, _)| *c != 200).collect())
}

#[tokio::test]
async fn a_burst_never_overshoots_the_request_rate() {
    let id = fresh_id();
    let h = Harness::start_with_policy(
        &policy(&format!("  - id: {id}\n    requests_per_minute: 5\n    message: Slow down.\n")),
        "",
    )
    .await;
    let alice = mint(&h, "alice", &["eng"]);
    fresh_minute().await;
    let (ok, refused) = burst(&[&h], &alice, 20).await;
    assert_eq!(ok, 5, "exactly the limit passes");
    assert_eq!(h.mock.received().len(), 5);
    let (code, headers, body) = &refused[0];
    assert_eq!(*code, 429, "{body}");
    assert_envelope(body.as_bytes(), "rate_limit_error");
    assert!(body.contains(&id) && body.contains("Slow down."), "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(headers["airlock-ratelimit-requests-limit"], "5");
    assert_eq!(headers["airlock-ratelimit-requests-remaining"], "0");
    assert!(headers.contains_key("airlock-ratelimit-requests-reset"));
    assert!(!headers.contains_key("x-should-retry"), "a rate limit is worth retrying");
    // Each identity has its own counter; the refusals are recorded with the limit.
    assert_eq!(send(&h, &mint(&h, "bob", &[]), false).await.0, 200);
    let refused_id = request_id(&refused[0].1);
    let record = h.records.wait_for_request(&refused_id).await;
    assert_eq!(record.reason, "rate_limited");
    assert_eq!(record.limited_by.as_deref(), Some(format!("{id}:requests_per_minute").as_str()));
}

#[tokio::test]
async fn token_windows_and_budgets_count_the_usage() {
    let (rate, budget) = (fresh_id(), fresh_id() + "b");
    let h = Harness::start_with_policy(
        &policy(&format!(
            "  - id: {rate}\n    output_tokens_per_minute: 20\n  - id: {budget}\n    per: group\n    groups: [eng]\n    input_tokens_per_day: 30\n"
        )),
        "",
    )
    .await;
    fresh_minute().await;
    // The mock reports 17 input tokens and 12 output tokens per reply, streamed or not.
    let carol = mint(&h, "carol", &[]);
    assert_eq!(send(&h, &carol, true).await.0, 200, "12 of 20");
    assert_eq!(send(&h, &carol, true).await.0, 200, "24: the window is now over");
    let (code, headers, body) = send(&h, &carol, false).await;
    assert_eq!(code, 429, "{body}");
    assert_envelope(body.as_bytes(), "rate_limit_error");
    assert_eq!(headers["airlock-ratelimit-output-tokens-limit"], "20");
    // The group budget: alice and bob (eng) share 30 input tokens a day.
    let (alice, bob) = (mint(&h, "alice", &["eng"]), mint(&h, "bob", &["eng"]));
    assert_eq!(send(&h, &alice, false).await.0, 200, "17 of 30");
    assert_eq!(send(&h, &bob, false).await.0, 200, "34: the day's budget is spent");
    let (code, headers, body) = send(&h, &alice, false).await;
    assert_eq!(code, 429, "{body}");
    assert_envelope(body.as_bytes(), "billing_error");
    assert_eq!(headers["x-should-retry"], "false", "a spent budget is not worth retrying soon");
    assert_eq!(headers["airlock-ratelimit-input-tokens-limit"], "30");
    assert_eq!(
        send(&h, &carol, false).await.0,
        429,
        "carol is outside eng, but her window is spent"
    );
    assert_eq!(send(&h, &mint(&h, "dave", &[]), false).await.0, 200, "dave is in neither");
    assert_eq!(h.mock.received().len(), 5);
}

#[tokio::test]
async fn concurrent_streams_and_requests_are_capped() {
    let id = fresh_id();
    let h = Harness::start_with_policy(
        &policy(&format!("  - id: {id}\n    concurrent_streams: 2\n    concurrent_requests: 3\n")),
        "",
    )
    .await;
    let t = h.token();
    let a = h.open_stream("scenario=stall; after=3").await;
    let b = h.open_stream("scenario=stall; after=3").await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let c = h.open_stream("scenario=stall; after=3").await;
    assert_eq!(c.status().as_u16(), 429, "a third stream");
    let refused = http_body_util::BodyExt::collect(c.into_body()).await.unwrap().to_bytes();
    assert_envelope(&refused, "rate_limit_error");
    // A plain request is the third in flight (it hangs upstream); a fourth is one too many.
    let auth = format!("Bearer {t}");
    let hang = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("x-mock", "scenario=hang"),
    ];
    let third = h.call(Method::POST, "/v1/messages", &hang, SIMPLE);
    let fourth = async {
        guard(h.mock.wait_until(|m| m.received().len() >= 3)).await;
        send(&h, &t, false).await
    };
    let (code, headers, body) = tokio::select! {
        _ = third => panic!("a hanging request was answered"),
        r = fourth => r,
    };
    assert_eq!(code, 429, "{body}");
    assert_eq!(headers["airlock-ratelimit-concurrent-requests-limit"], "3");
    let ids = [request_id(a.headers()), request_id(b.headers())];
    drop((a, b));
    for id in ids {
        h.records.wait_for_request(&id).await;
    }
    let again = h.open_stream("scenario=stall; after=3").await;
    assert_eq!(again.status().as_u16(), 200, "ended streams free their places");
}

/// Two gateways sharing the machine's Redis: a burst split across them never passes more
/// than the limit in total; concurrency and budgets are shared too.
#[tokio::test]
async fn two_gateways_share_counters_in_redis() {
    let redis = std::env::var("AIRLOCK_TEST_REDIS_URL")
        .expect("AIRLOCK_TEST_REDIS_URL must name a Redis server (scripts/test sets it)");
    let id = fresh_id();
    let limits = format!(
        "  - id: {id}b\n    groups: [eng]\n    input_tokens_per_month: 100\n  - id: {id}\n    requests_per_minute: 7\n  - id: {id}s\n    concurrent_streams: 1\n"
    );
    let a = Harness::start_with_policy(&policy(&limits), &format!("redis: {redis}\n")).await;
    let policy_file = a.config.policy.clone().unwrap();
    let b = a.sibling(&format!("policy: {}\nredis: {redis}\n", policy_file.display())).await;
    fresh_minute().await;
    let alice = mint(&a, "alice", &[]);
    let (ok, refused) = burst(&[&a, &b], &alice, 30).await;
    assert_eq!(ok, 7, "exactly the limit passes across both gateways");
    assert!(refused.iter().all(|(c, _, _)| *c == 429));
    // A stream held open on A takes the only stream place on B too.
    let bob = mint(&a, "bob", &[]);
    let auth = format!("Bearer {bob}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("x-mock", "scenario=stall; after=3"),
    ];
    let open = a.send(Method::POST, "/v1/messages", &headers, STREAM).await;
    assert_eq!(open.status(), 200);
    assert_eq!(send(&b, &bob, true).await.0, 429);
    let open_id = request_id(open.headers());
    drop(open);
    a.records.wait_for_request(&open_id).await;
    // A releases the lease in the background; once it has, B admits a stream again.
    guard(a.gateway.limiter.settled()).await;
    assert_eq!(send(&b, &bob, true).await.0, 200, "the ended stream freed its place");
    // The eng budget (100 input tokens a month; 17 a reply) is spent across both gateways:
    // six replies make 102, and once their usage has landed the seventh is refused.
    let carol = mint(&a, "carol", &["eng"]);
    for i in 0..6 {
        assert_eq!(send([&a, &b][i % 2], &carol, false).await.0, 200, "request {i}");
    }
    guard(async { tokio::join!(a.gateway.limiter.settled(), b.gateway.limiter.settled()) }).await;
    let (code, _, body) = send(&b, &carol, false).await;
    assert_eq!(code, 429, "{body}");
    assert_envelope(body.as_bytes(), "billing_error");
}

/// Redis unreachable: refused with 503 by default (fail closed); admitted with
/// `redis_on_failure: fail_open`. Requests no limit applies to never touch Redis.
#[tokio::test]
async fn an_unreachable_redis_fails_closed_unless_told_otherwise() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let limits = "  - id: only-eng\n    groups: [eng]\n    requests_per_minute: 100\n";
    let closed =
        Harness::start_with_policy(&policy(limits), &format!("redis: redis://127.0.0.1:{port}\n"))
            .await;
    let (code, _, body) = send(&closed, &mint(&closed, "alice", &["eng"]), false).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        send(&closed, &mint(&closed, "bob", &[]), false).await.0,
        200,
        "no limit applies to bob"
    );
    let open = Harness::start_with_policy(
        &policy(limits),
        &format!("redis: redis://127.0.0.1:{port}\nredis_on_failure: fail_open\n"),
    )
    .await;
    assert_eq!(send(&open, &mint(&open, "alice", &["eng"]), false).await.0, 200);
}
