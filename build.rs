//! Builds the probe crate for bpfel-unknown-none with aya-build, so that `cargo build`
//! builds everything; the object lands in OUT_DIR and is embedded by src/probes.rs.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
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
