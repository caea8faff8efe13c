{
  description = "http-profiler: the plaintext HTTP/1.x traffic of every process on a Linux host, as JSON lines";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    # crane has no inputs of its own.
    crane.url = "github:ipetkov/crane";
  };

  outputs = {
    self,
    nixpkgs,
    crane,
  }: let
    inherit (nixpkgs) lib;

    linuxSystems = ["x86_64-linux" "aarch64-linux"];
    # A Mac runs the aarch64-linux appliance under QEMU (HVF), with a Linux builder.
    allSystems = linuxSystems ++ ["aarch64-darwin"];
    forSystems = systems: f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

    # Built by nix/packages.nix, once per Linux system.
    built = forSystems linuxSystems (pkgs: import ./nix/packages.nix {inherit pkgs crane;});

    # The appliance VM for a guest system, its runner built with the host's packages
    # (virtualisation.host.pkgs, nixos/modules/virtualisation/qemu-vm.nix).
    applianceFor = {
      guestSystem,
      hostPkgs ? null,
    }:
      lib.nixosSystem {
        modules =
          [
            {nixpkgs.hostPlatform = guestSystem;}
            self.nixosModules.default
            ./nixos/appliance-vm.nix
          ]
          ++ lib.optional (hostPkgs != null) {virtualisation.host.pkgs = hostPkgs;};
      };

    # The runner script's name is run-<hostName>-vm (qemu-vm.nix).
    vmApp = vm: {
      type = "app";
      program = "${vm}/bin/run-appliance-vm";
      meta.description = "Boot the http-profiler appliance VM (serial console; poweroff ends it)";
    };

    vmFor = pkgs: let
      appliance =
        if pkgs.stdenv.hostPlatform.isDarwin
        then
          applianceFor {
            guestSystem = "aarch64-linux";
            hostPkgs = pkgs;
          }
        else self.nixosConfigurations."appliance-${pkgs.stdenv.hostPlatform.system}";
    in
      appliance.config.system.build.vm;
  in {
    packages =
      forSystems linuxSystems
      (pkgs: let
        p = built.${pkgs.stdenv.hostPlatform.system};
      in {
        inherit (p) http-profiler demo-server traffic-gen probes;
        default = p.http-profiler;
        vm = vmFor pkgs;
      })
      // {
        aarch64-darwin.vm = vmFor nixpkgs.legacyPackages.aarch64-darwin;
      };

    apps = forSystems allSystems (pkgs: {
      default = vmApp self.packages.${pkgs.stdenv.hostPlatform.system}.vm;
    });

    # The module, with the packages of this flake as defaults for the host's system.
    nixosModules.default = {pkgs, ...}: let
      p = self.packages.${pkgs.stdenv.hostPlatform.system};
    in {
      imports = [./nixos/module.nix];
      services.http-profiler = {
        package = lib.mkDefault p.http-profiler;
        demoServer.package = lib.mkDefault p.demo-server;
        trafficGenerator.package = lib.mkDefault p.traffic-gen;
      };
    };

    # `appliance` is the x86_64-linux one; both architectures are there by name
    # (appliance-x86_64-linux, appliance-aarch64-linux).
    nixosConfigurations = let
      perSystem = lib.listToAttrs (map
        (system: {
          name = "appliance-${system}";
          value = applianceFor {guestSystem = system;};
        })
        linuxSystems);
    in
      perSystem // {appliance = perSystem."appliance-x86_64-linux";};

    checks = forSystems linuxSystems (pkgs: {
      vm-test = import ./nixos/vm-test.nix {
        inherit pkgs;
        module = self.nixosModules.default;
      };
      inherit (built.${pkgs.stdenv.hostPlatform.system}) unit-tests;
      # The same Nix checks as `make nix-check`, plus statix (not installable there).
      nix-lint =
        pkgs.runCommand "http-profiler-nix-lint"
        {
          nativeBuildInputs = [pkgs.alejandra pkgs.statix pkgs.deadnix];
        } ''
          cd ${self}
          alejandra --check $(find . -name '*.nix')
          statix check .
          deadnix --fail $(find . -name '*.nix')
          touch $out
        '';
    });

    devShells = forSystems linuxSystems (pkgs: {
      default = built.${pkgs.stdenv.hostPlatform.system}.devShell;
    });

    # alejandra: pkgs/by-name/al/alejandra in nixpkgs.
    formatter = forSystems allSystems (pkgs: pkgs.alejandra);
  };
}
