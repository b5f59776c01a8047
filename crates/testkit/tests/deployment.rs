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
