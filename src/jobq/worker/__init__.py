"""jq-worker: the data plane."""

import os

# The worker starts command jobs as subprocesses (fork, then exec at once) while its gRPC
# channel is open; gRPC's fork handlers are not needed for that. Set before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
