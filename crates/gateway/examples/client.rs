//! A minimal client: connects to a gateway and prints every frame it gets.
//!
//! `cargo run --example client -p notify-gateway -- ws://127.0.0.1:8082/ws TOKEN`

use futures_util::{SinkExt, StreamExt};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(token)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: client WS_URL TOKEN");
    };
    let (_, mut socket) = awc::Client::new()
        .ws(url.as_str())
        .bearer_auth(token)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    while let Some(frame) = socket.next().await {
        match frame? {
            awc::ws::Frame::Text(text) => println!("{}", String::from_utf8_lossy(&text)),
            awc::ws::Frame::Ping(bytes) => socket.send(awc::ws::Message::Pong(bytes)).await?,
            awc::ws::Frame::Close(reason) => {
                println!("closed: {reason:?}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}
