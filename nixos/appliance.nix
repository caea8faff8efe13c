# The appliance: demo-server, http-profiler and traffic-gen start at boot, and the
# profiler's readable view (--pretty) shows on the console.
{pkgs, ...}: {
  services = {
    http-profiler = {
      enable = true;
      extraArgs = ["--port" "8080" "--pretty"];
      demoServer = {
        enable = true;
        # Reachable through the VM's forwarded port too.
        address = "0.0.0.0";
        port = 8080;
      };
      trafficGenerator = {
        enable = true;
        # Until the VM stops, slowly enough to read.
        count = null;
        rps = 2;
      };
    };

    getty = {
      autologinUser = "root";
      helpLine = ''
        http-profiler appliance: JSON lines in /var/lib/http-profiler/events.jsonl
          jq . /var/lib/http-profiler/events.jsonl | less     journalctl -fu http-profiler
          curl localhost:8080/echo -d hi                      poweroff  (ends the VM)
      '';
    };
  };

  # stdout carries the --pretty lines (the JSON lines go to the output file).
  systemd.services.http-profiler.serviceConfig.StandardOutput = "journal+console";

  networking = {
    hostName = "appliance";
    firewall.allowedTCPPorts = [8080];
  };

  environment.systemPackages = [pkgs.jq pkgs.curl];

  system.stateVersion = "26.05";
}
