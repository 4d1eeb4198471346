"""jq-server: the control plane."""

import os

# jq-server forks only to exec at once (pg_ctl through subprocess); gRPC's fork handlers are not
# needed for that and print a notice on every fork while gRPC threads run. Must be set before
# grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
