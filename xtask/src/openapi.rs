//! `cargo xtask openapi`: rewrites `docs/openapi.json` from the code (the agent's unit test
//! that compares them, with `PROCMAN_BLESS=1`), then validates it with the OpenAPI
//! validator ([`deps::openapi_validator`]).
use crate::{deps, workspace_root};
use anyhow::{bail, Context, Result};
use std::process::Command;

pub fn run() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "test",
            "-p",
            "procman-agent",
            "--lib",
            "api::openapi::tests::openapi_document_matches_docs_openapi_json",
        ])
        .env("PROCMAN_BLESS", "1")
        .status()
        .context("running cargo test -p procman-agent")?;
    if !st.success() {
        bail!("regenerating docs/openapi.json failed ({st})");
    }
    let doc = workspace_root().join("docs/openapi.json");
    let validator = deps::validators()?.join("openapi-spec-validator");
    let st = Command::new(&validator)
        .arg(&doc)
        .status()
        .with_context(|| format!("running {}", validator.display()))?;
    if !st.success() {
        bail!("{} does not validate ({st})", doc.display());
    }
    eprintln!("xtask: {} regenerated and valid", doc.display());
    Ok(())
}
