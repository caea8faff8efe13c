//! demo-server: a small HTTP service for http-profiler to watch.

use clap::Parser;

/// A demo HTTP/1.1 service: /, /healthz, /echo, /slow?ms=, /chunked, /large?bytes=,
/// /status/{code}.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e} (choose another with --listen)",
                args.listen
            )
        })?;
    eprintln!(
        "demo-server: listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, http_profiler_demo::server::router())
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
    Ok(())
}
