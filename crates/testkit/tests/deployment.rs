//! The deployment files agree with the code and with each other:
//! docker-compose.yml, the Dockerfile, the nginx template and the local
//! launcher. Docker is not needed: the files are parsed and cross-checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Yaml {
    YamlLoader::load_from_str(&read("docker-compose.yml"))
        .expect("docker-compose.yml is valid YAML")
        .remove(0)
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &compose["services"][name];
    assert!(!service.is_badvalue(), "service {name} missing");
    service
}

/// A service's environment, with `<<: *anchor` merges applied.
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some(map) = service["environment"].as_hash() else {
        return env;
    };
    for (key, value) in map {
        let key = key.as_str().unwrap();
        if key == "<<" {
            for (k, v) in value.as_hash().expect("merge of a mapping") {
                env.entry(k.as_str().unwrap().to_owned())
                    .or_insert_with(|| scalar(v));
            }
        } else {
            env.insert(key.to_owned(), scalar(value));
        }
    }
    env
}

fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// The variables a config module documents in its `//! | `VAR` |` table.
fn documented(config_rs: &str) -> BTreeSet<String> {
    read(config_rs)
        .lines()
        .filter_map(|l| l.strip_prefix("//! | "))
        .flat_map(|cell| {
            let first = cell.split(" | ").next().unwrap_or("");
            first
                .split(',')
                .filter_map(|v| {
                    v.trim()
                        .strip_prefix('`')?
                        .split('`')
                        .next()
                        .map(str::to_owned)
                })
                .collect::<Vec<_>>()
        })
        .filter(|v| v.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect()
}

fn placeholders(template: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("closed placeholder");
        names.insert(after[..end].to_owned());
        rest = &after[end..];
    }
    names
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

#[test]
fn compose_has_every_service_with_health_checks_and_ordering() {
    let compose = compose();
    for name in ["mysql", "redis", "api", "gateway", "nginx"] {
        let service = service(&compose, name);
        assert!(
            !service["healthcheck"]["test"].is_badvalue(),
            "{name} has no healthcheck"
        );
    }
    assert_eq!(
        service(&compose, "gateway")["deploy"]["replicas"].as_i64(),
        Some(3)
    );
    for (name, deps) in [
        ("api", &["mysql", "redis"][..]),
        ("gateway", &["api", "redis"][..]),
        ("nginx", &["api", "gateway"][..]),
    ] {
        for dep in deps {
            assert_eq!(
                service(&compose, name)["depends_on"][*dep]["condition"].as_str(),
                Some("service_healthy"),
                "{name} -> {dep}"
            );
        }
    }
    assert!(service(&compose, "mysql")["image"]
        .as_str()
        .unwrap()
        .starts_with("mysql:8"));
    assert!(service(&compose, "redis")["image"]
        .as_str()
        .unwrap()
        .starts_with("redis:7"));
    let mysql_args: Vec<&str> = service(&compose, "mysql")["command"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(mysql_args.contains(&"--innodb-autoinc-lock-mode=1"));
}

#[test]
fn compose_builds_targets_the_dockerfile_defines() {
    let compose = compose();
    for (name, binary) in [("api", "notify-api"), ("gateway", "notify-gateway")] {
        let build = &service(&compose, name)["build"];
        let dockerfile = read(build["dockerfile"].as_str().unwrap());
        let target = build["target"].as_str().unwrap();
        assert!(
            dockerfile.contains(&format!(" AS {target}\n")),
            "no stage {target}"
        );
        assert!(dockerfile.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")));
        assert!(dockerfile.contains("USER nonroot"));
        let health: Vec<&str> = service(&compose, name)["healthcheck"]["test"]
            .as_vec()
            .unwrap()
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        assert_eq!(
            health,
            ["CMD", &format!("/usr/local/bin/{binary}"), "healthcheck"]
        );
    }
}

#[test]
fn compose_sets_only_documented_settings_and_all_required_ones() {
    let compose = compose();
    for (name, config, required) in [
        (
            "api",
            "crates/api/src/config.rs",
            &["DATABASE_URL", "JWT_SECRET", "WEBHOOK_API_KEYS", "API_ADDR"][..],
        ),
        (
            "gateway",
            "crates/gateway/src/config.rs",
            &["DATABASE_URL", "JWT_SECRET", "GATEWAY_ADDR", "REDIS_URL"][..],
        ),
    ] {
        let known = documented(config);
        assert!(known.contains("DATABASE_URL"), "{config} table not found");
        let env = environment(service(&compose, name));
        for var in env.keys() {
            assert!(
                known.contains(var),
                "{name} sets {var}, which {config} does not document"
            );
        }
        for var in required {
            assert!(env.contains_key(*var), "{name} lacks {var}");
        }
    }
    // Both services must see the same channels and tokens.
    let api = environment(service(&compose, "api"));
    let gateway = environment(service(&compose, "gateway"));
    for var in ["REDIS_URL", "JWT_SECRET", "CHANNEL_PREFIX", "DATABASE_URL"] {
        assert_eq!(api.get(var), gateway.get(var), "{var}");
    }
}

#[test]
fn nginx_uses_the_shared_template_with_every_placeholder_and_matching_ports() {
    let compose = compose();
    let nginx = service(&compose, "nginx");
    let template_path = "deploy/nginx/notify.conf.template";
    let mounts: Vec<&str> = nginx["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with(&format!("./{template_path}:/etc/nginx/templates/"))),
        "{mounts:?}"
    );
    let env = environment(nginx);
    let needed = placeholders(&read(template_path));
    assert!(needed.contains("GATEWAY_SERVERS"));
    for name in &needed {
        assert!(env.contains_key(name), "nginx service lacks {name}");
    }
    let ports: Vec<&str> = nginx["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(ports, [format!("8080:{}", env["NGINX_PORT"])]);

    let api = environment(service(&compose, "api"));
    let gateway = environment(service(&compose, "gateway"));
    assert!(env["API_SERVERS"].contains(&format!("server api:{} ", port_of(&api["API_ADDR"]))));
    assert!(env["GATEWAY_SERVERS"].contains(&format!(
        "server gateway:{} ",
        port_of(&gateway["GATEWAY_ADDR"])
    )));
    // The proxy must not time out a socket that is only pinged every heartbeat.
    let timeout: u64 = env["PROXY_READ_TIMEOUT"]
        .trim_end_matches('s')
        .parse()
        .unwrap();
    let heartbeat: u64 = gateway["HEARTBEAT_SECS"].parse().unwrap();
    assert!(timeout > 2 * heartbeat);
}

#[test]
fn the_local_launcher_renders_the_same_template() {
    let launcher = read("scripts/cluster");
    assert!(launcher.contains("render deploy/nginx/notify.conf.template"));
    for name in placeholders(&read("deploy/nginx/notify.conf.template")) {
        assert!(
            launcher.contains(&name),
            "scripts/cluster does not set {name}"
        );
    }
    for name in placeholders(&read("deploy/nginx/nginx.local.conf.template")) {
        assert!(
            launcher.contains(&name),
            "scripts/cluster does not set {name}"
        );
    }
}

/// The secrets every deployment needs, which compose must never default.
const SECRETS: [&str; 3] = ["JWT_SECRET", "WEBHOOK_API_KEYS", "WEBHOOK_SIGNING_SECRETS"];

#[test]
fn compose_refuses_to_start_without_secrets_and_has_no_defaults() {
    let text = read("docker-compose.yml");
    assert!(text.contains("${JWT_SECRET:?"));
    assert!(text.contains("${WEBHOOK_API_KEYS:?"));
    let compose = compose();
    for name in ["api", "gateway"] {
        let env = environment(service(&compose, name));
        for secret in SECRETS {
            let Some(value) = env.get(secret) else {
                continue;
            };
            // `${VAR:?message}`, nothing before or after: compose stops
            // when VAR is unset or empty, and nothing else can fill it.
            let required = value.starts_with(&format!("${{{secret}:?"))
                && value.ends_with('}')
                && value.matches("${").count() == 1;
            assert!(required, "{name}: {secret} has a default: {value}");
        }
    }
    for name in ["JWT_SECRET", "WEBHOOK_API_KEYS"] {
        assert!(
            environment(service(&compose, "api")).contains_key(name),
            "api lacks {name}"
        );
    }
    // Any other mention of a secret in the file is required too.
    for (at, _) in text.match_indices("${") {
        let rest = &text[at + 2..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if SECRETS.contains(&name.as_str()) {
            assert!(
                rest[name.len()..].starts_with(":?"),
                "{name} is not required at byte {at}"
            );
        }
    }
}

fn ipv4(text: &str) -> u32 {
    u32::from(
        text.parse::<std::net::Ipv4Addr>()
            .unwrap_or_else(|e| panic!("{text}: {e}")),
    )
}

/// Whether `addr` (an address, or a network `a.b.c.d/n`) lies in `cidr`.
fn in_subnet(addr: &str, cidr: &str) -> bool {
    let prefix = |text: &str| -> (u32, u32) {
        let (network, bits) = text.split_once('/').unwrap_or((text, "32"));
        (ipv4(network), bits.parse().unwrap())
    };
    let ((addr, addr_bits), (network, bits)) = (prefix(addr), prefix(cidr));
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    addr_bits >= bits && addr & mask == network & mask
}

#[test]
fn gateways_trust_only_nginx_to_name_the_client() {
    let compose = compose();
    let ipam = &compose["networks"]["default"]["ipam"]["config"][0];
    let subnet = ipam["subnet"].as_str().expect("a declared subnet");
    let dynamic = ipam["ip_range"].as_str().expect("a range for the others");
    let nginx = service(&compose, "nginx");
    let networks = nginx["networks"].as_hash().expect("nginx networks");
    assert_eq!(networks.len(), 1, "nginx is on the cluster network only");
    let address = nginx["networks"]["default"]["ipv4_address"]
        .as_str()
        .expect("nginx has a fixed address");
    assert!(in_subnet(address, subnet), "{address} not in {subnet}");
    assert!(in_subnet(dynamic, subnet), "{dynamic} not in {subnet}");
    assert!(
        !in_subnet(address, dynamic),
        "another container could take nginx's address {address} from {dynamic}"
    );
    let gateway = environment(service(&compose, "gateway"));
    assert_eq!(
        gateway.get("TRUSTED_PROXIES").map(String::as_str),
        Some(address)
    );
    // The services join the same network (the default one).
    for name in ["mysql", "redis", "api", "gateway"] {
        assert!(
            service(&compose, name)["networks"].is_badvalue(),
            "{name} is moved off the default network"
        );
    }
}

#[test]
fn redis_keeps_its_data_in_an_append_only_file_in_both_setups() {
    let config = read("deploy/redis/redis.conf");
    let settings: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(settings.contains(&"appendonly yes"), "{settings:?}");
    assert!(
        !settings.iter().any(|s| s.starts_with("dir ")),
        "the setups choose the directory"
    );

    let compose = compose();
    let redis = service(&compose, "redis");
    let command: Vec<&str> = redis["command"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(command, ["redis-server", "/usr/local/etc/redis/redis.conf"]);
    let mounts: Vec<&str> = redis["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(mounts.contains(&"./deploy/redis/redis.conf:/usr/local/etc/redis/redis.conf:ro"));
    // The image's working directory, where the append-only file goes, is a
    // named volume, so it outlives the container.
    let data = mounts
        .iter()
        .find_map(|m| m.strip_suffix(":/data"))
        .expect("a volume on /data");
    assert!(
        !compose["volumes"][data].is_badvalue(),
        "{data} is not a named volume"
    );

    let launcher = read("scripts/cluster");
    assert!(launcher.contains("redis-server \"$ROOT/deploy/redis/redis.conf\""));
    assert!(launcher.contains("--dir \"$STATE/redis\""));
}

/// redis-server run with the deployed configuration, as scripts/cluster
/// runs it, in a private directory.
struct DeployedRedis {
    port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl DeployedRedis {
    fn start() -> DeployedRedis {
        let dir = std::env::temp_dir().join(notify_testkit::unique("redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = DeployedRedis {
            port: notify_testkit::process::free_port(),
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    /// Kills the server (SIGKILL: no chance to save anything on the way
    /// out), starts it again and waits until it has loaded its data.
    fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .arg(repo().join("deploy/redis/redis.conf"))
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // PONG only once the append-only file is loaded (LOADING before).
        while self.cli(&["PING"]) != "PONG" {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DeployedRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn deployed_redis_keeps_revocations_when_it_is_killed() {
    let mut redis = DeployedRedis::start();
    // What a user revocation writes: a key that expires.
    assert_eq!(
        redis.cli(&["SET", "revoked:user:ann", "1795545421", "EX", "3600"]),
        "OK"
    );
    redis.restart();
    assert_eq!(redis.cli(&["GET", "revoked:user:ann"]), "1795545421");
    let ttl: u64 = redis.cli(&["TTL", "revoked:user:ann"]).parse().unwrap();
    assert!((3500..=3600).contains(&ttl), "ttl {ttl}");
}

#[test]
fn the_local_launcher_installs_what_it_needs() {
    let launcher = read("scripts/cluster");
    let up = &launcher[launcher.find("cmd_up() {").expect("cmd_up")..];
    let services = up
        .find("scripts/services")
        .expect("up runs scripts/services");
    let nginx = up.find("nginx=$(nginx_bin)").expect("up looks for nginx");
    assert!(services < nginx, "up looks for nginx before installing it");
    assert!(!launcher.contains("--install"));
    assert!(!read("README.md").contains("--install"));

    let services = read("scripts/services");
    let tools = services.find("= --tools ]").expect("a --tools section");
    let nginx = services
        .find("install -y -qq nginx")
        .expect("installs nginx");
    assert!(nginx < tools, "nginx is installed only with --tools");
}
