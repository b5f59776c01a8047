//! Opens many WebSocket connections, waits for each one's first frame, prints
//! how long that took, then holds them (answering pings) until stdin closes.
//!
//! `ws-hold URL COUNT [CONCURRENCY]`; with `JWT_SECRET` set, connection i
//! authenticates as user `hold-i` with an `Authorization: Bearer` token.
//! `PROTOCOL=socketio`: URL is a `/socket.io/` one and each connection
//! completes Socket.IO's CONNECT (and answers its pings).
//! Prints `READY <count> <seconds> <per second>` once all are open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use actix_web::rt;
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use notify_auth::{jwt::sign_hs256, Claims};
use tokio::io::AsyncReadExt;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .context("usage: ws-hold URL COUNT [CONCURRENCY]")?
        .clone();
    let count: usize = args.get(2).context("COUNT")?.parse()?;
    let concurrency: usize = args.get(3).map(|c| c.parse()).transpose()?.unwrap_or(200);
    let secret = std::env::var("JWT_SECRET").ok();
    let protocol = notify_bench::Protocol::from_env()?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connector(awc::Connector::new().limit(0))
        .finish();

    let started = Instant::now();
    let mut opened = 0usize;
    let mut failed = 0usize;
    let mut next = 0usize;
    let mut pending = futures_util::stream::FuturesUnordered::new();
    while opened + failed < count {
        while next < count && pending.len() < concurrency {
            let mut request = client.ws(&url);
            if let Some(secret) = &secret {
                let claims = Claims {
                    sub: format!("hold-{next}"),
                    exp,
                    iat: None,
                    jti: None,
                    roles: Vec::new(),
                };
                let token = sign_hs256(secret.as_bytes(), &claims)?;
                request = request.bearer_auth(token);
            }
            pending.push(async move {
                let (_, mut framed) = request.connect().await.map_err(|e| e.to_string())?;
                protocol.greet(&mut framed).await?;
                Ok::<_, String>(framed)
            });
            next += 1;
        }
        match pending.next().await {
            Some(Ok(mut framed)) => {
                opened += 1;
                rt::spawn(async move {
                    while let Some(Ok(frame)) = framed.next().await {
                        match frame {
                            awc::ws::Frame::Ping(bytes) => {
                                let _ = framed.send(awc::ws::Message::Pong(bytes)).await;
                            }
                            awc::ws::Frame::Text(text) => {
                                if let Some(answer) = protocol.answer(&text) {
                                    let _ =
                                        framed.send(awc::ws::Message::Text(answer.into())).await;
                                }
                            }
                            _ => {}
                        }
                    }
                });
            }
            Some(Err(error)) => {
                failed += 1;
                if failed <= 5 {
                    eprintln!("connect failed: {error}");
                }
            }
            None => break,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "READY {opened} {secs:.3} {:.0} failed={failed}",
        opened as f64 / secs
    );
    // Hold until the caller closes our stdin.
    let mut sink = [0u8; 64];
    let mut stdin = tokio::io::stdin();
    while stdin.read(&mut sink).await.map(|n| n > 0).unwrap_or(false) {}
    Ok(())
}
