//! demo-server's endpoints.

use std::time::Duration;

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Query},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;

/// The longest `/slow` wait and the largest `/large` body: a demo, not a load tool.
pub const MAX_SLOW_MS: u64 = 60_000;
pub const MAX_LARGE_BYTES: usize = 64 * 1024 * 1024;

pub fn router() -> Router {
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/echo", post(echo).put(echo))
        .route("/slow", get(slow))
        .route("/chunked", get(chunked))
        .route("/large", get(large))
        .route("/status/{code}", get(status).post(status))
}

async fn root() -> &'static str {
    "Hello from demo-server: try /healthz, /echo, /slow?ms=200, /chunked, /large?bytes=100000, /status/418\n"
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Returns the request body with its Content-Type.
async fn echo(headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| header::HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[derive(Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

async fn slow(Query(p): Query<SlowParams>) -> String {
    let ms = p.ms.unwrap_or(500).min(MAX_SLOW_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms\n")
}

/// The parts `/chunked` streams, a little apart, so the body really goes out in pieces.
pub const CHUNKS: [&str; 5] = [
    "first chunk\n",
    "second chunk\n",
    "third chunk\n",
    "fourth chunk\n",
    "last chunk\n",
];

async fn chunked() -> Response {
    let stream = futures_util::stream::unfold(0usize, |i| async move {
        if i >= CHUNKS.len() {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from_static(CHUNKS[i].as_bytes())),
            i + 1,
        ))
    });
    // No Content-Length: hyper sends the stream with chunked transfer coding.
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LargeParams {
    bytes: Option<usize>,
}

/// The `/large` body: a-z repeated, so any byte can be checked from its offset.
pub fn large_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

async fn large(Query(p): Query<LargeParams>) -> Response {
    let n = p.bytes.unwrap_or(100_000);
    if n > MAX_LARGE_BYTES {
        return (
            StatusCode::BAD_REQUEST,
            format!("bytes is at most {MAX_LARGE_BYTES}\n"),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain")], large_body(n)).into_response()
}

async fn status(Path(code): Path<u16>) -> Response {
    match StatusCode::from_u16(code) {
        Ok(s) if (200..600).contains(&code) => {
            if s == StatusCode::NO_CONTENT || s == StatusCode::NOT_MODIFIED {
                s.into_response()
            } else {
                (s, format!("status {code}\n")).into_response()
            }
        }
        _ => (
            StatusCode::BAD_REQUEST,
            format!("{code} is not a final status code (200-599)\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::{body::to_bytes, http::Request};
    use tower::ServiceExt as _;

    use super::*;

    async fn call(req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let resp = router().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        (
            parts.status,
            parts.headers,
            to_bytes(body, usize::MAX).await.unwrap().to_vec(),
        )
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn root_and_healthz() {
        let (s, _, b) = call(get("/")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            String::from_utf8(b)
                .unwrap()
                .starts_with("Hello from demo-server")
        );
        let (s, h, b) = call(get("/healthz")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert_eq!(b, br#"{"status":"ok"}"#);
    }

    #[tokio::test]
    async fn echo_returns_body_and_content_type() {
        let req = Request::post("/echo")
            .header(header::CONTENT_TYPE, "application/x-test")
            .body(Body::from("ping"))
            .unwrap();
        let (s, h, b) = call(req).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h[header::CONTENT_TYPE], "application/x-test");
        assert_eq!(b, b"ping");
    }

    #[tokio::test]
    async fn slow_waits_the_requested_time() {
        let start = std::time::Instant::now();
        let (s, _, b) = call(get("/slow?ms=120")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(start.elapsed() >= Duration::from_millis(120));
        assert_eq!(b, b"slept 120 ms\n");
    }

    #[tokio::test]
    async fn chunked_streams_every_part() {
        let (s, h, b) = call(get("/chunked")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(h.get(header::CONTENT_LENGTH).is_none());
        assert_eq!(b, CHUNKS.concat().as_bytes());
    }

    #[tokio::test]
    async fn large_has_the_requested_size_and_pattern() {
        let (s, _, b) = call(get("/large?bytes=200000")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b, large_body(200_000));
        assert_eq!(&b[..3], b"abc");
        let (s, _, _) = call(get(&format!("/large?bytes={}", MAX_LARGE_BYTES + 1))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn status_returns_the_code() {
        assert_eq!(call(get("/status/418")).await.0, StatusCode::IM_A_TEAPOT);
        let (s, _, b) = call(get("/status/204")).await;
        assert_eq!((s, b.len()), (StatusCode::NO_CONTENT, 0));
        assert_eq!(call(get("/status/101")).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(call(get("/status/999")).await.0, StatusCode::BAD_REQUEST);
    }
}
