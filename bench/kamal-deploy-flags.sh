# Sourced by the benchmarks: the deploy flags Kamal 2 passes for a bare `proxy:` config
# (../shared/spec/kamal-client.md): its timeouts, both buffering flags and three logged
# request headers. Every Kamal deploy takes this path, so it is measured beside the plain one.
# shellcheck shell=bash disable=SC2034 # used by the scripts that source this
kamal_deploy_flags=(
    --deploy-timeout=30s --drain-timeout=30s --buffer-requests --buffer-responses
    --log-request-header=Cache-Control --log-request-header=Last-Modified
    --log-request-header=User-Agent
)
