//! The fleet files validate with the tools their users run: the Kubernetes manifests against
//! the Kubernetes API's schemas (kubernetes-validate, strict: unknown fields refused), the
//! config they carry with `procman-agent --check-config`, and the alerting rules with
//! `promtool check rules`. `cargo xtask test` installs the validators.
use procman_tests::bin;
use std::{path::PathBuf, process::Command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_kubernetes_manifests_validate_strictly() {
    let validator = root().join("target/validators-venv/bin/kubernetes-validate");
    assert!(
        validator.exists(),
        "{} is missing: `cargo xtask test` installs it",
        validator.display()
    );
    let manifests = root().join("deploy/kubernetes/procman.yaml");
    let (ok, out) = run(Command::new(&validator).arg("--strict").arg(&manifests));
    assert!(ok, "{out}");
    for kind in ["namespace", "configmap", "daemonset", "service"] {
        assert!(
            out.contains(&format!("passed for resource {kind}/")),
            "{kind}: {out}"
        );
    }
    // and the validator does refuse a typo
    let text = std::fs::read_to_string(&manifests).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, text.replacen("hostPID: true", "hostPid: true", 1)).unwrap();
    let (ok, out) = run(Command::new(&validator).arg("--strict").arg(&bad));
    assert!(!ok && out.contains("hostPid"), "{out}");
}

/// The agent config inside the ConfigMap is one the agent accepts.
#[test]
fn the_configmaps_config_passes_check_config() {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/procman.yaml")).unwrap();
    let (_, block) = text
        .split_once("  procman.toml: |\n")
        .expect("a procman.toml key in the ConfigMap");
    let toml: String = block
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert!(toml.contains("[api]"), "{toml}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("procman.toml");
    std::fs::write(&cfg, &toml).unwrap();
    let (ok, out) = run(Command::new(bin("procman-agent"))
        .arg("--config")
        .arg(&cfg)
        .arg("--check-config"));
    assert!(ok && out.contains("configuration OK"), "{out}\n{toml}");
}

#[test]
fn the_alerting_rules_pass_promtool() {
    let rules = root().join("deploy/prometheus/alerts.yml");
    let (ok, out) = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules));
    assert!(ok && out.contains("SUCCESS"), "{out}");
    // every metric the rules use is one the agent exports (the metrics test checks the names)
    let text = std::fs::read_to_string(&rules).unwrap();
    for name in text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("procman_"))
    {
        let base = name.trim_end_matches("_bucket").trim_end_matches("_total");
        let metrics =
            std::fs::read_to_string(root().join("procman-agent/src/api/metrics.rs")).unwrap();
        let short = base.trim_start_matches("procman_");
        let stem = ["_seconds", "_bytes", "_ratio"]
            .iter()
            .fold(short, |s, u| s.trim_end_matches(u));
        assert!(
            metrics.contains(&format!("\"{stem}\"")),
            "{name} (alerts.yml) is not a metric the agent exports"
        );
    }
}
