//! Health, readiness and graceful shutdown.

use crate::harness::*;
use http::Method;
use http_body_util::BodyExt;

#[tokio::test]
async fn admin_plane_health_and_readiness() {
    let h = Harness::start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    for (path, status) in [("/healthz", 200), ("/readyz", 200), ("/v1/messages", 404)] {
        let resp =
            guard(client.get(format!("http://{}{path}", h.admin).parse().unwrap())).await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
    }
    // The data plane does not serve admin paths.
    let (status, _, _) = h.call(Method::GET, "/healthz", &[], "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn shutdown_lets_open_streams_finish_and_stops_accepting() {
    let mut h = Harness::start().await;
    let resp = h.open_stream("scenario=text; chunk=2; delay_ms=20").await;
    assert_eq!(resp.status(), 200);
    h.shutdown();
    // The stream that was open completes normally, with the upstream's own message_stop.
    let body = guard(resp.into_body().collect()).await.unwrap().to_bytes();
    let events = decode_events(&body);
    assert_eq!(events.last().unwrap().0, "message_stop");
    guard(h.stopped.take().unwrap()).await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(h.addr).await.is_err(),
        "still accepting after shutdown"
    );
}
