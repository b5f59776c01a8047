//! `notify-api` serves the HTTP api; `notify-api migrate` only applies
//! pending migrations; `notify-api token USER [TTL_SECS]` prints a
//! development JWT signed with `JWT_SECRET`; `notify-api healthcheck` exits
//! 0 when the local server is ready (for container health checks).

use anyhow::{bail, Context};
use notify_api::{Application, Config};
use notify_auth::JwtKey;
use notify_service::{settings, telemetry};

#[actix_web::main]
async fn main() {
    telemetry::init();
    if let Err(e) = run().await {
        eprintln!("notify-api: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("serve") => {
            let app = Application::build(Config::from_env()?).await?;
            tracing::info!(port = app.port(), "api listening");
            app.run_until_stopped(notify_service::shutdown::signal())
                .await
        }
        Some("healthcheck") => {
            let addr = settings::parsed("API_ADDR")?
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8081)));
            notify_service::healthcheck::probe(addr)
        }
        Some("migrate") => {
            let url = settings::required("DATABASE_URL")?;
            let applied = notify_store::migrate::run_pending(&url).await?;
            println!("{applied} migration(s) applied");
            Ok(())
        }
        Some("token") => {
            let user = args
                .get(1)
                .context("usage: notify-api token USER [TTL_SECS [ROLE,ROLE...]]")?;
            let ttl: u64 = match args.get(2) {
                Some(ttl) => ttl
                    .parse()
                    .context("TTL_SECS must be a number of seconds")?,
                None => 24 * 3600,
            };
            let jwt = settings::jwt_config()?;
            if ttl > jwt.max_lifetime.as_secs() {
                bail!(
                    "TTL_SECS must be at most TOKEN_MAX_LIFETIME_SECS ({})",
                    jwt.max_lifetime.as_secs()
                );
            }
            let JwtKey::Secret(secret) = &jwt.key else {
                bail!("the token command signs HS256 tokens only: set JWT_SECRET");
            };
            let roles = args
                .get(3)
                .map(|list| list.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            let (token, _) = notify_api::routes::dev::sign_for(secret, user, ttl, roles)?;
            println!("{token}");
            Ok(())
        }
        Some(other) => {
            bail!("unknown command {other:?}; expected serve, migrate, token or healthcheck")
        }
    }
}
