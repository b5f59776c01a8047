//! End-to-end throughput and latency: USERS WebSocket clients connect
//! through the load balancer, then senders POST one notification per request
//! at RATE per second to random users for DURATION seconds. Every client
//! measures the delay from the send time carried in the metadata to receipt,
//! and every id the api returned must arrive exactly once.
//!
//! Settings (environment): TARGET (http://127.0.0.1:8080), JWT_SECRET and
//! API_KEY (required), USERS (2000), RATE (1000), DURATION (20), SENDERS
//! (64 concurrent HTTP connections), GRACE (10 s to wait for stragglers),
//! PROTOCOL (`native` at /ws, or `socketio` at /socket.io/).
//!
//! Runs on one thread, so it uses at most one core; it reports its own CPU
//! time so it can be accounted for. Exits non-zero when anything was lost,
//! duplicated or refused, or the rate was not reached.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::rt;
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use notify_auth::{jwt::sign_hs256, Claims};
use notify_bench::{cpu_secs, env_or, now_us, paced, percentile, post_accepted, Protocol};
use serde::Deserialize;

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    received: HashSet<u64>,
    duplicates: u64,
    sent: Vec<u64>,
    send_errors: u64,
    max_lag_ms: u64,
}

#[derive(Deserialize)]
struct Note {
    id: u64,
    metadata: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    sent_us: u64,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let target = env_or("TARGET", "http://127.0.0.1:8080".to_string())?;
    let secret = std::env::var("JWT_SECRET").context("JWT_SECRET must be set")?;
    let api_key = std::env::var("API_KEY").context("API_KEY must be set")?;
    let users: usize = env_or("USERS", 2000)?;
    let rate: u64 = env_or("RATE", 1000)?;
    let duration: u64 = env_or("DURATION", 20)?;
    let senders: u64 = env_or("SENDERS", 64)?;
    let grace: u64 = env_or("GRACE", 10)?;
    let protocol = Protocol::from_env()?;
    let ws_base = target.replacen("http", "ws", 1);
    let run = now_us();
    let stats = Rc::new(RefCell::new(Stats::default()));

    // Connect everyone first: a fresh client only gets live events.
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connector(awc::Connector::new().limit(0))
        .finish();
    let exp = now_us() / 1_000_000 + 3600;
    let started = Instant::now();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    let mut next = 0;
    let mut connected = 0;
    while connected < users {
        while next < users && pending.len() < 200 {
            let claims = Claims {
                sub: format!("bench-{run}-{next}"),
                exp,
                iat: None,
                jti: None,
                roles: Vec::new(),
            };
            let url = protocol.url(&ws_base, &sign_hs256(secret.as_bytes(), &claims)?);
            let request = client.ws(url);
            pending.push(async move {
                let (_, mut socket) = request
                    .connect()
                    .await
                    .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
                protocol
                    .greet(&mut socket)
                    .await
                    .map_err(anyhow::Error::msg)?;
                Ok::<_, anyhow::Error>(socket)
            });
            next += 1;
        }
        let Some(socket) = pending.next().await else {
            break;
        };
        let mut socket = socket?;
        connected += 1;
        let stats = stats.clone();
        rt::spawn(async move {
            while let Some(Ok(frame)) = socket.next().await {
                match frame {
                    awc::ws::Frame::Text(bytes) => {
                        if let Some(answer) = protocol.answer(&bytes) {
                            let _ = socket.send(awc::ws::Message::Text(answer.into())).await;
                            continue;
                        }
                        let Some(note) = protocol
                            .notification(&bytes)
                            .and_then(|json| serde_json::from_slice::<Note>(json).ok())
                        else {
                            continue;
                        };
                        let mut stats = stats.borrow_mut();
                        if !stats.received.insert(note.id) {
                            stats.duplicates += 1;
                        } else if let Some(meta) = note.metadata {
                            stats
                                .latencies_us
                                .push(now_us().saturating_sub(meta.sent_us));
                        }
                    }
                    awc::ws::Frame::Ping(bytes) => {
                        let _ = socket.send(awc::ws::Message::Pong(bytes)).await;
                    }
                    awc::ws::Frame::Close(_) => break,
                    _ => {}
                }
            }
        });
    }
    let connect_secs = started.elapsed().as_secs_f64();
    eprintln!("connected {connected} users in {connect_secs:.1} s");

    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connector(awc::Connector::new().limit(senders as usize))
        .finish();
    let total = rate * duration;
    let cpu_before = cpu_secs();
    let t0 = Instant::now();
    let url = Rc::new(format!("{target}/v1/notifications"));
    let api_key = Rc::new(api_key);
    let send = {
        let stats = stats.clone();
        move |j: u64| {
            let (http, stats, url, api_key) =
                (http.clone(), stats.clone(), url.clone(), api_key.clone());
            async move {
                let user = format!("bench-{run}-{}", fastrand(j) % users as u64);
                let body = format!(
                    r#"{{"recipients":["{user}"],"type":"bench","title":"b","message":"m","metadata":{{"sent_us":{}}}}}"#,
                    now_us()
                );
                let id = post_accepted(&http, &url, &api_key, body)
                    .await
                    .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
                    .and_then(|v| v["ids"][0].as_u64());
                let mut s = stats.borrow_mut();
                match id {
                    Some(id) => s.sent.push(id),
                    None => s.send_errors += 1,
                }
            }
        }
    };
    let max_lag = paced(rate, total, senders, send).await;
    stats.borrow_mut().max_lag_ms = max_lag;
    let send_secs = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(grace);
    while Instant::now() < deadline {
        {
            let s = stats.borrow();
            if s.sent.iter().all(|id| s.received.contains(id)) {
                break;
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu_secs() - cpu_before;

    let mut s = stats.borrow_mut();
    let lost = s.sent.iter().filter(|id| !s.received.contains(id)).count();
    s.latencies_us.sort_unstable();
    let l = &s.latencies_us;
    println!(
        "fanout protocol={} users={users} target_rate={rate}/s duration={duration}s senders={senders}\n  \
         sent={} achieved={:.0}/s send_errors={} received={} lost={lost} duplicated={} max_send_lag_ms={}\n  \
         delivery ms: p50={:.2} p95={:.2} p99={:.2} max={:.2}\n  \
         load generator cpu: {cpu:.1} s over {send_secs:.1} s ({:.0}% of one core)",
        protocol.name(),
        s.sent.len(),
        s.sent.len() as f64 / send_secs,
        s.send_errors,
        s.received.len(),
        s.duplicates,
        s.max_lag_ms,
        percentile(l, 50.0),
        percentile(l, 95.0),
        percentile(l, 99.0),
        percentile(l, 100.0),
        cpu / send_secs * 100.0,
    );
    let rate_reached = s.sent.len() as f64 / send_secs >= rate as f64 * 0.97;
    if lost > 0 || s.duplicates > 0 || s.send_errors > 0 || !rate_reached {
        std::process::exit(1);
    }
    Ok(())
}

/// A cheap deterministic spread of recipients (splitmix64).
fn fastrand(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
