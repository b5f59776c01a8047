//! The memory baseline: a bare actix-ws server that accepts any WebSocket on
//! `/ws`, sends one frame and holds the socket until the client leaves.
//! `BARE_ADDR` (default `127.0.0.1:9099`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix_web::{rt, web, App, HttpRequest, HttpResponse, HttpServer};

async fn ws(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut stream) = actix_ws::handle(&req, body)?;
    rt::spawn(async move {
        if session.text(r#"{"type":"welcome"}"#).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = stream.recv().await {
            if let actix_ws::Message::Ping(bytes) = message {
                let _ = session.pong(&bytes).await;
            }
        }
    });
    Ok(response)
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("BARE_ADDR").unwrap_or_else(|_| "127.0.0.1:9099".into());
    HttpServer::new(|| App::new().route("/ws", web::get().to(ws)))
        .bind(&addr)?
        .run()
        .await?;
    Ok(())
}
