# services.http-profiler: the profiler as a systemd service, and optionally the demo
# server and a traffic generator to watch it work.
# `utils` is NixOS's module argument from nixos/lib/utils.nix (escapeSystemdExecArgs quotes
# arguments for Exec* lines, % and $ included).
{
  config,
  lib,
  pkgs,
  utils,
  ...
}: let
  cfg = config.services.http-profiler;
  demo = cfg.demoServer;
  traffic = cfg.trafficGenerator;

  # What src/preflight.rs and the probes need, instead of full root:
  # - CAP_BPF + CAP_PERFMON: load tracepoint programs, attach them with perf_event_open,
  #   read kernel memory from the probes (preflight refuses to start without both);
  # - CAP_SYS_RESOURCE: kernels before 5.11 charge maps to RLIMIT_MEMLOCK;
  # - CAP_DAC_READ_SEARCH: tracefs (/sys/kernel/tracing, mode 0700 root) holds the
  #   tracepoint ids, and this service does not run as root;
  # - CAP_SYS_PTRACE: /proc/PID/task/TID/syscall of other users' threads, read at start-up
  #   on kernels before 5.15 to capture reads that were already blocked (src/seed.rs).
  # Mounting tracefs would need CAP_SYS_ADMIN: NixOS mounts it at boot instead
  # (sys-kernel-tracing.mount is among systemd's upstream units in
  # nixos/modules/system/boot/systemd.nix).
  capabilities = [
    "CAP_BPF"
    "CAP_PERFMON"
    "CAP_SYS_RESOURCE"
    "CAP_DAC_READ_SEARCH"
    "CAP_SYS_PTRACE"
  ];

  # Where traffic-gen reaches demo-server.
  demoHost =
    if demo.address == "0.0.0.0"
    then "127.0.0.1"
    else demo.address;

  trafficArgs =
    [
      "--target"
      "http://${demoHost}:${toString demo.port}"
      "--rps"
      (toString traffic.rps)
    ]
    ++ lib.optionals (traffic.count != null) [
      "--count"
      (toString traffic.count)
    ]
    ++ traffic.extraArgs;

  # The traffic must start after the probes are attached, or the first requests are not
  # seen: wait for the line the profiler prints once it captures (from its current start,
  # not an earlier one), and for demo-server to accept connections.
  waitForProfiler = pkgs.writeShellScript "wait-for-http-profiler" ''
    for _ in $(seq 600); do
      (exec 3<>/dev/tcp/${demoHost}/${toString demo.port}) 2>/dev/null || { sleep 0.2; continue; }
      id=$(${config.systemd.package}/bin/systemctl show --property=InvocationID --value http-profiler.service)
      if [ -n "$id" ] && ${config.systemd.package}/bin/journalctl --quiet --output=cat \
          "_SYSTEMD_INVOCATION_ID=$id" | ${pkgs.gnugrep}/bin/grep -q '^http-profiler: capturing'; then
        exit 0
      fi
      sleep 0.2
    done
    echo "http-profiler did not start capturing, or demo-server did not listen on port ${toString demo.port}, within 120 s: see journalctl -u http-profiler -u demo-server" >&2
    exit 1
  '';
in {
  options.services.http-profiler = {
    enable = lib.mkEnableOption "http-profiler, which writes the host's plaintext HTTP/1.x traffic as JSON lines";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The http-profiler package (the flake's packages.<system>.http-profiler).";
    };

    outputPath = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/http-profiler/events.jsonl";
      description = ''
        Where the JSON lines are appended. The default lies in the service's
        StateDirectory; another place must be writable by the service's dynamic user.
      '';
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [];
      example = ["--port" "8080" "--pretty"];
      description = "Further command-line options (see `http-profiler --help`).";
    };

    demoServer = {
      enable = lib.mkEnableOption "demo-server, a small HTTP service for the profiler to watch";
      package = lib.mkOption {
        type = lib.types.package;
        description = "The demo-server package.";
      };
      address = lib.mkOption {
        type = lib.types.str;
        default = "127.0.0.1";
        description = "Address demo-server listens on (0.0.0.0 to reach it from outside).";
      };
      port = lib.mkOption {
        type = lib.types.port;
        default = 8080;
        description = "Port demo-server listens on.";
      };
    };

    trafficGenerator = {
      enable = lib.mkEnableOption "traffic-gen, which sends requests to demo-server once the profiler captures";
      package = lib.mkOption {
        type = lib.types.package;
        description = "The traffic-gen package.";
      };
      count = lib.mkOption {
        type = lib.types.nullOr lib.types.ints.positive;
        default = 100;
        description = "Requests to send, then stop; null sends until the service is stopped.";
      };
      rps = lib.mkOption {
        type = lib.types.ints.unsigned;
        default = 20;
        description = "Requests per second (0: as fast as possible).";
      };
      extraArgs = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [];
        description = "Further traffic-gen options (see `traffic-gen --help`).";
      };
    };
  };

  config = lib.mkMerge [
    (lib.mkIf cfg.enable {
      # `http-profiler check FILE` on the command line, as the VM test uses it.
      environment.systemPackages = [cfg.package];

      systemd.services.http-profiler = {
        description = "http-profiler: plaintext HTTP/1.x traffic as JSON lines";
        wantedBy = ["multi-user.target"];
        wants = ["network-online.target" "sys-kernel-tracing.mount"];
        after = ["network-online.target" "sys-kernel-tracing.mount"];
        serviceConfig = {
          ExecStart = utils.escapeSystemdExecArgs ([(lib.getExe cfg.package) "--output" cfg.outputPath] ++ cfg.extraArgs);
          DynamicUser = true;
          StateDirectory = "http-profiler";
          StateDirectoryMode = "0700";
          AmbientCapabilities = capabilities;
          CapabilityBoundingSet = capabilities;
          LimitMEMLOCK = "infinity";
          # The reader runs under SCHED_IDLE while it keeps up; going back to SCHED_BATCH
          # when busy CPUs starve it needs an RLIMIT_NICE that permits nice 0.
          LimitNICE = "+0";
          Restart = "on-failure";
          RestartSec = 5;
          # SIGTERM makes it write what is in progress and a summary: give it time.
          TimeoutStopSec = 30;
          ProtectHome = true;
          PrivateTmp = true;
        };
      };
    })

    (lib.mkIf demo.enable {
      systemd.services.demo-server = {
        description = "demo-server: an HTTP service for http-profiler to watch";
        wantedBy = ["multi-user.target"];
        after = ["network.target"];
        serviceConfig = {
          ExecStart = utils.escapeSystemdExecArgs [(lib.getExe demo.package) "--listen" "${demo.address}:${toString demo.port}"];
          DynamicUser = true;
          Restart = "on-failure";
        };
      };
    })

    (lib.mkIf traffic.enable {
      assertions = [
        {
          assertion = demo.enable && cfg.enable;
          message = "services.http-profiler.trafficGenerator needs services.http-profiler.enable and .demoServer.enable";
        }
      ];
      systemd.services.traffic-gen = {
        description = "traffic-gen: requests to demo-server while http-profiler captures";
        wantedBy = ["multi-user.target"];
        requires = ["demo-server.service" "http-profiler.service"];
        after = ["demo-server.service" "http-profiler.service"];
        serviceConfig = {
          # With a count it is a run that ends, and stays "active" after a clean run so a
          # test can wait for it; without one it runs until stopped.
          Type =
            if traffic.count == null
            then "exec"
            else "oneshot";
          RemainAfterExit = traffic.count != null;
          # "+": the wait reads the system journal, which the dynamic user may not.
          ExecStartPre = "+${waitForProfiler}";
          ExecStart = utils.escapeSystemdExecArgs ([(lib.getExe traffic.package)] ++ trafficArgs);
          DynamicUser = true;
        };
      };
    })
  ];
}
