//! Measurement tools for `loadtest/`; see the binaries. What they share:
//! settings, clocks, percentiles and open-loop pacing of senders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A setting from the environment, or `default` when unset or empty.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().map_err(|e| anyhow::anyhow!("{name}: {e}")),
        _ => Ok(default),
    }
}

/// The api (`API`, http://127.0.0.1:8081) and the gateways' WebSocket
/// bases (`GATEWAYS`, those of `scripts/cluster up`).
pub fn endpoints() -> anyhow::Result<(String, Vec<String>)> {
    let api = env_or("API", "http://127.0.0.1:8081".to_string())?;
    let gateways = env_or(
        "GATEWAYS",
        "ws://127.0.0.1:8082 ws://127.0.0.1:8083 ws://127.0.0.1:8084".to_string(),
    )?
    .split_whitespace()
    .map(str::to_owned)
    .collect();
    Ok((api, gateways))
}

/// Wall-clock microseconds, the unit of the send times carried in events.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// CPU seconds (user and system) this process has used.
pub fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

/// The `p`th percentile of microsecond values, in milliseconds.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Open-loop pacing: `send(j)` for every j below `total`, each due at
/// `j / rate` seconds after the start, over `senders` concurrent local
/// tasks (sender k owns the sends k, k + senders, ...), so a slow answer
/// delays only its own sender. Returns the latest any send started, in ms.
pub async fn paced<F, Fut>(rate: u64, total: u64, senders: u64, send: F) -> u64
where
    F: Fn(u64) -> Fut + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let t0 = Instant::now();
    let max_lag = Rc::new(Cell::new(0u64));
    let mut workers = Vec::new();
    for k in 0..senders {
        let send = send.clone();
        let max_lag = max_lag.clone();
        workers.push(actix_web::rt::spawn(async move {
            let mut j = k;
            while j < total {
                let due = t0 + Duration::from_micros(j * 1_000_000 / rate.max(1));
                let now = Instant::now();
                if due > now {
                    actix_web::rt::time::sleep_until(due.into()).await;
                } else {
                    max_lag.set(max_lag.get().max((now - due).as_millis() as u64));
                }
                send(j).await;
                j += senders;
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    max_lag.get()
}

/// POSTs a JSON `body` with the API key; the answer's body when it is 202.
pub async fn post_accepted(
    http: &awc::Client,
    url: &str,
    api_key: &str,
    body: String,
) -> Option<actix_web::web::Bytes> {
    let mut response = http
        .post(url)
        .insert_header(("x-api-key", api_key))
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .ok()?;
    if response.status().as_u16() != 202 {
        return None;
    }
    response.body().await.ok()
}
