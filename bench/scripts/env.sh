#!/usr/bin/env bash
# Print the environment a bench result depends on (also recorded in the JSON by the harness).
echo "bench env: commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "| kernel $(uname -r) | $(nproc) cores | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
     "| nofile $(ulimit -Sn)/$(ulimit -Hn) | load $(cut -d' ' -f1-3 /proc/loadavg)" \
     "| $(nginx -v 2>&1 || echo 'nginx: not installed') | $(haproxy -v 2>/dev/null | head -1 || echo 'haproxy: not installed')"
