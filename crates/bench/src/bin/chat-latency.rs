//! Chat latency: PAIRS direct conversations, each between a sender and a
//! receiver connected to two different gateways of GATEWAYS; senders write
//! `message.send` frames at RATE messages per second in total for DURATION
//! seconds. Each receiver measures the delay from the send time carried in
//! the body to the `message` frame; each sender the delay to its
//! `message.sent`. Every message must reach its receiver exactly once.
//!
//! Settings (environment): API (http://127.0.0.1:8081), GATEWAYS
//! ("ws://127.0.0.1:8082 ws://127.0.0.1:8083 ws://127.0.0.1:8084"),
//! JWT_SECRET (required), PAIRS (200), RATE (1000), DURATION (10), GRACE
//! (10 s to wait for stragglers), HOOK (a shell command run with the
//! argument `before` when sending starts and `after` once every message
//! arrived, e.g. to take MySQL's counters over exactly that window).
//!
//! Exits non-zero when any message was lost or duplicated, a send was
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
use notify_bench::{cpu_secs, endpoints, env_or, now_us, paced, percentile};
use tokio::sync::mpsc;

#[derive(Default)]
struct Stats {
    /// Send to `message` at the receiver.
    delivery_us: Vec<u64>,
    /// Send to `message.sent` at the sender.
    stored_us: Vec<u64>,
    /// Receipts per client id.
    receipts: HashMap<u64, u32>,
    sent: u64,
    refused: u64,
}

/// The number after `"key":` (or `"key":"t=`) in `frame`.
fn number_after(frame: &str, key: &str) -> Option<u64> {
    let start = frame.find(key)? + key.len();
    let digits = frame[start..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    frame[start..start + digits].parse().ok()
}

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

async fn connect(client: &awc::Client, url: String) -> anyhow::Result<Socket> {
    let (_, mut socket) = client
        .ws(url)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    match socket.next().await {
        Some(Ok(awc::ws::Frame::Text(bytes))) if bytes.starts_with(br#"{"type":"welcome""#) => {
            Ok(socket)
        }
        other => Err(anyhow::anyhow!("no welcome: {other:?}")),
    }
}

/// Sends what `outgoing` queues and reads until the socket closes,
/// recording what `record` finds.
fn serve(
    socket: Socket,
    stats: Rc<RefCell<Stats>>,
    outgoing: mpsc::UnboundedReceiver<String>,
    receiver: bool,
) {
    let (mut sink, mut stream) = socket.split();
    let mut outgoing = outgoing;
    rt::spawn(async move {
        loop {
            tokio::select! {
                text = outgoing.recv() => match text {
                    Some(text) => {
                        if sink.send(awc::ws::Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                frame = stream.next() => {
                    let Some(Ok(frame)) = frame else { break };
                    match frame {
                        awc::ws::Frame::Text(bytes) => {
                            let now = now_us();
                            let Ok(text) = std::str::from_utf8(&bytes) else { continue };
                            record(&stats, text, now, receiver);
                        }
                        awc::ws::Frame::Ping(bytes) => {
                            let _ = sink.send(awc::ws::Message::Pong(bytes)).await;
                        }
                        awc::ws::Frame::Close(_) => break,
                        _ => {}
                    }
                }
            }
        }
    });
}

fn record(stats: &RefCell<Stats>, text: &str, now: u64, receiver: bool) {
    let mut s = stats.borrow_mut();
    if text.starts_with(r#"{"type":"message","#) {
        // Senders get their own messages too: only the receiver's count.
        if let (true, Some(sent), Some(id)) = (
            receiver,
            number_after(text, r#""body":"t="#),
            number_after(text, r#""client_id":""#),
        ) {
            *s.receipts.entry(id).or_default() += 1;
            s.delivery_us.push(now.saturating_sub(sent));
        }
    } else if text.starts_with(r#"{"type":"message.sent""#) {
        if let Some(sent) = number_after(text, r#""body":"t="#) {
            s.stored_us.push(now.saturating_sub(sent));
        }
    } else if text.starts_with(r#"{"type":"error""#) {
        s.refused += 1;
        if s.refused <= 3 {
            eprintln!("refused: {text}");
        }
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let (api, gateways) = endpoints()?;
    anyhow::ensure!(
        gateways.len() >= 2,
        "GATEWAYS must name at least two gateways"
    );
    let secret = std::env::var("JWT_SECRET").context("JWT_SECRET must be set")?;
    let pairs: usize = env_or("PAIRS", 200)?;
    let rate: u64 = env_or("RATE", 1000)?;
    let duration: u64 = env_or("DURATION", 10)?;
    let grace: u64 = env_or("GRACE", 10)?;
    let run = now_us();
    let exp = run / 1_000_000 + 3600;
    let token = |user: &str| {
        let claims = Claims {
            sub: user.to_owned(),
            exp,
            iat: None,
            jti: None,
            roles: Vec::new(),
        };
        sign_hs256(secret.as_bytes(), &claims)
    };
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connector(awc::Connector::new().limit(0))
        .finish();
    let stats = Rc::new(RefCell::new(Stats::default()));

    // The pair's conversation, then both ends on different gateways.
    let mut senders = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let sender = format!("chat-bench-s{run}-{i}");
        let receiver = format!("chat-bench-r{run}-{i}");
        let mut response = client
            .post(format!("{api}/api/conversations"))
            .insert_header(("authorization", format!("Bearer {}", token(&sender)?)))
            .send_json(&serde_json::json!({"type": "direct", "members": [receiver]}))
            .await
            .map_err(|e| anyhow::anyhow!("create conversation: {e}"))?;
        let reply: serde_json::Value = response.json().await?;
        let conversation = reply["conversation"]["id"]
            .as_u64()
            .with_context(|| format!("no conversation: {reply}"))?;
        let ends = [
            (&gateways[i % gateways.len()], &sender),
            (&gateways[(i + 1) % gateways.len()], &receiver),
        ];
        let mut queues = Vec::new();
        for (end, (gateway, user)) in ends.into_iter().enumerate() {
            let socket = connect(&client, format!("{gateway}/ws?token={}", token(user)?)).await?;
            let (tx, rx) = mpsc::unbounded_channel();
            serve(socket, stats.clone(), rx, end == 1);
            queues.push(tx);
        }
        // The receiver's queue is kept only so its socket stays open.
        senders.push((conversation, queues));
    }
    eprintln!("{pairs} conversations, {} connections", pairs * 2);

    let hook = std::env::var("HOOK").ok().filter(|h| !h.is_empty());
    let run_hook = |when: &str| -> anyhow::Result<()> {
        if let Some(hook) = &hook {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{hook} {when}"))
                .status()?;
            anyhow::ensure!(status.success(), "HOOK {when} failed");
        }
        Ok(())
    };
    let total = rate * duration;
    run_hook("before")?;
    let cpu_before = cpu_secs();
    let t0 = Instant::now();
    let senders = Rc::new(senders);
    let send = {
        let (senders, stats) = (senders.clone(), stats.clone());
        move |j: u64| {
            let (conversation, queues) = &senders[j as usize % senders.len()];
            let frame = format!(
                r#"{{"type":"message.send","conversation_id":{conversation},"body":"t={}","client_id":"{j}"}}"#,
                now_us()
            );
            if queues[0].send(frame).is_ok() {
                stats.borrow_mut().sent += 1;
            }
            async {}
        }
    };
    paced(rate, total, 16, send).await;
    let send_secs = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(grace);
    while Instant::now() < deadline && (stats.borrow().delivery_us.len() as u64) < total {
        rt::time::sleep(Duration::from_millis(20)).await;
    }
    let all_secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;
    run_hook("after")?;

    let mut s = stats.borrow_mut();
    let delivered = s.receipts.len() as u64;
    let duplicated: u64 = s.receipts.values().map(|n| u64::from(n - 1)).sum();
    let lost = s.sent - delivered;
    s.delivery_us.sort_unstable();
    s.stored_us.sort_unstable();
    let (d, st) = (&s.delivery_us, &s.stored_us);
    println!(
        "chat-latency pairs={pairs} gateways={} target_rate={rate} messages/s duration={duration}s\n  \
         messages sent={} achieved={:.0}/s refused={} delivered={delivered} lost={lost} duplicated={duplicated}\n  \
         send -> other member's message ms: p50={:.2} p95={:.2} p99={:.2} max={:.2}\n  \
         send -> message.sent ms:           p50={:.2} p95={:.2} p99={:.2} max={:.2}\n  \
         load generator cpu: {cpu:.1} s over {all_secs:.1} s ({:.0}% of one core)",
        gateways.len(),
        s.sent,
        s.sent as f64 / send_secs,
        s.refused,
        percentile(d, 50.0),
        percentile(d, 95.0),
        percentile(d, 99.0),
        percentile(d, 100.0),
        percentile(st, 50.0),
        percentile(st, 95.0),
        percentile(st, 99.0),
        percentile(st, 100.0),
        cpu / all_secs * 100.0,
    );
    let rate_reached = s.sent as f64 / send_secs >= rate as f64 * 0.97;
    if lost > 0 || duplicated > 0 || s.refused > 0 || !rate_reached {
        std::process::exit(1);
    }
    Ok(())
}
