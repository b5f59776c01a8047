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

/// The client protocol a load generator speaks (`PROTOCOL`): the native
/// one at `/ws`, or Socket.IO at `/socket.io/` (the websocket transport),
/// so the two paths are measured with the same clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Native,
    SocketIo,
}

/// A client's WebSocket, as awc gives it.
pub type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

impl Protocol {
    pub fn from_env() -> anyhow::Result<Protocol> {
        match std::env::var("PROTOCOL").as_deref() {
            Err(_) | Ok("native") => Ok(Protocol::Native),
            Ok("socketio") => Ok(Protocol::SocketIo),
            Ok(other) => anyhow::bail!("PROTOCOL must be native or socketio, not {other:?}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Native => "native",
            Protocol::SocketIo => "socketio",
        }
    }

    /// The upgrade URL on `ws_base` (`ws://host:port`), the token in the query.
    pub fn url(self, ws_base: &str, token: &str) -> String {
        match self {
            Protocol::Native => format!("{ws_base}/ws?token={token}"),
            Protocol::SocketIo => {
                format!("{ws_base}/socket.io/?EIO=4&transport=websocket&token={token}")
            }
        }
    }

    /// From the upgrade to a connected client: `welcome`, or the open
    /// packet, the CONNECT and its answer.
    pub async fn greet(self, socket: &mut Socket) -> Result<(), String> {
        use futures_util::SinkExt;
        let first = next_text(socket).await?;
        if self == Protocol::Native {
            return Ok(());
        }
        if !first.starts_with(b"0{") {
            return Err(format!("no open packet: {first:?}"));
        }
        socket
            .send(awc::ws::Message::Text("40".into()))
            .await
            .map_err(|e| e.to_string())?;
        let connected = next_text(socket).await?;
        if !connected.starts_with(b"40{") {
            return Err(format!("CONNECT refused: {connected:?}"));
        }
        Ok(())
    }

    /// The notification object a text frame carries, if it is a new
    /// notification.
    pub fn notification(self, text: &[u8]) -> Option<&[u8]> {
        match self {
            Protocol::Native => {
                let rest = text.strip_prefix(br#"{"type":"notification","notification":"#)?;
                rest.strip_suffix(b"}")
            }
            Protocol::SocketIo => {
                let rest = text.strip_prefix(br#"42["new_notification","#)?;
                rest.strip_suffix(b"]")
            }
        }
    }

    /// What a text frame needs answered: Engine.IO's ping.
    pub fn answer(self, text: &[u8]) -> Option<&'static str> {
        (self == Protocol::SocketIo && text == b"2").then_some("3")
    }
}

/// The next frame, which must be a text frame.
async fn next_text(socket: &mut Socket) -> Result<actix_web::web::Bytes, String> {
    use futures_util::StreamExt;
    match socket.next().await {
        Some(Ok(awc::ws::Frame::Text(bytes))) => Ok(bytes),
        other => Err(format!("expected a text frame: {other:?}")),
    }
}
