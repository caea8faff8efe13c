# The appliance as a QEMU VM (config.system.build.vm): serial console in the terminal,
# no disk image left behind, demo-server's port forwarded to the host.
{modulesPath, ...}: {
  imports = [
    "${modulesPath}/virtualisation/qemu-vm.nix"
    ./appliance.nix
  ];

  # Option names checked in nixos/modules/virtualisation/qemu-vm.nix (nixos-26.05).
  virtualisation = {
    graphics = false;
    memorySize = 1024;
    cores = 2;
    # A tmpfs root: every boot starts clean, and nothing is written next to the caller.
    diskImage = null;
    forwardPorts = [
      {
        from = "host";
        host.port = 8080;
        guest.port = 8080;
      }
    ];
  };
}
