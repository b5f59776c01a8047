//! A service binary run as its own process with its output captured to a
//! file, for tests that look at what it logs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct LoggedProcess {
    child: Option<Child>,
    pub log: PathBuf,
}

impl LoggedProcess {
    /// Starts `program` with `env` added to this process's environment;
    /// stdout and stderr both go to the log file.
    pub fn spawn(program: &str, env: &[(&str, &str)]) -> LoggedProcess {
        let log = std::env::temp_dir().join(format!("{}.log", crate::unique("service")));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .envs(env.iter().copied())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        LoggedProcess {
            child: Some(child),
            log,
        }
    }

    /// Stops the process with SIGTERM (so it flushes and logs its shutdown)
    /// and returns everything it logged.
    pub async fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let waited = tokio::task::spawn_blocking(move || {
                for _ in 0..200 {
                    if let Ok(Some(_)) = child.try_wait() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = child.kill();
                let _ = child.wait();
                false
            })
            .await
            .unwrap();
            assert!(waited, "the process did not stop within 20 s of SIGTERM");
        }
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for LoggedProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails the test, naming what leaked, if any of `secrets` appears in `log`.
pub fn assert_not_logged(log: &str, secrets: &[(&str, &str)]) {
    for (what, secret) in secrets {
        assert!(!secret.is_empty());
        if let Some(line) = log.lines().find(|line| line.contains(secret)) {
            panic!("the {what} appears in the log: {line}");
        }
    }
}
