//! A WebSocket client for tests, over a real TCP connection.

use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for any one frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq)]
pub enum Received {
    Text(Value),
    Close(Option<u16>, String),
    Pong(Vec<u8>),
    /// A text frame that is not JSON (a Socket.IO packet such as `40{...}`).
    Packet(String),
    Other(String),
    /// The connection ended without a close frame.
    Ended,
}

pub struct WsClient {
    framed: Framed<BoxedSocket, Codec>,
    /// Answer protocol pings (a well-behaved client); off to play dead.
    pub auto_pong: bool,
}

impl WsClient {
    /// Opens `/ws`; on refusal returns the HTTP status (0 when nothing
    /// answered at all).
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, u16> {
        let mut request = awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish()
            .ws(url)
            .max_frame_size(1 << 20);
        for (name, value) in headers {
            request = request.set_header(*name, *value);
        }
        match request.connect().await {
            Ok((_, framed)) => Ok(WsClient {
                framed,
                auto_pong: true,
            }),
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => Err(status.as_u16()),
            Err(_) => Err(0),
        }
    }

    /// Connects with a token in the `Authorization` header and returns the
    /// client with its `welcome` frame.
    pub async fn connect_as(base: &str, token: &str) -> (WsClient, Value) {
        let auth = format!("Bearer {token}");
        let mut client = Self::connect(&format!("{base}/ws"), &[("authorization", &auth)])
            .await
            .unwrap_or_else(|status| panic!("connect refused with {status}"));
        let welcome = client.text().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (client, welcome)
    }

    pub async fn next(&mut self) -> Received {
        self.next_within(FRAME_TIMEOUT)
            .await
            .expect("no frame within the timeout")
    }

    /// The next frame, or None if none came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .ok()?;
            let received = match frame {
                None | Some(Err(_)) => Received::Ended,
                Some(Ok(Frame::Ping(bytes))) => {
                    if self.auto_pong {
                        let _ = self.framed.send(Message::Pong(bytes)).await;
                    }
                    continue;
                }
                Some(Ok(Frame::Pong(bytes))) => Received::Pong(bytes.to_vec()),
                Some(Ok(Frame::Text(bytes))) => match serde_json::from_slice(&bytes) {
                    Ok(value) => Received::Text(value),
                    Err(_) => Received::Packet(String::from_utf8_lossy(&bytes).into_owned()),
                },
                Some(Ok(Frame::Close(reason))) => Received::Close(
                    reason.as_ref().map(|r| u16::from(r.code)),
                    reason.and_then(|r| r.description).unwrap_or_default(),
                ),
                Some(Ok(other)) => Received::Other(format!("{other:?}")),
            };
            return Some(received);
        }
    }

    /// The next frame, which must be a text frame.
    pub async fn text(&mut self) -> Value {
        match self.next().await {
            Received::Text(value) => value,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame as it was sent (Socket.IO packets; a frame that
    /// happens to be JSON, such as `2`, as its JSON text).
    pub async fn packet(&mut self) -> String {
        match self.next().await {
            Received::Packet(text) => text,
            Received::Text(value) => value.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next notification frame's notification id.
    pub async fn notification_id(&mut self) -> u64 {
        let frame = self.text().await;
        assert_eq!(frame["type"], "notification", "{frame}");
        frame["notification"]["id"].as_u64().unwrap()
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (Option<u16>, String) {
        loop {
            match self.next().await {
                Received::Close(code, reason) => return (code, reason),
                Received::Ended => return (None, String::new()),
                Received::Text(_)
                | Received::Packet(_)
                | Received::Pong(_)
                | Received::Other(_) => {}
            }
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.framed
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    pub async fn send_message(&mut self, message: Message) {
        self.framed.send(message).await.expect("send");
    }
}

/// Performs a WebSocket handshake by hand and returns the raw socket, for a
/// client that then never reads.
pub async fn raw_upgrade(port: u16, token: &str) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket
}
