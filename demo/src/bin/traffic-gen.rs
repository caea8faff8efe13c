//! traffic-gen: sends a mix of HTTP requests to demo-server and checks every answer.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use http_profiler_demo::traffic::{PlanSettings, Planned, Tally, check, plan};
use hyper::{Request, Uri};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::sync::{Mutex, mpsc};

/// Sends GET and POST requests across demo-server's endpoints, over kept-alive and new
/// connections, checks each answer, and prints a summary. Exits 0 only if every request
/// got the answer it expected.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Base URL of demo-server (plain HTTP).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Requests per second in all; 0 sends as fast as the workers go.
    #[arg(long, default_value_t = 20)]
    rps: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Stop after this many seconds (unless --count is reached first).
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after this many requests.
    #[arg(long)]
    count: Option<u64>,
    /// The wait /slow is asked for, in milliseconds.
    #[arg(long, default_value_t = 50)]
    slow_ms: u64,
    /// The body size /large is asked for.
    #[arg(long, default_value_t = 200_000)]
    large_bytes: usize,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json_summary: Option<PathBuf>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn send(client: &HttpClient, base: &str, p: &Planned) -> Result<(), String> {
    let uri: Uri = format!("{base}{}", p.target)
        .parse()
        .map_err(|e| format!("bad URL: {e}"))?;
    let mut req = Request::builder()
        .method(p.method)
        .uri(uri)
        .header("user-agent", "traffic-gen");
    let body = match &p.body {
        Some((content_type, bytes)) => {
            req = req.header("content-type", *content_type);
            Full::new(Bytes::from(bytes.clone()))
        }
        None => Full::new(Bytes::new()),
    };
    let req = req.body(body).map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("{} {}: {e}", p.method, p.target))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{} {}: reading body: {e}", p.method, p.target))?;
    check(p, status, &body.to_bytes())
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let args = Args::parse();
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let base = args.target.trim_end_matches('/').to_string();
    base.parse::<Uri>()
        .with_context(|| format!("--target {base} is not a URL"))?;
    let settings = PlanSettings {
        slow_ms: args.slow_ms,
        large_bytes: args.large_bytes,
    };
    let keep_alive: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    // No idle connections kept: every request on this client opens a new one.
    let fresh: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();

    let (tx, rx) = mpsc::channel::<u64>(args.concurrency);
    let rx = Arc::new(Mutex::new(rx));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (rx, tally, base) = (rx.clone(), tally.clone(), base.clone());
        let (keep_alive, fresh) = (keep_alive.clone(), fresh.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(i) = rx.lock().await.recv().await else {
                    break;
                };
                let p = plan(i, settings);
                let client = if p.fresh_connection {
                    &fresh
                } else {
                    &keep_alive
                };
                let t0 = Instant::now();
                let result = send(client, &base, &p).await;
                tally
                    .lock()
                    .await
                    .record(&p, result, t0.elapsed().as_micros() as u64);
            }
        }));
    }

    let deadline = args.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut pace = (args.rps > 0)
        .then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / args.rps as f64)));
    let dispatch = async {
        let mut i = 0u64;
        loop {
            if args.count.is_some_and(|c| i >= c) || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if let Some(p) = pace.as_mut() {
                p.tick().await;
            }
            if tx.send(i).await.is_err() {
                break;
            }
            i += 1;
        }
    };
    tokio::select! {
        _ = dispatch => {}
        _ = tokio::signal::ctrl_c() => eprintln!("traffic-gen: interrupted; finishing the requests in flight"),
    }
    drop(tx);
    for w in workers {
        w.await?;
    }
    let tally = Arc::try_unwrap(tally)
        .map_err(|_| anyhow::anyhow!("workers still hold the tally"))?
        .into_inner();
    let summary = tally.finish(start.elapsed().as_secs_f64());
    print!("{}", summary.human());
    if let Some(path) = &args.json_summary {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if summary.errors == 0 && summary.sent > 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
