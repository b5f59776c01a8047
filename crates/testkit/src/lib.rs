//! Test support shared by the integration suites: throwaway MySQL databases,
//! private Redis servers, a TCP forwarder that can simulate an outage, and a
//! WebSocket client. Everything talks to real services over real sockets.

pub mod outage;
pub mod redis_server;
pub mod ws;

use std::sync::atomic::{AtomicU64, Ordering};

use notify_auth::{jwt::sign_hs256, Claims};

/// The secret test tokens are signed with.
pub const JWT_SECRET: &str = "test-secret-at-least-16";

/// `mysql://user@host:port` of the server tests create databases on.
pub fn mysql_base() -> String {
    std::env::var("TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `user`, valid for ten minutes, signed with [`JWT_SECRET`].
pub fn token(user: &str) -> String {
    sign_hs256(
        JWT_SECRET.as_bytes(),
        &Claims {
            sub: user.into(),
            exp: now_secs() + 600,
            jti: None,
        },
    )
    .unwrap()
}

/// A fresh, empty database, dropped when this goes out of scope.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = unique("notify_test");
        notify_store::migrate::execute_admin(
            &format!("{}/test", mysql_base()),
            format!("CREATE DATABASE `{name}`"),
        )
        .await
        .expect("create test database");
        TestDb {
            url: format!("{}/{name}", mysql_base()),
            name,
        }
    }

    /// Creates the database and applies the migrations.
    pub async fn migrated() -> TestDb {
        let db = Self::create().await;
        notify_store::migrate::run_pending(&db.url)
            .await
            .expect("migrate test database");
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = format!("{}/test", mysql_base());
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rt.block_on(notify_store::migrate::execute_admin(&admin, sql));
        })
        .join();
    }
}

/// Waits for `check` to hold, polling; for states that have no event to
/// await (a process's readiness, a server-side count). Panics after
/// `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
