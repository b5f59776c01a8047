//! A TCP forwarder that can be switched off, cutting every open connection
//! and refusing new ones: a backing service "going away" for one test only.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Outage {
    pub port: u16,
    up: watch::Sender<bool>,
}

impl Outage {
    pub async fn start(upstream: SocketAddr) -> Outage {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let state = up.subscribe();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*state.borrow() {
                    continue; // dropped: the peer sees the connection close
                }
                let mut state = state.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = async { let _ = state.wait_for(|up| !*up).await; } => {}
                    }
                });
            }
        });
        Outage { port, up }
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// The host:port of the test MySQL server.
pub fn mysql_addr() -> SocketAddr {
    let base = crate::mysql_base();
    let authority = base.rsplit('@').next().unwrap().trim_end_matches('/');
    authority.parse().unwrap()
}

/// `url` (a MySQL URL) rewritten to go through the forwarder on `port`.
pub fn mysql_url_via(url: &str, port: u16) -> String {
    let (head, db) = url.rsplit_once('/').unwrap();
    let (user, _) = head.rsplit_once('@').unwrap();
    // mysql_async would otherwise switch to the unix socket and bypass the
    // forwarder.
    format!("{user}@127.0.0.1:{port}/{db}?prefer_socket=false")
}
