//! Topic fan-out: SUBSCRIBERS WebSocket clients, spread round-robin over
//! the gateways in GATEWAYS, subscribe to one topic; then senders POST one
//! topic event per request to the api at RATE per second for DURATION
//! seconds. Every client measures the delay from the send time carried in
//! the event's data to receipt; every event must reach every subscriber
//! exactly once.
//!
//! Settings (environment): API (http://127.0.0.1:8081), GATEWAYS
//! ("ws://127.0.0.1:8082 ws://127.0.0.1:8083 ws://127.0.0.1:8084"),
//! JWT_SECRET and API_KEY (required), SUBSCRIBERS (1000), RATE (100 events
//! per second), DURATION (10), SENDERS (16 concurrent HTTP connections),
//! GRACE (10 s to wait for stragglers).
//!
//! Runs on one thread and reads frames without a JSON parser, so that it
//! keeps up with the deliveries it counts; it reports its own CPU time.
//! Exits non-zero when any delivery was lost or duplicated, a send was
//! refused, or the rate was not reached.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::rt;
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use notify_auth::{jwt::sign_hs256, Claims};
use notify_bench::{cpu_secs, endpoints, env_or, now_us, paced, percentile, post_accepted};

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    /// Receipts per event id.
    receipts: HashMap<String, u32>,
    sent: Vec<String>,
    send_errors: u64,
    max_lag_ms: u64,
    /// Subscribers per gateway node, from their `welcome`.
    nodes: HashMap<String, usize>,
}

/// The string value of `"key":"…"` in `frame`.
fn string_field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let start = frame.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = frame[start..].find('"')?;
    Some(&frame[start..start + len])
}

/// The number after `"key":` in `frame`.
fn number_field(frame: &str, key: &str) -> Option<u64> {
    let start = frame.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits = frame[start..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    frame[start..start + digits].parse().ok()
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let (api, gateways) = endpoints()?;
    let secret = std::env::var("JWT_SECRET").context("JWT_SECRET must be set")?;
    let api_key = std::env::var("API_KEY").context("API_KEY must be set")?;
    let subscribers: usize = env_or("SUBSCRIBERS", 1000)?;
    let rate: u64 = env_or("RATE", 100)?;
    let duration: u64 = env_or("DURATION", 10)?;
    let senders: u64 = env_or("SENDERS", 16)?;
    let grace: u64 = env_or("GRACE", 10)?;
    let run = now_us();
    let topic = format!("bench.{run}");
    let stats = Rc::new(RefCell::new(Stats::default()));

    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connector(awc::Connector::new().limit(0))
        .finish();
    let exp = now_us() / 1_000_000 + 3600;
    let started = Instant::now();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    let mut next = 0;
    let mut ready = 0;
    while ready < subscribers {
        while next < subscribers && pending.len() < 200 {
            let claims = Claims {
                sub: format!("topic-bench-{run}-{next}"),
                exp,
                iat: None,
                jti: None,
                roles: Vec::new(),
            };
            let base = &gateways[next % gateways.len()];
            let url = format!(
                "{base}/ws?token={}",
                sign_hs256(secret.as_bytes(), &claims)?
            );
            let request = client.ws(url);
            let subscribe = format!(r#"{{"type":"subscribe","topic":"{topic}"}}"#);
            pending.push(async move {
                let (_, mut socket) = request
                    .connect()
                    .await
                    .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
                let node = match socket.next().await {
                    Some(Ok(awc::ws::Frame::Text(bytes))) => {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        string_field(&text, "node").unwrap_or("?").to_owned()
                    }
                    other => return Err(anyhow::anyhow!("no welcome: {other:?}")),
                };
                socket
                    .send(awc::ws::Message::Text(subscribe.into()))
                    .await
                    .map_err(|e| anyhow::anyhow!("subscribe: {e}"))?;
                match socket.next().await {
                    Some(Ok(awc::ws::Frame::Text(bytes)))
                        if bytes.starts_with(br#"{"type":"subscribed""#) =>
                    {
                        Ok((socket, node))
                    }
                    other => Err(anyhow::anyhow!("not subscribed: {other:?}")),
                }
            });
            next += 1;
        }
        let Some(socket) = pending.next().await else {
            break;
        };
        let (mut socket, node) = socket?;
        ready += 1;
        *stats.borrow_mut().nodes.entry(node).or_default() += 1;
        let stats = stats.clone();
        rt::spawn(async move {
            while let Some(Ok(frame)) = socket.next().await {
                match frame {
                    awc::ws::Frame::Text(bytes) => {
                        let received = now_us();
                        let Ok(text) = std::str::from_utf8(&bytes) else {
                            continue;
                        };
                        if !text.starts_with(r#"{"type":"event""#) {
                            continue;
                        }
                        let (Some(id), Some(sent)) =
                            (string_field(text, "id"), number_field(text, "sent_us"))
                        else {
                            continue;
                        };
                        let mut stats = stats.borrow_mut();
                        *stats.receipts.entry(id.to_owned()).or_default() += 1;
                        stats.latencies_us.push(received.saturating_sub(sent));
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
    eprintln!("{ready} subscribers connected and subscribed in {connect_secs:.1} s");

    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connector(awc::Connector::new().limit(senders as usize))
        .finish();
    let total = rate * duration;
    let cpu_before = cpu_secs();
    let t0 = Instant::now();
    let url = Rc::new(format!("{api}/v1/events"));
    let api_key = Rc::new(api_key);
    let send = {
        let (stats, topic) = (stats.clone(), Rc::new(topic.clone()));
        move |_| {
            let (http, stats, url, api_key, topic) = (
                http.clone(),
                stats.clone(),
                url.clone(),
                api_key.clone(),
                topic.clone(),
            );
            async move {
                let body = format!(
                    r#"{{"event":"bench","topic":"{topic}","data":{{"sent_us":{}}}}}"#,
                    now_us()
                );
                let reply = post_accepted(&http, &url, &api_key, body).await;
                let text = reply.map(|body| String::from_utf8_lossy(&body).into_owned());
                let mut s = stats.borrow_mut();
                match text.as_deref().and_then(|t| string_field(t, "id")) {
                    Some(id) => s.sent.push(id.to_owned()),
                    None => s.send_errors += 1,
                }
            }
        }
    };
    let max_lag = paced(rate, total, senders, send).await;
    stats.borrow_mut().max_lag_ms = max_lag;
    let send_secs = t0.elapsed().as_secs_f64();
    let expected = |s: &Stats| s.sent.len() as u64 * ready as u64;
    let deadline = Instant::now() + Duration::from_secs(grace);
    while Instant::now() < deadline {
        {
            let s = stats.borrow();
            if s.latencies_us.len() as u64 >= expected(&s) {
                break;
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let all_secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;

    let mut s = stats.borrow_mut();
    let delivered: u64 = s
        .sent
        .iter()
        .map(|id| u64::from(s.receipts.get(id).copied().unwrap_or(0).min(ready as u32)))
        .sum();
    let lost = expected(&s) - delivered;
    let duplicated: u64 = s
        .receipts
        .values()
        .map(|n| u64::from(n.saturating_sub(ready as u32)))
        .sum();
    let mut nodes: Vec<String> = s.nodes.iter().map(|(n, c)| format!("{n}={c}")).collect();
    nodes.sort();
    s.latencies_us.sort_unstable();
    let l = &s.latencies_us;
    println!(
        "topic-fanout subscribers={ready} ({}) target_rate={rate} events/s duration={duration}s\n  \
         events sent={} achieved={:.0}/s send_errors={} deliveries={} ({:.0}/s) lost={lost} duplicated={duplicated} max_send_lag_ms={}\n  \
         delivery ms: p50={:.2} p95={:.2} p99={:.2} max={:.2}\n  \
         load generator cpu: {cpu:.1} s over {all_secs:.1} s ({:.0}% of one core)",
        nodes.join(" "),
        s.sent.len(),
        s.sent.len() as f64 / send_secs,
        s.send_errors,
        delivered,
        delivered as f64 / all_secs,
        s.max_lag_ms,
        percentile(l, 50.0),
        percentile(l, 95.0),
        percentile(l, 99.0),
        percentile(l, 100.0),
        cpu / all_secs * 100.0,
    );
    let rate_reached = s.sent.len() as f64 / send_secs >= rate as f64 * 0.97;
    if lost > 0 || duplicated > 0 || s.send_errors > 0 || !rate_reached {
        std::process::exit(1);
    }
    Ok(())
}
