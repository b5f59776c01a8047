//! `notify-gateway`: one WebSocket gateway node. Configuration comes from
//! the environment (see `config.rs`); SIGTERM or Ctrl-C drains and exits.
//! `notify-gateway healthcheck` exits 0 when the local node is ready.

use notify_gateway::{Application, Config};
use notify_service::telemetry;

#[actix_web::main]
async fn main() {
    telemetry::init();
    if let Err(e) = run().await {
        eprintln!("notify-gateway: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => {}
        Some("healthcheck") => {
            let addr = notify_service::settings::parsed("GATEWAY_ADDR")?
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8082)));
            return notify_service::healthcheck::probe(addr);
        }
        Some(other) => anyhow::bail!("unknown command {other:?}; expected serve or healthcheck"),
    }
    let app = Application::build(Config::from_env()?).await?;
    tracing::info!(port = app.port(), node = app.node_id(), "gateway listening");
    app.run_until_stopped(notify_service::shutdown::signal())
        .await
}
