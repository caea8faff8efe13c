# The project's packages, built with crane from the workspace's Cargo.lock.
#
# The eBPF probes are their own derivation. nixpkgs' rustc ships a prebuilt `core` for
# bpfel-unknown-none (rustc.nix lists the bpf library targets since NixOS/nixpkgs#382166),
# so no `-Z build-std` and no rust-src are needed; RUSTC_BOOTSTRAP=1 only unlocks the
# `asm_experimental_arch` feature that aya-ebpf and the probe crate (its one kfunc call,
# probes/ebpf/src/kernel.rs) enable for the bpf target. The userspace
# build then embeds that object through HTTP_PROFILER_PROBES_OBJECT (see build.rs), since
# aya-build would otherwise look for rustup and a nightly toolchain.
{
  pkgs,
  crane,
}: let
  inherit (pkgs) lib;

  craneLib = crane.mkLib pkgs;

  # Cargo.toml says rust-version = "1.95"; fail at evaluation with the reason rather
  # than deep inside cargo.
  rustc = assert lib.assertMsg (lib.versionAtLeast pkgs.rustc.version "1.95")
  "http-profiler needs rustc >= 1.95, this nixpkgs has ${pkgs.rustc.version}: update the nixpkgs input";
    pkgs.rustc;

  src = lib.fileset.toSource {
    root = ./..;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../build.rs
      ../src
      ../probes
      ../demo
    ];
  };

  common = {
    inherit src;
    strictDeps = true;
  };

  # Dependencies of the host crates (dev-dependencies too, for the tests), built once and
  # shared; crane replaces build.rs with a stub here, so the probes are not involved.
  cargoArtifacts = craneLib.buildDepsOnly common;

  # The crates' tests run in checks.<system>.unit-tests, not in every package build.
  noTests = {doCheck = false;};

  # aya-build passes these to the probe build (aya-build 0.2.0, src/lib.rs); the cfg
  # selects the architecture's pt_regs layout in aya-ebpf.
  probeRustflags = lib.concatStringsSep " " [
    "--cfg=bpf_target_arch=\"${pkgs.stdenv.hostPlatform.parsed.cpu.name}\""
    "-Cdebuginfo=2"
    "-Clink-arg=--btf"
  ];

  probes = craneLib.mkCargoDerivation (common
    // noTests
    // {
      pname = "http-profiler-probes";
      cargoArtifacts = null;
      doInstallCargoArtifacts = false;
      nativeBuildInputs = [pkgs.bpf-linker];
      env.RUSTC_BOOTSTRAP = "1";
      # An eBPF object for the kernel's loader: nothing to strip or patch.
      dontFixup = true;
      # bpf-linker reads rustc's LLVM bitcode, so its LLVM must not be older than
      # rustc's. In nixpkgs since NixOS/nixpkgs#495824 bpf-linker links `rustc.llvm`
      # itself; older releases pinned an llvmPackages_N. Check rather than trust.
      buildPhaseCargoCommand = ''
        rustc_llvm=$(${rustc}/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
        linker_llvm=$(''${READELF:-readelf} -d "$(command -v bpf-linker)" | grep -o 'libLLVM[^]]*' | grep -o '[0-9][0-9]*' | head -n1 || true)
        echo "rustc uses LLVM $rustc_llvm; bpf-linker links libLLVM ''${linker_llvm:-(not found, linked statically?)}"
        if [ -n "$linker_llvm" ] && [ "$linker_llvm" -lt "$rustc_llvm" ]; then
          echo "bpf-linker's LLVM $linker_llvm is older than rustc's LLVM $rustc_llvm and cannot read its bitcode:" >&2
          echo "use a nixpkgs whose bpf-linker is built against rustc.llvm" >&2
          exit 1
        fi
        RUSTFLAGS=${lib.escapeShellArg probeRustflags} \
          cargo build --release --locked --package http-profiler-ebpf --bins --target bpfel-unknown-none
      '';
      installPhaseCommand = ''
        install -Dm644 target/bpfel-unknown-none/release/http-profiler-probes $out/http-profiler-probes
      '';
    });

  withProbes = {
    env.HTTP_PROFILER_PROBES_OBJECT = "${probes}/http-profiler-probes";
  };

  demoBinary = bin:
    craneLib.buildPackage (common
      // noTests
      // {
        inherit cargoArtifacts;
        pname = bin;
        cargoExtraArgs = "--locked --package http-profiler-demo --bin ${bin}";
        meta.mainProgram = bin;
      });
in {
  inherit probes;

  http-profiler = craneLib.buildPackage (common
    // noTests
    // withProbes
    // {
      inherit cargoArtifacts;
      cargoExtraArgs = "--locked --package http-profiler";
      meta = {
        description = "See the plaintext HTTP/1.x traffic of every process on a Linux host as JSON lines";
        mainProgram = "http-profiler";
        license = with lib.licenses; [mit asl20];
        platforms = lib.platforms.linux;
      };
    });

  demo-server = demoBinary "demo-server";
  traffic-gen = demoBinary "traffic-gen";

  unit-tests = craneLib.cargoTest (common
    // withProbes
    // {
      inherit cargoArtifacts;
      # The build sandbox has no /sys, so the test that reads the running kernel's BTF
      # cannot run here; make test runs it, and the VM test loads the probes with
      # offsets from the VM kernel's BTF.
      cargoTestExtraArgs = "-- --skip resolves_every_offset_on_the_running_kernel";
    });

  devShell = craneLib.devShell {
    packages = [
      pkgs.bpf-linker
      pkgs.bpftools
      pkgs.jq
      pkgs.curl
      pkgs.alejandra
      pkgs.statix
      pkgs.deadnix
    ];
    # Without rustup, aya-build compiles the probes with this shell's rustc and its
    # prebuilt bpfel core; only aya-ebpf and the probes need unstable features.
    RUSTC_BOOTSTRAP = "aya_ebpf,http_profiler_probes";
  };
}
