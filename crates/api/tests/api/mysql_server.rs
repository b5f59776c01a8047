//! A private MariaDB server started with settings of its own, for tests of
//! server settings that are global (such as `max_allowed_packet`) and so
//! cannot be changed on the server the other tests share.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use notify_testkit::process::free_port;
use notify_testkit::{unique, TestDb};

pub struct MysqlServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// `name`, or where Debian installs it when `sbin` is not on the PATH.
fn program(name: &str) -> String {
    let sbin = format!("/usr/sbin/{name}");
    if std::path::Path::new(&sbin).exists() {
        sbin
    } else {
        name.to_owned()
    }
}

impl MysqlServer {
    /// Initialises a data directory and starts `mariadbd` on a free port
    /// with `settings` (e.g. `--max-allowed-packet=4M`) added.
    pub async fn start(settings: &[&str]) -> MysqlServer {
        let dir = std::env::temp_dir().join(unique("mariadb"));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        // mariadbd refuses to run as root unless told to; as another user
        // the option is ignored.
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        let installed = Command::new(program("mariadb-install-db"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--user={user}"))
            .arg("--skip-test-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db must be installed");
        assert!(installed.success(), "mariadb-install-db failed");
        let port = free_port();
        let child = Command::new(program("mariadbd"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--user={user}"))
            .args(["--bind-address=127.0.0.1", &format!("--port={port}")])
            // A throwaway server: no accounts, and durability traded for
            // speed (nothing here is about crash safety).
            .args(["--skip-grant-tables", "--innodb-flush-log-at-trx-commit=2"])
            .args([
                "--innodb-buffer-pool-size=128M",
                "--innodb-log-file-size=64M",
            ])
            .args(settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd must be installed");
        let server = MysqlServer {
            port,
            dir,
            child: Some(child),
        };
        notify_testkit::eventually(
            "the private MariaDB to accept connections",
            Duration::from_secs(30),
            || async {
                notify_store::migrate::execute_admin(&server.url("mysql"), "SELECT 1".into())
                    .await
                    .is_ok()
            },
        )
        .await;
        server
    }

    fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port)
    }

    /// A fresh database on this server. It goes away with the server.
    pub async fn database(&self) -> TestDb {
        let name = unique("notify_test");
        notify_store::migrate::execute_admin(
            &self.url("mysql"),
            format!("CREATE DATABASE `{name}`"),
        )
        .await
        .expect("create database");
        TestDb {
            url: self.url(&name),
            name,
        }
    }
}

impl Drop for MysqlServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
