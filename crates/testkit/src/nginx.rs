//! A real nginx with the production configuration (`deploy/nginx/*.template`,
//! rendered the way `scripts/cluster` renders them) on a free port, in a
//! private directory, for tests of what the proxy does and what it logs.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Nginx {
    pub port: u16,
    /// Everything nginx writes goes below this directory.
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx in front of gateways and an api listening on these
    /// loopback ports, and waits until it answers its health check.
    pub async fn start(gateway_ports: &[u16], api_port: u16) -> Nginx {
        let dir = std::env::temp_dir().join(crate::unique("nginx"));
        let state = dir.join("nginx");
        std::fs::create_dir_all(state.join("tmp")).unwrap();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let port = crate::process::free_port();
        let settings = settings(port, gateway_ports, api_port, &dir);
        for (template, rendered) in [
            ("notify.conf.template", "notify.conf"),
            ("nginx.local.conf.template", "nginx.conf"),
        ] {
            let text = std::fs::read_to_string(templates().join(template)).unwrap();
            std::fs::write(state.join(rendered), render(&text, &settings)).unwrap();
        }
        let stderr = std::fs::File::create(dir.join("logs/nginx-stderr.log")).unwrap();
        let child = Command::new(binary())
            .arg("-p")
            .arg(&state)
            .arg("-c")
            .arg(state.join("nginx.conf"))
            // Messages from before the configuration is read go here too,
            // not to the compiled-in /var/log/nginx/error.log.
            .arg("-e")
            .arg(state.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::from(stderr.try_clone().unwrap()))
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("nginx must be installed (scripts/services --tools)");
        let mut nginx = Nginx {
            port,
            dir,
            child: Some(child),
        };
        nginx.wait_ready().await;
        nginx
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/nginx-health", self.port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answered = awc::Client::new()
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if answered {
                return;
            }
            let exited = self.child.as_mut().map(|c| c.try_wait().unwrap().is_some());
            if exited == Some(true) || tokio::time::Instant::now() > deadline {
                panic!("nginx did not start: {:?}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops nginx gracefully (SIGQUIT: workers write out their buffered
    /// access log and exit) and returns every file it logged to.
    pub async fn stop(&mut self) -> Vec<(PathBuf, String)> {
        if let Some(mut child) = self.child.take() {
            signal(&child, "QUIT");
            let stopped = tokio::task::spawn_blocking(move || {
                wait_or_kill(&mut child, Duration::from_secs(20))
            })
            .await
            .unwrap();
            assert!(stopped, "nginx did not stop within 20 s of SIGQUIT");
        }
        self.logs()
    }

    /// Every file nginx wrote below its directory except its configuration
    /// and pid file: error log, access log, stdout and stderr.
    pub fn logs(&self) -> Vec<(PathBuf, String)> {
        let mut files = Vec::new();
        collect_files(&self.dir, &mut files);
        files
            .into_iter()
            .filter(|path| {
                !matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("conf" | "pid")
                )
            })
            .map(|path| {
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                (path, text)
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the master stops its workers before it exits, which
            // SIGKILL would not do.
            signal(&child, "TERM");
            wait_or_kill(&mut child, Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The settings scripts/cluster exports before it renders the templates
/// (see `start_nginx` there), for these ports and this directory.
fn settings(
    port: u16,
    gateway_ports: &[u16],
    api_port: u16,
    dir: &Path,
) -> BTreeMap<&'static str, String> {
    let server = |port: &u16| format!("server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;");
    let gateways: String = gateway_ports.iter().map(|p| server(p) + " ").collect();
    let running_as_root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    BTreeMap::from([
        ("NGINX_PORT", port.to_string()),
        ("GATEWAY_SERVERS", gateways),
        ("API_SERVERS", server(&api_port)),
        ("PROXY_READ_TIMEOUT", "75s".into()),
        ("NGINX_STATE", dir.join("nginx").display().to_string()),
        (
            "NGINX_ACCESS_LOG",
            dir.join("logs/nginx-access.log").display().to_string(),
        ),
        ("NGINX_RLIMIT_NOFILE", "1024".into()),
        ("NGINX_WORKER_CONNECTIONS", "512".into()),
        (
            "NGINX_USER",
            if running_as_root { "user root;" } else { "" }.into(),
        ),
    ])
}

/// `${NAME}` replaced by its setting, as scripts/cluster's `render` does;
/// a name without a setting fails.
fn render(template: &str, settings: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').expect("closed placeholder");
        let name = &after[..end];
        let value = settings
            .get(name)
            .unwrap_or_else(|| panic!("no setting for placeholder {name}"));
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn templates() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx")
}

fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
}

/// Waits for the process to exit; kills it after `limit`. True when it
/// exited by itself.
fn wait_or_kill(child: &mut Child, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}
