//! A TCP forwarder in front of a real service that misbehaves on request,
//! the way networks do: it can go silent without closing anything (a
//! stalled or partitioned link: no RST, packets just stop), delay what the
//! client sends, or cut the next connections that carry a given command.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How the proxy treats traffic from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Nothing passes in either direction and nothing is closed: what is
    /// sent meanwhile is lost, as on a dead link.
    Silent,
    /// What the client sends reaches the server this much later (in order).
    Delay(Duration),
}

struct Cut {
    /// Bytes that mark a connection to cut when the client sends them.
    marker: Vec<u8>,
    /// Connections still to cut.
    remaining: usize,
}

pub struct FaultProxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    cut: Arc<Mutex<Option<Cut>>>,
}

impl FaultProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, _) = watch::channel(Mode::Forward);
        let cut: Arc<Mutex<Option<Cut>>> = Arc::default();
        let modes = mode.subscribe();
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let (cut_tx, cut_rx) = watch::channel(false);
                tokio::spawn(upstream_pump(
                    client_read,
                    server_write,
                    modes.clone(),
                    cuts.clone(),
                    cut_tx,
                ));
                tokio::spawn(downstream_pump(
                    server_read,
                    client_write,
                    modes.clone(),
                    cut_rx,
                ));
            }
        });
        FaultProxy { port, mode, cut }
    }

    /// A proxy in front of the test Redis server.
    pub async fn redis() -> FaultProxy {
        let url = crate::redis_url();
        let authority = url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let addr = tokio::net::lookup_host(authority)
            .await
            .unwrap()
            .next()
            .unwrap();
        Self::start(addr).await
    }

    /// `redis://` URL through this proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Closes the next `count` connections on which the client sends
    /// `marker` (for Redis, e.g. `PUBLISH`), before it reaches the server.
    pub fn cut_connections_sending(&self, marker: &str, count: usize) {
        *self.cut.lock().unwrap() = Some(Cut {
            marker: marker.as_bytes().to_vec(),
            remaining: count,
        });
    }

    /// Connections still to be cut.
    pub fn cuts_remaining(&self) -> usize {
        self.cut.lock().unwrap().as_ref().map_or(0, |c| c.remaining)
    }
}

/// Client to server: applies every mode and the cut.
async fn upstream_pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    cuts: Arc<Mutex<Option<Cut>>>,
    cut: watch::Sender<bool>,
) {
    // Delayed chunks wait here with their due time, so a delay adds latency
    // once rather than once per queued chunk.
    let (delayed_tx, mut delayed_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, chunk)) = delayed_rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            if should_cut(&cuts, chunk) {
                cut.send_replace(true);
                return;
            }
            let due = match *mode.borrow() {
                Mode::Forward => Instant::now(),
                Mode::Silent => continue,
                Mode::Delay(delay) => Instant::now() + delay,
            };
            if delayed_tx.send((due, chunk.to_vec())).is_err() {
                return;
            }
        }
    };
    // Either side ending drops both halves, closing the connection.
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
}

/// Server to client: silent when the link is, closed when cut.
async fn downstream_pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = cut.wait_for(|cut| *cut) => return,
        };
        if *mode.borrow() == Mode::Silent {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn should_cut(cuts: &Mutex<Option<Cut>>, chunk: &[u8]) -> bool {
    let mut cuts = cuts.lock().unwrap();
    let Some(cut) = cuts.as_mut() else {
        return false;
    };
    let marked = cut.remaining > 0
        && chunk
            .windows(cut.marker.len())
            .any(|window| window == cut.marker.as_slice());
    if marked {
        cut.remaining -= 1;
    }
    marked
}
