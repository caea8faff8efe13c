# checks.<system>.vm-test: boots a NixOS VM with the module, lets traffic-gen send a known
# number of requests while http-profiler captures, and checks the JSON lines with the same
# checker the other VM tests use.
{
  pkgs,
  module,
}: let
  requests = 60;
  output = "/var/lib/http-profiler/events.jsonl";
in
  # pkgs.testers.runNixOSTest: pkgs/build-support/testers/default.nix. Inside its nodes
  # the nixpkgs.* options are read-only, so the module takes its packages as options.
  pkgs.testers.runNixOSTest {
    name = "http-profiler";

    nodes.machine = {
      imports = [module];
      services.http-profiler = {
        enable = true;
        extraArgs = ["--port" "8080"];
        demoServer.enable = true;
        trafficGenerator = {
          enable = true;
          count = requests;
          rps = 20;
        };
      };
      virtualisation.memorySize = 1024;
    };

    testScript = ''
      machine.wait_for_unit("demo-server.service")
      machine.wait_for_unit("http-profiler.service")
      # A oneshot that stays active after a clean run: fails here if traffic-gen saw errors.
      machine.wait_for_unit("traffic-gen.service")
      machine.wait_for_file("${output}")

      # SIGTERM: the profiler writes every message still in progress, then exits 0.
      machine.succeed("systemctl stop http-profiler.service")
      machine.succeed("test \"$(systemctl show --property=Result --value http-profiler.service)\" = success")
      print(machine.succeed("journalctl --unit=http-profiler.service --output=cat"))

      machine.succeed("http-profiler check ${output} --expect-requests ${toString requests}")
    '';
  }
