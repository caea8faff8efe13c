//! Builds the probe crate for bpfel-unknown-none with aya-build, so that `cargo build`
//! builds everything; the object lands in OUT_DIR and is embedded by src/probes.rs.
//!
//! Builds that compile the probes on their own (the Nix flake does, with a toolchain that
//! has no rustup) set HTTP_PROFILER_PROBES_OBJECT to the finished object instead.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Where src/probes.rs looks for the object, under OUT_DIR.
const OBJECT_NAME: &str = "http-profiler-probes";
const PREBUILT_VAR: &str = "HTTP_PROFILER_PROBES_OBJECT";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed={PREBUILT_VAR}");
    match std::env::var_os(PREBUILT_VAR) {
        Some(object) => use_prebuilt(Path::new(&object)),
        None => build_probes(),
    }
}

fn use_prebuilt(object: &Path) -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed={}", object.display());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    std::fs::copy(object, out_dir.join(OBJECT_NAME)).with_context(|| {
        format!(
            "{PREBUILT_VAR}={} cannot be read: point it at the probe object \
             (target/bpfel-unknown-none/release/{OBJECT_NAME}) or unset it to build the probes here",
            object.display()
        )
    })?;
    Ok(())
}

fn build_probes() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata failed")?;
    let probes = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "http-profiler-ebpf")
        .ok_or_else(|| anyhow!("the http-profiler-ebpf package is missing from the workspace"))?;
    let root_dir = probes
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("probe manifest has no parent directory"))?;
    println!("cargo:rerun-if-changed=probes/common/src");
    if skipped_probe_build()? {
        return Ok(());
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: probes.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom("nightly"),
    )
    .context(
        "building the eBPF probes failed: run `make setup` (nightly with rust-src, bpf-linker)",
    )
}

/// `AYA_BUILD_SKIP=1` builds the library without the probes (the fuzz targets drive the pure
/// pipeline and need no BPF toolchain). An empty object stands in for the probes, and
/// src/probes.rs refuses to load it with a message that says why.
fn skipped_probe_build() -> anyhow::Result<bool> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let skip =
        std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
        std::fs::write(out.join("http-profiler-probes"), b"")
            .context("writing the empty probe object")?;
    }
    Ok(skip)
}
